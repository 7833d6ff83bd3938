// Text to token ids and back, from a Hugging Face `tokenizer.json`, matching the `tokenizers`
// library id for id.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "support/status.h"

namespace moegraph::tokenizer {

// An added token of `tokenizer.json` ("added_tokens").
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool single_word = false;
};

// A loaded tokenizer. Encoding runs the `tokenizers` pipeline:
//   1. the input is split around added tokens whose `normalized` is false (leftmost-longest
//      match, with single_word/lstrip/rstrip);
//   2. each remaining part is normalized, then split around the normalized added tokens;
//   3. each remaining part is pre-tokenized into words, and the BPE model maps each word to
//      ids (cached per word);
//   4. the post-processor adds the special tokens of its template (when add_special_tokens).
// Supported: model BPE; normalizers NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip,
// Sequence; pre-tokenizers ByteLevel, Split, Metaspace, Digits, Sequence; decoders ByteLevel,
// Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence; post-processors TemplateProcessing,
// ByteLevel, Sequence. Anything else fails to load with an error naming the component.
//
// Thread-safe: Encode and Decode are const and may run concurrently.
class Tokenizer {
 public:
  static StatusOr<Tokenizer> FromFile(const std::string& path);
  // `source_name` prefixes parse errors (usually the path).
  static StatusOr<Tokenizer> FromJson(std::string_view json, std::string_view source_name);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // InvalidArgument naming the byte offset when `text` is not valid UTF-8.
  StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;
  // InvalidArgument for an id that no token has. Invalid UTF-8 from byte tokens becomes U+FFFD.
  StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullopt when no token has this id.
  std::optional<std::string> IdToToken(int32_t id) const;
  // Largest id + 1 (ids in [0, vocab_size()) may still have holes).
  int32_t vocab_size() const;
  bool IsSpecial(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming decode (as `tokenizers`' DecodeStream): Push returns only the text that became
// complete with this id. Text whose decode would end in U+FFFD (an incomplete UTF-8 sequence,
// unfinished byte-fallback bytes) is held back until a later id completes it.
// The concatenation of every Push and a final Flush equals Decode of all ids unless a
// byte-fallback run is invalid UTF-8. Then, where a later id visibly changed text already
// emitted (`tokenizers` fails with InvalidPrefix), the decoder restarts at that id and counts
// it in num_restarts(); where the change is not visible in the window (a stripped leading
// space), the stream keeps what it sent, exactly as `tokenizers`' DecodeStream does.
class IncrementalDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);

  StatusOr<std::string> Push(int32_t id);
  // The text still held back (possibly ending in U+FFFD); the decoder is then empty.
  StatusOr<std::string> Flush();

  // Times the window restarted (in Push or Flush) since construction.
  int num_restarts() const { return num_restarts_; }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  std::string prefix_;
  size_t prefix_index_ = 0;
  int num_restarts_ = 0;
};

}  // namespace moegraph::tokenizer
