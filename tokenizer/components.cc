// Normalizers, pre-tokenizers, decoders and post-processors of `tokenizer.json`.
#include "tokenizer/components.h"

#include <algorithm>
#include <array>
#include <map>
#include <utility>

#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace moegraph::tokenizer {

// ---- Field readers -------------------------------------------------------------------------

Status CheckType(const JsonValue& json, const std::string& field, const char* expected) {
  bool ok = false;
  const std::string_view want(expected);
  if (want == "an object") ok = json.is_object();
  if (want == "an array") ok = json.is_array();
  if (want == "a string") ok = json.is_string();
  if (want == "a bool") ok = json.is_bool();
  if (want == "an integer") ok = json.is_int();
  if (ok) return Status::Ok();
  return InvalidArgument("tokenizer.json: " + field + " must be " + expected + ", got " +
                         json.DescribeKind());
}

StatusOr<const JsonValue*> RequireField(const JsonValue& object, std::string_view key,
                                        const std::string& field) {
  const JsonValue* value = object.Find(key);
  if (value == nullptr) {
    return InvalidArgument("tokenizer.json: " + field + " is missing the field '" +
                           std::string(key) + "'");
  }
  return value;
}

StatusOr<std::string> GetString(const JsonValue& object, std::string_view key,
                                const std::string& field) {
  MG_ASSIGN_OR_RETURN(const JsonValue* value, RequireField(object, key, field));
  MG_RETURN_IF_ERROR(CheckType(*value, field + "." + std::string(key), "a string"));
  return value->as_string();
}

StatusOr<bool> GetBool(const JsonValue& object, std::string_view key, const std::string& field,
                       bool fallback) {
  const JsonValue* value = object.Find(key);
  if (value == nullptr || value->is_null()) return fallback;
  MG_RETURN_IF_ERROR(CheckType(*value, field + "." + std::string(key), "a bool"));
  return value->as_bool();
}

StatusOr<int64_t> GetInt(const JsonValue& object, std::string_view key, const std::string& field,
                         int64_t fallback) {
  const JsonValue* value = object.Find(key);
  if (value == nullptr || value->is_null()) return fallback;
  MG_RETURN_IF_ERROR(CheckType(*value, field + "." + std::string(key), "an integer"));
  return value->as_int();
}

Status CheckKnownFields(const JsonValue& object, const std::string& field,
                        std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : object.as_object()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (const std::string_view k : known)
        list += (list.empty() ? "" : ", ") + std::string(k);
      return InvalidArgument("tokenizer.json: " + field + " has an unknown field '" + key +
                             "' (known: " + list + ")");
    }
  }
  return Status::Ok();
}

namespace {

StatusOr<std::string> GetType(const JsonValue& json, const std::string& field) {
  MG_RETURN_IF_ERROR(CheckType(json, field, "an object"));
  return GetString(json, "type", field);
}

Status Unsupported(const std::string& field, const std::string& type, const char* supported) {
  return Unimplemented("tokenizer.json: " + field + " type '" + type +
                       "' is not supported (supported: " + std::string(supported) + ")");
}

// A single code point given as a one-character string.
StatusOr<char32_t> GetChar(const JsonValue& object, std::string_view key,
                           const std::string& field) {
  MG_ASSIGN_OR_RETURN(std::string s, GetString(object, key, field));
  MG_RETURN_IF_ERROR(ValidateUtf8(s, "tokenizer.json: " + field + "." + std::string(key)));
  size_t pos = 0;
  if (s.empty()) {
    return InvalidArgument("tokenizer.json: " + field + "." + std::string(key) +
                           " must be one character, got an empty string");
  }
  const char32_t cp = NextCodePoint(s, pos);
  if (pos != s.size()) {
    return InvalidArgument("tokenizer.json: " + field + "." + std::string(key) +
                           " must be one character, got '" + s + "'");
  }
  return cp;
}

// `{"String": "..."}` or `{"Regex": "..."}` (Split, Replace).
class Pattern {
 public:
  static StatusOr<Pattern> FromJson(const JsonValue& json, const std::string& field) {
    MG_RETURN_IF_ERROR(CheckType(json, field, "an object"));
    Pattern pattern;
    if (json.size() == 1 && json.Find("String") != nullptr) {
      MG_ASSIGN_OR_RETURN(pattern.literal_, GetString(json, "String", field));
      MG_RETURN_IF_ERROR(ValidateUtf8(pattern.literal_, "tokenizer.json: " + field + ".String"));
      return pattern;
    }
    if (json.size() == 1 && json.Find("Regex") != nullptr) {
      MG_ASSIGN_OR_RETURN(std::string source, GetString(json, "Regex", field));
      MG_ASSIGN_OR_RETURN(Regex regex,
                          Regex::Compile(source, "tokenizer.json: " + field + ".Regex"));
      pattern.regex_ = std::make_shared<Regex>(std::move(regex));
      return pattern;
    }
    return InvalidArgument("tokenizer.json: " + field +
                           " must be {\"String\": ...} or {\"Regex\": ...}");
  }

