// The BPE model of `tokenizer.json`: vocabulary, ranked merges and the merge loop.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "support/json.h"
#include "support/status.h"

namespace moegraph::tokenizer {

// Heterogeneous lookup (std::string_view keys) for the string maps.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

// Byte-pair encoding, as `tokenizers`' models::bpe::BPE (without dropout):
//   1. A word is split into characters; each becomes the id of the character (with
//      continuing_subword_prefix on all but the first and end_of_word_suffix on the last), or
//      its <0xNN> byte tokens (byte_fallback), or unk_token (consecutive unknowns fused when
//      fuse_unk), or is dropped when none applies.
//   2. Adjacent symbol pairs that have a merge are kept in a min-heap keyed by (rank, position);
//      the lowest is merged, stale heap entries are skipped, and the new neighbours' pairs are
//      pushed; symbols form a doubly linked list so each merge is O(log n).
//   3. With ignore_merges, a word that is itself in the vocabulary is that one token.
// Results are cached per word (the cache is thread-safe).
class Bpe {
 public:
  // `json` is the "model" object; `field` names it in errors.
  static StatusOr<std::unique_ptr<Bpe>> FromJson(const JsonValue& json, const std::string& field);

  // Buffers the merge loop reuses across the words of one Encode call.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  struct Scratch {
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string affixed;
  };

  // Appends the ids of `word` (a pre-tokenized piece) to `ids`.
  Status Tokenize(std::string_view word, std::vector<int32_t>& ids, Scratch& scratch) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr when the model has no token with this id.
  const std::string* IdToToken(int32_t id) const;
  // Number of vocabulary entries (the base for ids of added tokens not in the vocabulary).
  size_t vocab_size() const { return vocab_.size(); }
  // Largest id + 1.
  int32_t id_limit() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct MergeEntry {
    uint64_t key = ~0ull;  // (left id << 32) | right id; ~0 = empty slot
    uint32_t rank = 0;
    int32_t new_id = 0;
  };

  Bpe() = default;
  const MergeEntry* FindMerge(int32_t left, int32_t right) const;
  void InsertMerge(int32_t left, int32_t right, uint32_t rank, int32_t new_id);

  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  // Open-addressing table of merges (power-of-two size, linear probing).
  std::vector<MergeEntry> merges_;
  uint64_t merge_mask_ = 0;
  std::optional<int32_t> unk_id_;
  std::string unk_token_;
  bool has_unk_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::vector<int32_t> byte_ids_;  // id of "<0xNN>" per byte, -1 when missing

  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 17;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace moegraph::tokenizer
