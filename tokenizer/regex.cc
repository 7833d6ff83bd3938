// PCRE2 wrapper for the tokenizer's regexes.
#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/unicode.h"

namespace moegraph::tokenizer {

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

namespace {
// Oniguruma's `\s` for UTF-8: exactly the White_Space property.
constexpr std::string_view kSpaceClassBody = "\\t-\\r\\x{85}\\p{Z}";
}  // namespace

std::string TranslateOnigurumaPattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[i + 1];
      if (next == 's') {
        if (in_class) {
          out.append(kSpaceClassBody);
        } else {
          out.append("[").append(kSpaceClassBody).append("]");
        }
        ++i;
        continue;
      }
      if (next == 'S' && !in_class) {
        out.append("[^").append(kSpaceClassBody).append("]");
        ++i;
        continue;
      }
      out.push_back(c);
      out.push_back(next);
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' (or '^]') right after the opening bracket is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

StatusOr<Regex> Regex::Compile(std::string_view pattern, std::string_view what) {
  MG_RETURN_IF_ERROR(ValidateUtf8(pattern, what));
  const std::string translated = TranslateOnigurumaPattern(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return InvalidArgument(std::string(what) + ": invalid regex '" + std::string(pattern) +
                           "': " + reinterpret_cast<const char*>(message));
  }
  auto holder = std::make_shared<Code>();
  holder->code = code;
  holder->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  Regex regex;
  regex.code_ = std::move(holder);
  regex.pattern_ = std::string(pattern);
  return regex;
}

StatusOr<Regex> Regex::Literal(std::string_view literal, std::string_view what) {
  std::string quoted;
  for (const char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#&~ \t\n").find(c) != std::string_view::npos) {
      quoted.append("\\x{");
      static constexpr char kHex[] = "0123456789abcdef";
      quoted.push_back(kHex[(static_cast<unsigned char>(c) >> 4) & 0xF]);
      quoted.push_back(kHex[static_cast<unsigned char>(c) & 0xF]);
      quoted.push_back('}');
    } else {
      quoted.push_back(c);
    }
  }
  return Compile(quoted, what);
}

void Regex::FindMatches(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (start <= text.size()) {
    const int rc =
        code_->jit ? pcre2_jit_match(code_->code, subject, text.size(), start, 0, match, nullptr)
                   : pcre2_match(code_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                                 match, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    const size_t b = ovector[0];
    const size_t e = ovector[1];
    if (b == e && have_last && last_end == e) {
      // Oniguruma's iterator: no empty match right after the previous match; step one char.
      if (start >= text.size()) break;
      start += Utf8Length(static_cast<unsigned char>(text[start]));
      continue;
    }
    out.emplace_back(b, e);
    have_last = true;
    last_end = e;
    start = e;
    if (b == e) {
      // Oniguruma then searches again from the same place and skips the repeated empty match.
      if (start >= text.size()) break;
      start += Utf8Length(static_cast<unsigned char>(text[start]));
    }
  }
  pcre2_match_data_free(match);
}

void Regex::Spans(std::string_view text, bool invert, std::vector<Span>& out) const {
  if (text.empty()) {
    out.push_back({0, 0, invert});
    return;
  }
  std::vector<std::pair<size_t, size_t>> matches;
  FindMatches(text, matches);
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) out.push_back({prev, b, invert});
    out.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != text.size()) out.push_back({prev, text.size(), invert});
}

}  // namespace moegraph::tokenizer