  // Pattern::find_matches of `tokenizers` (a string pattern matches non-overlapping
  // occurrences left to right; an empty string matches nothing).
  void Spans(std::string_view text, bool invert, std::vector<Span>& out) const {
    if (regex_ != nullptr) {
      regex_->Spans(text, invert, out);
      return;
    }
    if (text.empty()) {
      out.push_back({0, 0, invert});
      return;
    }
    if (literal_.empty()) {
      out.push_back({0, text.size(), invert});
      return;
    }
    size_t prev = 0;
    for (size_t at = text.find(literal_); at != std::string_view::npos;
         at = text.find(literal_, at + literal_.size())) {
      if (at != prev) out.push_back({prev, at, invert});
      out.push_back({at, at + literal_.size(), !invert});
      prev = at + literal_.size();
    }
    if (prev != text.size()) out.push_back({prev, text.size(), invert});
  }

  void ReplaceAll(std::string& text, std::string_view content) const {
    std::vector<Span> spans;
    Spans(text, /*invert=*/false, spans);
    bool any = false;
    for (const Span& s : spans)
      any = any || s.is_match;
    if (!any) return;
    std::string out;
    out.reserve(text.size());
    for (const Span& s : spans) {
      if (s.is_match) {
        out.append(content);
      } else {
        out.append(text, s.begin, s.end - s.begin);
      }
    }
    text = std::move(out);
  }

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

// Each code point for which `pred` holds is its own match (`tokenizers`' Fn(char) -> bool
// pattern).
template <typename Pred>
void CharSpans(std::string_view text, Pred pred, std::vector<Span>& out) {
  if (text.empty()) {
    out.push_back({0, 0, false});
    return;
  }
  size_t last = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t begin = pos;
    const char32_t cp = NextCodePoint(text, pos);
    if (pred(cp)) {
      if (last < begin) out.push_back({last, begin, false});
      out.push_back({begin, pos, true});
      last = pos;
    }
  }
  if (last < text.size()) out.push_back({last, text.size(), false});
}

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

StatusOr<SplitBehavior> GetBehavior(const JsonValue& json, const std::string& field) {
  MG_ASSIGN_OR_RETURN(std::string name, GetString(json, "behavior", field));
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return InvalidArgument("tokenizer.json: " + field + ".behavior '" + name +
                         "' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                         "Contiguous");
}

// NormalizedString::split: turns the spans of `piece` into pieces by `behavior`; `out` gets the
// non-empty ones.
void SplitPiece(const Piece& piece, const std::vector<Span>& spans, SplitBehavior behavior,
                std::vector<Piece>& out) {
  // (begin, end, remove)
  struct Part {
    size_t begin, end;
    bool remove;
  };
  std::vector<Part> parts;
  parts.reserve(spans.size());
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Span& s : spans)
        parts.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans)
        parts.push_back({s.begin, s.end, s.is_match});
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !parts.empty()) {
          parts.back().end = s.end;
        } else {
          parts.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !parts.empty()) {
          parts.back().end = s.end;
        } else {
          parts.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !parts.empty()) {
          parts.back().begin = it->begin;
        } else {
          parts.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    }
  }
  for (const Part& part : parts) {
    if (part.remove || part.begin == part.end) continue;
    out.push_back(
        {piece.text.substr(part.begin, part.end - part.begin), piece.at_start && part.begin == 0});
  }
}

