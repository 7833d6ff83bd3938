// Loading `tokenizer.json`, the added-token splitter, Encode/Decode and the streaming decoder.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "support/json.h"
#include "support/mapped_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/components.h"
#include "tokenizer/unicode.h"

namespace moegraph::tokenizer {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

bool EndsWithReplacement(const std::string& s) {
  return s.size() >= 3 && std::string_view(s).substr(s.size() - 3) == kReplacementChar;
}

// One piece of the input after the added-token split: an added token (`id` >= 0) or text.
struct Segment {
  std::string text;
  int32_t id = -1;
  bool at_start = false;
};

// Finds added tokens in text: leftmost match, longest pattern at that position (aho-corasick's
// LeftmostLongest, which `tokenizers` uses), then single_word / lstrip / rstrip as
// AddedVocabulary::find_matches applies them.
class AddedTokenMatcher {
 public:
  struct Entry {
    std::string pattern;
    int32_t id;
    bool single_word, lstrip, rstrip;
  };

  void Build(std::vector<Entry> entries) {
    entries_ = std::move(entries);
    for (auto& bucket : by_first_byte_)
      bucket.clear();
    std::vector<size_t> order(entries_.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return entries_[a].pattern.size() > entries_[b].pattern.size();
    });
    for (const size_t i : order) {
      if (entries_[i].pattern.empty()) continue;
      by_first_byte_[static_cast<uint8_t>(entries_[i].pattern[0])].push_back(i);
    }
  }

  bool empty() const { return entries_.empty(); }

  // Splits `text` (which starts at the input's byte 0 when `at_start`) into segments, appended
  // to `out`; empty text segments are dropped.
  void Split(std::string_view text, bool at_start, std::vector<Segment>& out) const {
    size_t start_offset = 0;
    size_t pos = 0;
    auto push_text = [&](size_t b, size_t e) {
      if (e > b) out.push_back({std::string(text.substr(b, e - b)), -1, at_start && b == 0});
    };
    while (pos < text.size()) {
      const Entry* found = nullptr;
      size_t match_at = pos;
      for (; match_at < text.size(); ++match_at) {
        const auto& bucket = by_first_byte_[static_cast<uint8_t>(text[match_at])];
        for (const size_t i : bucket) {
          const std::string& p = entries_[i].pattern;
          if (text.compare(match_at, p.size(), p) == 0) {
            found = &entries_[i];
            break;
          }
        }
        if (found != nullptr) break;
      }
      if (found == nullptr) break;
      size_t start = match_at;
      size_t stop = match_at + found->pattern.size();
      pos = stop;  // the search goes on after the raw match
      if (found->single_word) {
        const bool start_space = start == 0 || !EndsWithWord(text.substr(0, start));
        const bool stop_space = stop == text.size() || !StartsWithWord(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (found->lstrip) start = std::max(LeftmostSpaceAtEnd(text.substr(0, start)), start_offset);
      if (found->rstrip) stop += RightmostSpaceAtStart(text.substr(stop));
      if (start_offset < start) push_text(start_offset, start);
      out.push_back({std::string(text.substr(start, stop - start)), found->id, false});
      start_offset = stop;
    }
    push_text(start_offset, text.size());
  }

 private:
  static bool EndsWithWord(std::string_view s) {
    if (s.empty()) return false;
    size_t begin = s.size() - 1;
    while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80)
      --begin;
    size_t pos = begin;
    return IsWordCharacter(NextCodePoint(s, pos));
  }
  static bool StartsWithWord(std::string_view s) {
    if (s.empty()) return false;
    size_t pos = 0;
    return IsWordCharacter(NextCodePoint(s, pos));
  }
  // Start of the run of whitespace that ends `s`.
  static size_t LeftmostSpaceAtEnd(std::string_view s) {
    size_t end = s.size();
    while (end > 0) {
      size_t begin = end - 1;
      while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80)
        --begin;
      size_t pos = begin;
      if (!IsWhitespace(NextCodePoint(s, pos))) break;
      end = begin;
    }
    return end;
  }
  // Length of the run of whitespace that starts `s`.
  static size_t RightmostSpaceAtStart(std::string_view s) {
    size_t pos = 0;
    while (pos < s.size()) {
      size_t next = pos;
      if (!IsWhitespace(NextCodePoint(s, next))) break;
      pos = next;
    }
    return pos;
  }

