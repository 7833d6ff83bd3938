// The stages of a Hugging Face `tokenizer.json` pipeline: normalizers, pre-tokenizers, decoders
// and post-processors, each built from its JSON object with the semantics of `tokenizers`.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/json.h"
#include "support/status.h"

namespace moegraph::tokenizer {

// A piece of the input moving through the pipeline. `at_start`: the piece begins at byte 0 of
// the original input (Metaspace's prepend_scheme "first" looks at this).
struct Piece {
  std::string text;
  bool at_start = false;
};

// Rewrites a string (the parts of the input between added tokens, each on its own).
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual Status Normalize(std::string& text) const = 0;
};

// Splits pieces into smaller pieces; empty pieces are dropped.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void PreTokenize(std::vector<Piece>& pieces) const = 0;
};

// Turns token strings into text; `DecodeChain` maps a list of token strings to a new list
// (the strings are joined at the end), as `tokenizers`' Decoder::decode_chain does.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void DecodeChain(std::vector<std::string>& tokens) const = 0;
};

// Adds special tokens around an encoded single sequence.
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
};

// Builders. `field` names the JSON path for errors ("normalizer", "decoder.decoders[1]", ...).
// A null JSON value gives a null pointer (no such stage).
StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const JsonValue& json,
                                                     const std::string& field);
StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const JsonValue& json,
                                                         const std::string& field);
StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const JsonValue& json, const std::string& field);
StatusOr<std::unique_ptr<PostProcessor>> MakePostProcessor(const JsonValue& json,
                                                           const std::string& field);

// Strict field readers shared by the builders and the model loader.
Status CheckType(const JsonValue& json, const std::string& field, const char* expected);
StatusOr<const JsonValue*> RequireField(const JsonValue& object, std::string_view key,
                                        const std::string& field);
StatusOr<std::string> GetString(const JsonValue& object, std::string_view key,
                                const std::string& field);
// The member when present and not null, else `fallback`.
StatusOr<bool> GetBool(const JsonValue& object, std::string_view key, const std::string& field,
                       bool fallback);
StatusOr<int64_t> GetInt(const JsonValue& object, std::string_view key, const std::string& field,
                         int64_t fallback);
// Errors on members that are not in `known` (so no setting is silently ignored).
Status CheckKnownFields(const JsonValue& object, const std::string& field,
                        std::initializer_list<std::string_view> known);

}  // namespace moegraph::tokenizer