// ---- Normalizers ----------------------------------------------------------------------------

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}
  Status Normalize(std::string& text) const override { return tokenizer::Normalize(form_, text); }

 private:
  NormalForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  Status Normalize(std::string& text) const override {
    Lowercase(text);
    return Status::Ok();
  }
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  Status Normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prepend_);
    return Status::Ok();
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  Status Normalize(std::string& text) const override {
    pattern_.ReplaceAll(text, content_);
    return Status::Ok();
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  Status Normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t pos = begin;
        if (!IsWhitespace(NextCodePoint(text, pos))) break;
        begin = pos;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
          --start;
        size_t pos = start;
        if (!IsWhitespace(NextCodePoint(text, pos))) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
    return Status::Ok();
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> stages)
      : stages_(std::move(stages)) {}
  Status Normalize(std::string& text) const override {
    for (const auto& stage : stages_)
      MG_RETURN_IF_ERROR(stage->Normalize(text));
    return Status::Ok();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> stages_;
};

constexpr const char* kSupportedNormalizers =
    "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence";

// ---- Pre-tokenizers -------------------------------------------------------------------------

// GPT-2's pre-tokenization regex (ByteLevel with use_regex).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The UTF-8 of each byte's character in the byte-level alphabet (1 or 2 bytes).
struct ByteLevelTable {
  std::array<std::array<char, 2>, 256> utf8{};
  std::array<uint8_t, 256> length{};
  ByteLevelTable() {
    for (int b = 0; b < 256; ++b) {
      std::string s;
      AppendUtf8(s, ByteToChar(static_cast<uint8_t>(b)));
      length[b] = static_cast<uint8_t>(s.size());
      for (size_t i = 0; i < s.size(); ++i)
        utf8[b][i] = s[i];
    }
  }
};

std::string ByteLevelEncode(std::string_view text) {
  static const ByteLevelTable table;
  std::string out(text.size() * 2, '\0');
  size_t n = 0;
  for (const char c : text) {
    const auto b = static_cast<uint8_t>(c);
    out[n] = table.utf8[b][0];
    out[n + 1] = table.utf8[b][1];
    n += table.length[b];
  }
  out.resize(n);
  return out;
}

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::shared_ptr<const Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 2);
    std::vector<Span> spans;
    for (Piece& piece : pieces) {
      if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) {
        piece.text.insert(0, 1, ' ');
      }
      if (regex_ != nullptr) {
        spans.clear();
        regex_->Spans(piece.text, /*invert=*/false, spans);
        for (const Span& s : spans) {
          if (s.begin == s.end) continue;
          out.push_back(
              {ByteLevelEncode(std::string_view(piece.text).substr(s.begin, s.end - s.begin)),
               piece.at_start && s.begin == 0});
        }
      } else if (!piece.text.empty()) {
        out.push_back({ByteLevelEncode(piece.text), piece.at_start});
      }
    }
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::shared_ptr<const Regex> regex_;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 4);
    std::vector<Span> spans;
    for (const Piece& piece : pieces) {
      spans.clear();
      pattern_.Spans(piece.text, invert_, spans);
      SplitPiece(piece, spans, behavior_, out);
    }
    pieces = std::move(out);
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

enum class PrependScheme { kAlways, kNever, kFirst };