  std::vector<Entry> entries_;
  std::array<std::vector<size_t>, 256> by_first_byte_;
};

}  // namespace

struct Tokenizer::Impl {
  std::unique_ptr<Bpe> model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;

  std::vector<AddedToken> added;  // in file order, with the ids `tokenizers` gives them
  // The string each added token decodes as: its content, normalized when `normalized` is set
  // (as `tokenizers` stores it).
  std::vector<std::string> added_text;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> added_to_id;
  std::unordered_map<int32_t, size_t> id_to_added;
  std::unordered_set<std::string, StringHash, std::equal_to<>> special_contents;
  AddedTokenMatcher raw_matcher;         // normalized == false, matched on the input
  AddedTokenMatcher normalized_matcher;  // normalized == true, matched on normalized text
  int32_t id_limit = 0;

  const std::string* IdToToken(int32_t id) const {
    if (auto it = id_to_added.find(id); it != id_to_added.end()) return &added_text[it->second];
    return model->IdToToken(id);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path) {
  MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  StatusOr<Tokenizer> tokenizer = FromJson(text, path);
  if (!tokenizer.ok()) return tokenizer.status().WithContext(path);
  return tokenizer;
}

namespace {

StatusOr<std::vector<AddedToken>> ParseAddedTokens(const JsonValue* json) {
  std::vector<AddedToken> tokens;
  if (json == nullptr || json->is_null()) return tokens;
  MG_RETURN_IF_ERROR(CheckType(*json, "added_tokens", "an array"));
  for (size_t i = 0; i < json->size(); ++i) {
    const JsonValue& entry = json->as_array()[i];
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    MG_RETURN_IF_ERROR(CheckType(entry, field, "an object"));
    MG_RETURN_IF_ERROR(CheckKnownFields(
        entry, field,
        {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}));
    AddedToken token;
    MG_ASSIGN_OR_RETURN(token.content, GetString(entry, "content", field));
    MG_RETURN_IF_ERROR(ValidateUtf8(token.content, "tokenizer.json: " + field + ".content"));
    MG_ASSIGN_OR_RETURN(int64_t id, GetInt(entry, "id", field, -1));
    token.id = static_cast<int32_t>(std::clamp<int64_t>(id, -1, INT32_MAX));
    MG_ASSIGN_OR_RETURN(token.special, GetBool(entry, "special", field, false));
    MG_ASSIGN_OR_RETURN(token.lstrip, GetBool(entry, "lstrip", field, false));
    MG_ASSIGN_OR_RETURN(token.rstrip, GetBool(entry, "rstrip", field, false));
    MG_ASSIGN_OR_RETURN(token.single_word, GetBool(entry, "single_word", field, false));
    MG_ASSIGN_OR_RETURN(token.normalized, GetBool(entry, "normalized", field, !token.special));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

}  // namespace

StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view json_text, std::string_view source_name) {
  MG_ASSIGN_OR_RETURN(JsonValue json, ParseJson(json_text, source_name));
  MG_RETURN_IF_ERROR(CheckType(json, "the top level", "an object"));
  MG_RETURN_IF_ERROR(
      CheckKnownFields(json, "the top level",
                       {"version", "truncation", "padding", "added_tokens", "normalizer",
                        "pre_tokenizer", "model", "post_processor", "decoder"}));
  for (const char* key : {"truncation", "padding"}) {
    if (const JsonValue* v = json.Find(key); v != nullptr && !v->is_null()) {
      return Unimplemented(std::string("tokenizer.json: ") + key +
                           " is set; truncation and padding are not supported (set it to null)");
    }
  }
  auto impl = std::make_unique<Impl>();
  const JsonValue null;
  auto member = [&](const char* key) -> const JsonValue& {
    const JsonValue* v = json.Find(key);
    return v != nullptr ? *v : null;
  };

  // Model.
  MG_ASSIGN_OR_RETURN(const JsonValue* model, RequireField(json, "model", "the top level"));
  MG_RETURN_IF_ERROR(CheckType(*model, "model", "an object"));
  const JsonValue* model_type = model->Find("type");
  if (model_type != nullptr) {
    MG_RETURN_IF_ERROR(CheckType(*model_type, "model.type", "a string"));
    if (model_type->as_string() != "BPE") {
      return Unimplemented("tokenizer.json: model type '" + model_type->as_string() +
                           "' is not supported (supported: BPE)");
    }
  } else if (model->Find("merges") == nullptr) {
    return Unimplemented(
        "tokenizer.json: model has no type and no merges; only BPE models are supported");
  }
  MG_ASSIGN_OR_RETURN(impl->model, Bpe::FromJson(*model, "model"));
  MG_ASSIGN_OR_RETURN(impl->normalizer, MakeNormalizer(member("normalizer"), "normalizer"));
  MG_ASSIGN_OR_RETURN(impl->pre_tokenizer,
                      MakePreTokenizer(member("pre_tokenizer"), "pre_tokenizer"));
  MG_ASSIGN_OR_RETURN(impl->post_processor,
                      MakePostProcessor(member("post_processor"), "post_processor"));
  MG_ASSIGN_OR_RETURN(impl->decoder, MakeDecoder(member("decoder"), "decoder"));

  // Added tokens get ids as AddedVocabulary::add_tokens gives them: the vocabulary id of an
  // existing token, else one past the largest added id (at least the vocabulary size).
  MG_ASSIGN_OR_RETURN(std::vector<AddedToken> tokens, ParseAddedTokens(json.Find("added_tokens")));
  const auto vocab_size = static_cast<int64_t>(impl->model->vocab_size());
  int64_t max_added = -1;
  for (AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    if (token.special) impl->special_contents.insert(token.content);
    int32_t id;
    if (auto it = impl->added_to_id.find(token.content); it != impl->added_to_id.end()) {
      id = it->second;
    } else if (auto model_id = impl->model->TokenToId(token.content)) {
      id = *model_id;
    } else if (max_added < 0) {
      id = static_cast<int32_t>(vocab_size);
    } else {
      id = static_cast<int32_t>(max_added >= vocab_size || vocab_size == 0 ? max_added + 1
                                                                           : vocab_size);
    }
    token.id = id;
    max_added = std::max<int64_t>(max_added, id);
    if (auto it = impl->id_to_added.find(id); it != impl->id_to_added.end()) {
      impl->added[it->second] = token;  // a later entry for the same id replaces the earlier
    } else {
      impl->id_to_added[id] = impl->added.size();
      impl->added.push_back(token);
    }
    impl->added_to_id[token.content] = id;
  }
  // Patterns: special tokens first, then the others, each in file order; normalized tokens are
  // matched by their normalized content.
  std::vector<AddedTokenMatcher::Entry> raw, normalized;
  impl->added_text.resize(impl->added.size());
  for (const bool special_pass : {true, false}) {
    for (size_t i = 0; i < impl->added.size(); ++i) {
      const AddedToken& token = impl->added[i];
      const bool is_special = impl->special_contents.count(token.content) > 0;
      if (is_special != special_pass) continue;
      AddedTokenMatcher::Entry entry{token.content, token.id, token.single_word, token.lstrip,
                                     token.rstrip};
      if (token.normalized) {
        if (impl->normalizer != nullptr) {
          MG_RETURN_IF_ERROR(impl->normalizer->Normalize(entry.pattern));
        }
        impl->added_text[i] = entry.pattern;
        normalized.push_back(std::move(entry));
      } else {
        impl->added_text[i] = token.content;
        raw.push_back(std::move(entry));
      }
    }
  }
  impl->raw_matcher.Build(std::move(raw));
  impl->normalized_matcher.Build(std::move(normalized));
  impl->id_limit = std::max<int32_t>(impl->model->id_limit(), static_cast<int32_t>(max_added + 1));
  return Tokenizer(std::move(impl));
}

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                 bool add_special_tokens) const {
  MG_RETURN_IF_ERROR(ValidateUtf8(text, "Tokenizer::Encode: text"));
  const Impl& impl = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);

