// The BPE model and its merge loop.
#include "tokenizer/bpe.h"

#include <algorithm>

#include "tokenizer/components.h"
#include "tokenizer/unicode.h"

namespace moegraph::tokenizer {
namespace {

uint64_t MergeKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t HashKey(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdull;
  key ^= key >> 33;
  return key;
}

}  // namespace

StatusOr<std::unique_ptr<Bpe>> Bpe::FromJson(const JsonValue& json, const std::string& field) {
  MG_RETURN_IF_ERROR(CheckType(json, field, "an object"));
  MG_RETURN_IF_ERROR(CheckKnownFields(
      json, field,
      {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
       "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"}));
  std::unique_ptr<Bpe> bpe(new Bpe());
  if (const JsonValue* dropout = json.Find("dropout"); dropout != nullptr && !dropout->is_null()) {
    if (!dropout->is_number()) {
      return InvalidArgument("tokenizer.json: " + field +
                             ".dropout must be a number or null, got " + dropout->DescribeKind());
    }
    if (dropout->as_double() != 0.0) {
      return Unimplemented("tokenizer.json: " + field +
                           ".dropout is set; BPE dropout (random merges) is not supported");
    }
  }
  auto optional_string = [&](std::string_view key, std::string& out, bool* present) -> Status {
    const JsonValue* value = json.Find(key);
    if (value == nullptr || value->is_null()) return Status::Ok();
    MG_RETURN_IF_ERROR(CheckType(*value, field + "." + std::string(key), "a string"));
    out = value->as_string();
    if (present != nullptr) *present = true;
    return Status::Ok();
  };
  MG_RETURN_IF_ERROR(optional_string("unk_token", bpe->unk_token_, &bpe->has_unk_));
  MG_RETURN_IF_ERROR(
      optional_string("continuing_subword_prefix", bpe->continuing_subword_prefix_, nullptr));
  MG_RETURN_IF_ERROR(optional_string("end_of_word_suffix", bpe->end_of_word_suffix_, nullptr));
  MG_ASSIGN_OR_RETURN(bpe->fuse_unk_, GetBool(json, "fuse_unk", field, false));
  MG_ASSIGN_OR_RETURN(bpe->byte_fallback_, GetBool(json, "byte_fallback", field, false));
  MG_ASSIGN_OR_RETURN(bpe->ignore_merges_, GetBool(json, "ignore_merges", field, false));

  // Vocabulary.
  MG_ASSIGN_OR_RETURN(const JsonValue* vocab, RequireField(json, "vocab", field));
  MG_RETURN_IF_ERROR(CheckType(*vocab, field + ".vocab", "an object"));
  bpe->vocab_.reserve(vocab->size());
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab->as_object()) {
    if (!id.is_int() || id.as_int() < 0 || id.as_int() >= INT32_MAX) {
      return InvalidArgument("tokenizer.json: " + field + ".vocab['" + token +
                             "'] must be a non-negative integer id, got " + id.DescribeKind());
    }
    bpe->vocab_.emplace(token, static_cast<int32_t>(id.as_int()));
    max_id = std::max(max_id, id.as_int());
  }
  if (max_id >= (int64_t{1} << 26)) {
    return InvalidArgument("tokenizer.json: " + field + ".vocab has id " + std::to_string(max_id) +
                           ", larger than the supported 2^26");
  }
  bpe->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  bpe->has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : bpe->vocab_) {
    bpe->id_to_token_[static_cast<size_t>(id)] = token;
    bpe->has_id_[static_cast<size_t>(id)] = true;
  }
  if (bpe->has_unk_) {
    if (auto it = bpe->vocab_.find(bpe->unk_token_); it != bpe->vocab_.end()) {
      bpe->unk_id_ = it->second;
    }
  }
  bpe->byte_ids_.assign(256, -1);
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const std::string name = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
    if (auto it = bpe->vocab_.find(name); it != bpe->vocab_.end()) bpe->byte_ids_[b] = it->second;
  }

  // Merges: "a b" strings or ["a", "b"] pairs; rank = position.
  MG_ASSIGN_OR_RETURN(const JsonValue* merges, RequireField(json, "merges", field));
  MG_RETURN_IF_ERROR(CheckType(*merges, field + ".merges", "an array"));
  size_t capacity = 16;
  while (capacity < merges->size() * 2 + 16)
    capacity *= 2;
  bpe->merges_.assign(capacity, MergeEntry());
  bpe->merge_mask_ = capacity - 1;
  const size_t prefix_len = bpe->continuing_subword_prefix_.size();
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const JsonValue& merge = merges->as_array()[rank];
    const std::string merge_field = field + ".merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (merge.is_string()) {
      const std::string& s = merge.as_string();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return InvalidArgument("tokenizer.json: " + merge_field +
                               " must be two tokens separated by one space, got '" + s + "'");
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge.as_array()[0].is_string() &&
               merge.as_array()[1].is_string()) {
      left = merge.as_array()[0].as_string();
      right = merge.as_array()[1].as_string();
    } else {
      return InvalidArgument("tokenizer.json: " + merge_field +
                             " must be a string \"a b\" or a pair [\"a\", \"b\"], got " +
                             merge.DescribeKind());
    }
    auto lookup = [&](const std::string& token) -> StatusOr<int32_t> {
      auto it = bpe->vocab_.find(token);
      if (it == bpe->vocab_.end()) {
        return InvalidArgument("tokenizer.json: " + merge_field + " uses the token '" + token +
                               "', which is not in " + field + ".vocab");
      }
      return it->second;
    };
    MG_ASSIGN_OR_RETURN(int32_t left_id, lookup(left));
    MG_ASSIGN_OR_RETURN(int32_t right_id, lookup(right));
    if (prefix_len > 0 && right.compare(0, prefix_len, bpe->continuing_subword_prefix_) != 0) {
      return InvalidArgument("tokenizer.json: " + merge_field + ": '" + right +
                             "' does not start with continuing_subword_prefix");
    }
    MG_ASSIGN_OR_RETURN(int32_t new_id, lookup(left + right.substr(prefix_len)));
    // A repeated pair takes its later rank, as a Rust HashMap built from the list does.
    bpe->InsertMerge(left_id, right_id, static_cast<uint32_t>(rank), new_id);
  }
  return bpe;
}