StatusOr<PrependScheme> GetPrependScheme(const JsonValue& json, const std::string& field) {
  const JsonValue* scheme = json.Find("prepend_scheme");
  if (scheme == nullptr || scheme->is_null()) {
    // Files written before prepend_scheme existed say add_prefix_space.
    MG_ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(json, "add_prefix_space", field, true));
    return add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
  }
  MG_ASSIGN_OR_RETURN(std::string name, GetString(json, "prepend_scheme", field));
  if (name == "always") return PrependScheme::kAlways;
  if (name == "never") return PrependScheme::kNever;
  if (name == "first") return PrependScheme::kFirst;
  return InvalidArgument("tokenizer.json: " + field + ".prepend_scheme '" + name +
                         "' is not one of always, never, first");
}

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    AppendUtf8(replacement_utf8_, replacement);
  }

  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 4);
    std::vector<Span> spans;
    for (Piece& piece : pieces) {
      std::string replaced;
      replaced.reserve(piece.text.size() + 8);
      for (const char c : piece.text) {
        if (c == ' ') {
          replaced.append(replacement_utf8_);
        } else {
          replaced.push_back(c);
        }
      }
      const bool starts_with_replacement =
          replaced.compare(0, replacement_utf8_.size(), replacement_utf8_) == 0;
      if (!starts_with_replacement && (scheme_ == PrependScheme::kAlways ||
                                       (scheme_ == PrependScheme::kFirst && piece.at_start))) {
        replaced.insert(0, replacement_utf8_);
      }
      Piece replaced_piece{std::move(replaced), piece.at_start};
      if (split_) {
        spans.clear();
        const char32_t r = replacement_;
        CharSpans(
            replaced_piece.text, [r](char32_t cp) { return cp == r; }, spans);
        SplitPiece(replaced_piece, spans, SplitBehavior::kMergedWithNext, out);
      } else if (!replaced_piece.text.empty()) {
        out.push_back(std::move(replaced_piece));
      }
    }
    pieces = std::move(out);
  }

 private:
  char32_t replacement_;
  std::string replacement_utf8_;
  PrependScheme scheme_;
  bool split_;
};

class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual_digits) : individual_digits_(individual_digits) {}
  void PreTokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 2);
    std::vector<Span> spans;
    for (const Piece& piece : pieces) {
      spans.clear();
      CharSpans(piece.text, IsNumeric, spans);
      SplitPiece(piece, spans,
                 individual_digits_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, out);
    }
    pieces = std::move(out);
  }

 private:
  bool individual_digits_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> stages)
      : stages_(std::move(stages)) {}
  void PreTokenize(std::vector<Piece>& pieces) const override {
    for (const auto& stage : stages_)
      stage->PreTokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> stages_;
};

constexpr const char* kSupportedPreTokenizers = "ByteLevel, Split, Metaspace, Digits, Sequence";

// ---- Decoders -------------------------------------------------------------------------------

class ByteLevelDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      const size_t mark = bytes.size();
      size_t pos = 0;
      bool all_mapped = true;
      while (pos < token.size()) {
        const int b = CharToByte(NextCodePoint(token, pos));
        if (b < 0) {
          all_mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!all_mapped) {
        // A token outside the byte alphabet (an added token) keeps its own bytes.
        bytes.resize(mark);
        bytes.append(token);
      }
    }
    tokens.assign(1, Utf8Lossy(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, PrependScheme scheme)
      : replacement_(replacement), scheme_(scheme) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      out.reserve(tokens[i].size());
      size_t pos = 0;
      while (pos < tokens[i].size()) {
        const size_t begin = pos;
        const char32_t cp = NextCodePoint(tokens[i], pos);
        if (cp == replacement_) {
          if (!(i == 0 && scheme_ != PrependScheme::kNever)) out.push_back(' ');
        } else {
          out.append(tokens[i], begin, pos - begin);
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  char32_t replacement_;
  PrependScheme scheme_;
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<0xNN>" -> the byte (Rust's u8::from_str_radix, which also takes "+N"), else -1.
int ByteFallbackValue(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  if (token[3] == '+') return HexDigit(token[4]);
  const int hi = HexDigit(token[3]), lo = HexDigit(token[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

class ByteFallbackDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (ValidateUtf8(pending, "").ok()) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i)
          out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& token : tokens) {
      const int byte = ByteFallbackValue(token);
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const std::string& t : tokens)
      joined += t;
    tokens.assign(1, std::move(joined));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
      size_t pos = 0;
      while (pos < token.size()) {
        const size_t begin = pos;
        chars.emplace_back(begin, NextCodePoint(token, pos));
      }
      size_t start_cut = 0;
      for (size_t i = 0; i < std::min(start_, chars.size()); ++i) {
        if (chars[i].second != content_) break;
        start_cut = i + 1;
      }
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < std::min(stop_, chars.size()); ++i) {
        const size_t index = chars.size() - i - 1;
        if (chars[index].second != content_) break;
        stop_cut = index;
      }
      if (stop_cut <= start_cut) {
        token.clear();
        continue;
      }
      const size_t begin = chars[start_cut].first;
      const size_t end = stop_cut < chars.size() ? chars[stop_cut].first : token.size();
      token = token.substr(begin, end - begin);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens)
      pattern_.ReplaceAll(token, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> stages)
      : stages_(std::move(stages)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (const auto& stage : stages_)
      stage->DecodeChain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> stages_;
};

constexpr const char* kSupportedDecoders =
    "ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence";

// ---- Post-processors ------------------------------------------------------------------------

class TemplateProcessor final : public PostProcessor {
 public:
  // Each entry: the ids a SpecialToken piece adds, or empty with `is_sequence` for $A.
  struct Item {
    bool is_sequence = false;
    std::vector<int32_t> ids;
  };
  explicit TemplateProcessor(std::vector<Item> single) : single_(std::move(single)) {}
  void Process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) {
      // Only the $A pieces remain (a template may repeat $A).
      std::vector<int32_t> out;
      for (const Item& item : single_) {
        if (item.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
      }
      ids = std::move(out);
      return;
    }
    std::vector<int32_t> out;
    for (const Item& item : single_) {
      if (item.is_sequence) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), item.ids.begin(), item.ids.end());
      }
    }
    ids = std::move(out);
  }

 private:
  std::vector<Item> single_;
};