  std::vector<Segment> raw_segments;
  if (impl.raw_matcher.empty()) {
    if (!text.empty()) raw_segments.push_back({std::string(text), -1, true});
  } else {
    impl.raw_matcher.Split(text, /*at_start=*/true, raw_segments);
  }
  std::vector<Segment> segments;
  std::vector<Piece> pieces;
  Bpe::Scratch scratch;  // the merge loop's buffers, reused for every word
  for (Segment& raw : raw_segments) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    if (impl.normalizer != nullptr) MG_RETURN_IF_ERROR(impl.normalizer->Normalize(raw.text));
    segments.clear();
    if (impl.normalized_matcher.empty()) {
      if (!raw.text.empty()) segments.push_back(std::move(raw));
    } else {
      impl.normalized_matcher.Split(raw.text, raw.at_start, segments);
    }
    for (Segment& segment : segments) {
      if (segment.id >= 0) {
        ids.push_back(segment.id);
        continue;
      }
      pieces.clear();
      pieces.push_back({std::move(segment.text), segment.at_start});
      if (impl.pre_tokenizer != nullptr) impl.pre_tokenizer->PreTokenize(pieces);
      for (const Piece& piece : pieces) {
        MG_RETURN_IF_ERROR(impl.model->Tokenize(piece.text, ids, scratch));
      }
    }
  }
  if (impl.post_processor != nullptr) impl.post_processor->Process(ids, add_special_tokens);
  return ids;
}

StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids,
                                        bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string* token = impl.IdToToken(ids[i]);
    if (token == nullptr) {
      return InvalidArgument(
          "Tokenizer::Decode: ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
          " is not a token id (vocabulary size " + std::to_string(impl.id_limit) + ")");
    }
    if (skip_special_tokens && impl.special_contents.count(*token) > 0) continue;
    tokens.push_back(*token);
  }
  if (impl.decoder == nullptr) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) joined.push_back(' ');
      joined += tokens[i];
    }
    return joined;
  }
  impl.decoder->DecodeChain(tokens);
  std::string joined;
  for (const std::string& t : tokens)
    joined += t;
  return joined;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (auto it = impl_->added_to_id.find(token); it != impl_->added_to_id.end()) return it->second;
  return impl_->model->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  const std::string* token = impl_->IdToToken(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

int32_t Tokenizer::vocab_size() const {
  return impl_->id_limit;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const std::string* token = impl_->IdToToken(id);
  return token != nullptr && impl_->special_contents.count(*token) > 0;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  return impl_->added;
}

// ---- IncrementalDecoder ----------------------------------------------------------------------

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

StatusOr<std::string> IncrementalDecoder::Push(int32_t id) {
  // `tokenizers`' step_decode_stream: decode a window of ids that starts with a few ids of
  // context (`prefix_` is their text), and emit what the new id added to it.
  if (!tokenizer_->IdToToken(id).has_value()) {
    return InvalidArgument("IncrementalDecoder::Push: " + std::to_string(id) +
                           " is not a token id (vocabulary size " +
                           std::to_string(tokenizer_->vocab_size()) + ")");
  }
  if (prefix_.empty() && !ids_.empty()) {
    MG_ASSIGN_OR_RETURN(std::string new_prefix, tokenizer_->Decode(ids_, skip_special_tokens_));
    if (!EndsWithReplacement(new_prefix)) {
      prefix_ = std::move(new_prefix);
      prefix_index_ = ids_.size();
    }
  }
  ids_.push_back(id);
  MG_ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(ids_, skip_special_tokens_));
  if (text.size() <= prefix_.size() || EndsWithReplacement(text)) return std::string();
  if (text.compare(0, prefix_.size(), prefix_) != 0) {
    // The new id changed text already emitted (ByteFallback turns a whole run of byte tokens
    // into one U+FFFD per byte once the run is invalid UTF-8). `tokenizers` fails here
    // (InvalidPrefix); a stream cannot take text back, so restart the window at this id.
    ++num_restarts_;
    ids_.assign(1, id);
    prefix_.clear();
    prefix_index_ = 0;
    MG_ASSIGN_OR_RETURN(std::string fresh, tokenizer_->Decode(ids_, skip_special_tokens_));
    if (fresh.empty() || EndsWithReplacement(fresh)) return std::string();
    prefix_ = fresh;
    prefix_index_ = 1;
    return fresh;
  }
  std::string new_text = text.substr(prefix_.size());
  const size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_));
  MG_ASSIGN_OR_RETURN(prefix_, tokenizer_->Decode(ids_, skip_special_tokens_));
  prefix_index_ = new_prefix_index;
  return new_text;
}

StatusOr<std::string> IncrementalDecoder::Flush() {
  MG_ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(ids_, skip_special_tokens_));
  std::string rest;
  if (text.compare(0, prefix_.size(), prefix_) == 0) {
    rest = text.substr(prefix_.size());
  } else {
    // As in Push: the held-back ids changed emitted text; send them on their own.
    ++num_restarts_;
    const std::vector<int32_t> unsent(ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_),
                                      ids_.end());
    MG_ASSIGN_OR_RETURN(rest, tokenizer_->Decode(unsent, skip_special_tokens_));
  }
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return rest;
}

}  // namespace moegraph::tokenizer