void Bpe::InsertMerge(int32_t left, int32_t right, uint32_t rank, int32_t new_id) {
  const uint64_t key = MergeKey(left, right);
  for (uint64_t slot = HashKey(key) & merge_mask_;; slot = (slot + 1) & merge_mask_) {
    MergeEntry& entry = merges_[slot];
    if (entry.key == ~0ull || entry.key == key) {
      entry = {key, rank, new_id};
      return;
    }
  }
}

const Bpe::MergeEntry* Bpe::FindMerge(int32_t left, int32_t right) const {
  const uint64_t key = MergeKey(left, right);
  for (uint64_t slot = HashKey(key) & merge_mask_;; slot = (slot + 1) & merge_mask_) {
    const MergeEntry& entry = merges_[slot];
    if (entry.key == key) return &entry;
    if (entry.key == ~0ull) return nullptr;
  }
}

std::optional<int32_t> Bpe::TokenToId(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

Status Bpe::Tokenize(std::string_view word, std::vector<int32_t>& ids, Scratch& scratch) const {
  if (word.empty()) return Status::Ok();
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      ids.push_back(it->second);
      return Status::Ok();
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return Status::Ok();
    }
  }
  // Symbols from characters.
  std::vector<Symbol>& symbols = scratch.symbols;
  symbols.clear();
  int32_t pending_unk = -1;  // fused unknown run waiting to be added
  bool missing_unk = false;
  auto add = [&](int32_t id) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  size_t pos = 0;
  const bool affixes = !continuing_subword_prefix_.empty() || !end_of_word_suffix_.empty();
  while (pos < word.size()) {
    const size_t begin = pos;
    pos += Utf8Length(static_cast<unsigned char>(word[pos]));
    std::string_view ch = word.substr(begin, pos - begin);
    if (affixes) {
      std::string& affixed = scratch.affixed;
      affixed.clear();
      if (begin != 0) affixed += continuing_subword_prefix_;
      affixed.append(ch);
      if (pos >= word.size()) affixed += end_of_word_suffix_;
      ch = affixed;
    }
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      if (pending_unk >= 0) {
        add(pending_unk);
        pending_unk = -1;
      }
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (const char c : ch)
        all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (const char c : ch)
          add(byte_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (has_unk_) {
      if (!unk_id_.has_value()) {
        missing_unk = true;
        break;
      }
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (missing_unk) {
    return InvalidArgument("tokenizer.json: model.unk_token '" + unk_token_ +
                           "' is not in the vocabulary, and the input needs it");
  }
  if (pending_unk >= 0) add(pending_unk);
  if (!symbols.empty()) symbols.back().next = -1;

  // The merge loop.
  // std heap is a max-heap: "less" means lower priority (higher rank, then later position).
  auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::vector<Candidate>& heap = scratch.heap;
  heap.clear();
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeEntry* m = FindMerge(symbols[i].id, symbols[i + 1].id)) {
      heap.push_back({m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), lower_priority);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const MergeEntry* m = FindMerge(left.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeEntry* pm = FindMerge(symbols[left.prev].id, left.id)) {
        heap.push_back({pm->rank, left.prev, pm->new_id});
        std::push_heap(heap.begin(), heap.end(), lower_priority);
      }
    }
    if (left.next >= 0) {
      if (const MergeEntry* nm = FindMerge(left.id, symbols[left.next].id)) {
        heap.push_back({nm->rank, top.pos, nm->new_id});
        std::push_heap(heap.begin(), heap.end(), lower_priority);
      }
    }
  }
  const size_t first = ids.size();
  for (const Symbol& s : symbols) {
    if (s.alive) ids.push_back(s.id);
  }
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kMaxCacheEntries) {
      cache_.emplace(
          std::string(word),
          std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end()));
    }
  }
  return Status::Ok();
}

}  // namespace moegraph::tokenizer