class IdentityProcessor final : public PostProcessor {
 public:
  void Process(std::vector<int32_t>&, bool) const override {}
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> stages)
      : stages_(std::move(stages)) {}
  void Process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& stage : stages_)
      stage->Process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> stages_;
};

constexpr const char* kSupportedPostProcessors = "TemplateProcessing, ByteLevel, Sequence";

// Parses a template (the single or pair list) and checks its pieces; returns the items.
StatusOr<std::vector<TemplateProcessor::Item>> ParseTemplate(
    const JsonValue& json, const std::string& field,
    const std::map<std::string, std::vector<int32_t>>& special_tokens, bool allow_b) {
  MG_RETURN_IF_ERROR(CheckType(json, field, "an array"));
  std::vector<TemplateProcessor::Item> items;
  for (size_t i = 0; i < json.size(); ++i) {
    const JsonValue& piece = json.as_array()[i];
    const std::string piece_field = field + "[" + std::to_string(i) + "]";
    MG_RETURN_IF_ERROR(CheckType(piece, piece_field, "an object"));
    if (piece.size() != 1) {
      return InvalidArgument("tokenizer.json: " + piece_field +
                             " must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
    const auto& [kind, body] = piece.as_object()[0];
    MG_RETURN_IF_ERROR(CheckType(body, piece_field + "." + kind, "an object"));
    MG_ASSIGN_OR_RETURN(std::string id, GetString(body, "id", piece_field + "." + kind));
    MG_RETURN_IF_ERROR(GetInt(body, "type_id", piece_field + "." + kind, 0).status());
    TemplateProcessor::Item item;
    if (kind == "Sequence") {
      if (id != "A" && !(allow_b && id == "B")) {
        return InvalidArgument("tokenizer.json: " + piece_field + ".Sequence.id must be " +
                               (allow_b ? "\"A\" or \"B\"" : "\"A\" in the single template") +
                               ", got '" + id + "'");
      }
      item.is_sequence = id == "A";
    } else if (kind == "SpecialToken") {
      auto it = special_tokens.find(id);
      if (it == special_tokens.end()) {
        return InvalidArgument("tokenizer.json: " + piece_field + " names the special token '" +
                               id + "', which post_processor.special_tokens does not define");
      }
      item.ids = it->second;
    } else {
      return InvalidArgument("tokenizer.json: " + piece_field + " has the unknown piece kind '" +
                             kind + "' (known: SpecialToken, Sequence)");
    }
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

// ---- Builders -------------------------------------------------------------------------------

// The stages of a `Sequence` component: `json[list_name]`, each built by
// `make` (a null stage is a no-op and is dropped).
template <typename T>
using ComponentMaker = StatusOr<std::unique_ptr<T>> (*)(const JsonValue&, const std::string&);

template <typename T>
StatusOr<std::vector<std::unique_ptr<T>>> MakeStages(const JsonValue& json,
                                                     const std::string& field,
                                                     std::string_view list_name,
                                                     ComponentMaker<T> make) {
  MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", list_name}));
  MG_ASSIGN_OR_RETURN(const JsonValue* list, RequireField(json, list_name, field));
  const std::string list_field = field + "." + std::string(list_name);
  MG_RETURN_IF_ERROR(CheckType(*list, list_field, "an array"));
  std::vector<std::unique_ptr<T>> stages;
  for (size_t i = 0; i < list->size(); ++i) {
    MG_ASSIGN_OR_RETURN(std::unique_ptr<T> stage,
                        make(list->as_array()[i], list_field + "[" + std::to_string(i) + "]"));
    if (stage != nullptr) stages.push_back(std::move(stage));
  }
  return stages;
}

StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const JsonValue& json,
                                                     const std::string& field) {
  if (json.is_null()) return std::unique_ptr<Normalizer>();
  MG_ASSIGN_OR_RETURN(std::string type, GetType(json, field));
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type"}));
    const NormalForm form = type == "NFC"    ? NormalForm::kNfc
                            : type == "NFD"  ? NormalForm::kNfd
                            : type == "NFKC" ? NormalForm::kNfkc
                                             : NormalForm::kNfkd;
    return std::unique_ptr<Normalizer>(std::make_unique<UnicodeNormalizer>(form));
  }
  if (type == "Lowercase") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type"}));
    return std::unique_ptr<Normalizer>(std::make_unique<LowercaseNormalizer>());
  }
  if (type == "Prepend") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "prepend"}));
    MG_ASSIGN_OR_RETURN(std::string prepend, GetString(json, "prepend", field));
    MG_RETURN_IF_ERROR(ValidateUtf8(prepend, "tokenizer.json: " + field + ".prepend"));
    return std::unique_ptr<Normalizer>(std::make_unique<PrependNormalizer>(std::move(prepend)));
  }
  if (type == "Replace") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "pattern", "content"}));
    MG_ASSIGN_OR_RETURN(const JsonValue* pattern_json, RequireField(json, "pattern", field));
    MG_ASSIGN_OR_RETURN(Pattern pattern, Pattern::FromJson(*pattern_json, field + ".pattern"));
    MG_ASSIGN_OR_RETURN(std::string content, GetString(json, "content", field));
    return std::unique_ptr<Normalizer>(
        std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content)));
  }
  if (type == "Strip") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "strip_left", "strip_right"}));
    MG_ASSIGN_OR_RETURN(bool left, GetBool(json, "strip_left", field, true));
    MG_ASSIGN_OR_RETURN(bool right, GetBool(json, "strip_right", field, true));
    return std::unique_ptr<Normalizer>(std::make_unique<StripNormalizer>(left, right));
  }
  if (type == "Sequence") {
    MG_ASSIGN_OR_RETURN(auto stages,
                        MakeStages<Normalizer>(json, field, "normalizers", MakeNormalizer));
    return std::unique_ptr<Normalizer>(std::make_unique<SequenceNormalizer>(std::move(stages)));
  }
  return Unsupported(field, type, kSupportedNormalizers);
}

StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const JsonValue& json,
                                                         const std::string& field) {
  if (json.is_null()) return std::unique_ptr<PreTokenizer>();
  MG_ASSIGN_OR_RETURN(std::string type, GetType(json, field));
  if (type == "ByteLevel") {
    MG_RETURN_IF_ERROR(
        CheckKnownFields(json, field, {"type", "add_prefix_space", "trim_offsets", "use_regex"}));
    MG_ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(json, "add_prefix_space", field, true));
    MG_RETURN_IF_ERROR(GetBool(json, "trim_offsets", field, true).status());
    MG_ASSIGN_OR_RETURN(bool use_regex, GetBool(json, "use_regex", field, true));
    std::shared_ptr<const Regex> regex;
    if (use_regex) {
      MG_ASSIGN_OR_RETURN(Regex compiled, Regex::Compile(kGpt2Pattern, field));
      regex = std::make_shared<Regex>(std::move(compiled));
    }
    return std::unique_ptr<PreTokenizer>(
        std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex)));
  }
  if (type == "Split") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "pattern", "behavior", "invert"}));
    MG_ASSIGN_OR_RETURN(const JsonValue* pattern_json, RequireField(json, "pattern", field));
    MG_ASSIGN_OR_RETURN(Pattern pattern, Pattern::FromJson(*pattern_json, field + ".pattern"));
    MG_ASSIGN_OR_RETURN(SplitBehavior behavior, GetBehavior(json, field));
    MG_ASSIGN_OR_RETURN(bool invert, GetBool(json, "invert", field, false));
    return std::unique_ptr<PreTokenizer>(
        std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert));
  }
  if (type == "Metaspace") {
    MG_RETURN_IF_ERROR(CheckKnownFields(
        json, field,
        {"type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep"}));
    MG_ASSIGN_OR_RETURN(char32_t replacement, GetChar(json, "replacement", field));
    MG_ASSIGN_OR_RETURN(PrependScheme scheme, GetPrependScheme(json, field));
    MG_ASSIGN_OR_RETURN(bool split, GetBool(json, "split", field, true));
    return std::unique_ptr<PreTokenizer>(
        std::make_unique<MetaspacePreTokenizer>(replacement, scheme, split));
  }
  if (type == "Digits") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "individual_digits"}));
    MG_ASSIGN_OR_RETURN(bool individual, GetBool(json, "individual_digits", field, false));
    return std::unique_ptr<PreTokenizer>(std::make_unique<DigitsPreTokenizer>(individual));
  }
  if (type == "Sequence") {
    MG_ASSIGN_OR_RETURN(auto stages,
                        MakeStages<PreTokenizer>(json, field, "pretokenizers", MakePreTokenizer));
    return std::unique_ptr<PreTokenizer>(std::make_unique<SequencePreTokenizer>(std::move(stages)));
  }
  return Unsupported(field, type, kSupportedPreTokenizers);
}

StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const JsonValue& json, const std::string& field) {
  if (json.is_null()) return std::unique_ptr<Decoder>();
  MG_ASSIGN_OR_RETURN(std::string type, GetType(json, field));
  if (type == "ByteLevel") {
    MG_RETURN_IF_ERROR(
        CheckKnownFields(json, field, {"type", "add_prefix_space", "trim_offsets", "use_regex"}));
    return std::unique_ptr<Decoder>(std::make_unique<ByteLevelDecoder>());
  }
  if (type == "Metaspace") {
    MG_RETURN_IF_ERROR(CheckKnownFields(
        json, field,
        {"type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep"}));
    MG_ASSIGN_OR_RETURN(char32_t replacement, GetChar(json, "replacement", field));
    MG_ASSIGN_OR_RETURN(PrependScheme scheme, GetPrependScheme(json, field));
    MG_RETURN_IF_ERROR(GetBool(json, "split", field, true).status());
    return std::unique_ptr<Decoder>(std::make_unique<MetaspaceDecoder>(replacement, scheme));
  }
  if (type == "ByteFallback" || type == "Fuse") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type"}));
    if (type == "Fuse") return std::unique_ptr<Decoder>(std::make_unique<FuseDecoder>());
    return std::unique_ptr<Decoder>(std::make_unique<ByteFallbackDecoder>());
  }
  if (type == "Strip") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "content", "start", "stop"}));
    MG_ASSIGN_OR_RETURN(char32_t content, GetChar(json, "content", field));
    MG_ASSIGN_OR_RETURN(int64_t start, GetInt(json, "start", field, 0));
    MG_ASSIGN_OR_RETURN(int64_t stop, GetInt(json, "stop", field, 0));
    if (start < 0 || stop < 0) {
      return InvalidArgument("tokenizer.json: " + field + ".start and .stop must be >= 0");
    }
    return std::unique_ptr<Decoder>(std::make_unique<StripDecoder>(
        content, static_cast<size_t>(start), static_cast<size_t>(stop)));
  }
  if (type == "Replace") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "pattern", "content"}));
    MG_ASSIGN_OR_RETURN(const JsonValue* pattern_json, RequireField(json, "pattern", field));
    MG_ASSIGN_OR_RETURN(Pattern pattern, Pattern::FromJson(*pattern_json, field + ".pattern"));
    MG_ASSIGN_OR_RETURN(std::string content, GetString(json, "content", field));
    return std::unique_ptr<Decoder>(
        std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content)));
  }
  if (type == "Sequence") {
    MG_ASSIGN_OR_RETURN(auto stages, MakeStages<Decoder>(json, field, "decoders", MakeDecoder));
    return std::unique_ptr<Decoder>(std::make_unique<SequenceDecoder>(std::move(stages)));
  }
  return Unsupported(field, type, kSupportedDecoders);
}

StatusOr<std::unique_ptr<PostProcessor>> MakePostProcessor(const JsonValue& json,
                                                           const std::string& field) {
  if (json.is_null()) return std::unique_ptr<PostProcessor>();
  MG_ASSIGN_OR_RETURN(std::string type, GetType(json, field));
  if (type == "ByteLevel") {
    // Only offsets change; the ids are those of the encoding.
    MG_RETURN_IF_ERROR(
        CheckKnownFields(json, field, {"type", "add_prefix_space", "trim_offsets", "use_regex"}));
    return std::unique_ptr<PostProcessor>(std::make_unique<IdentityProcessor>());
  }
  if (type == "TemplateProcessing") {
    MG_RETURN_IF_ERROR(CheckKnownFields(json, field, {"type", "single", "pair", "special_tokens"}));
    MG_ASSIGN_OR_RETURN(const JsonValue* specials, RequireField(json, "special_tokens", field));
    MG_RETURN_IF_ERROR(CheckType(*specials, field + ".special_tokens", "an object"));
    std::map<std::string, std::vector<int32_t>> special_ids;
    for (const auto& [name, token] : specials->as_object()) {
      const std::string token_field = field + ".special_tokens." + name;
      MG_RETURN_IF_ERROR(CheckType(token, token_field, "an object"));
      MG_ASSIGN_OR_RETURN(const JsonValue* ids, RequireField(token, "ids", token_field));
      MG_RETURN_IF_ERROR(CheckType(*ids, token_field + ".ids", "an array"));
      std::vector<int32_t>& out = special_ids[name];
      for (const JsonValue& id : ids->as_array()) {
        if (!id.is_int() || id.as_int() < 0 || id.as_int() > INT32_MAX) {
          return InvalidArgument("tokenizer.json: " + token_field +
                                 ".ids must hold non-negative integers, got " + id.DescribeKind());
        }
        out.push_back(static_cast<int32_t>(id.as_int()));
      }
    }
    MG_ASSIGN_OR_RETURN(const JsonValue* single, RequireField(json, "single", field));
    MG_ASSIGN_OR_RETURN(auto items,
                        ParseTemplate(*single, field + ".single", special_ids, /*allow_b=*/false));
    if (const JsonValue* pair = json.Find("pair"); pair != nullptr && !pair->is_null()) {
      MG_RETURN_IF_ERROR(
          ParseTemplate(*pair, field + ".pair", special_ids, /*allow_b=*/true).status());
    }
    return std::unique_ptr<PostProcessor>(std::make_unique<TemplateProcessor>(std::move(items)));
  }
  if (type == "Sequence") {
    MG_ASSIGN_OR_RETURN(auto stages,
                        MakeStages<PostProcessor>(json, field, "processors", MakePostProcessor));
    return std::unique_ptr<PostProcessor>(std::make_unique<SequenceProcessor>(std::move(stages)));
  }
  return Unsupported(field, type, kSupportedPostProcessors);
}

}  // namespace moegraph::tokenizer
