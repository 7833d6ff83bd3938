// A compiled PCRE2 regular expression (UTF + UCP, JIT where available) with the matching
// semantics of the Oniguruma engine that Hugging Face `tokenizers` uses.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/status.h"

namespace moegraph::tokenizer {

// A span of a string, in bytes, and whether it is a match of the pattern (true) or the text
// between two matches (false).
struct Span {
  size_t begin = 0;
  size_t end = 0;
  bool is_match = false;
};

class Regex {
 public:
  // Compiles `pattern` (Oniguruma syntax as `tokenizers` writes it). `\s` and `\S` are rewritten
  // to Oniguruma's Unicode White_Space set (PCRE2's UCP `\s` lacks U+0085). `what` names the
  // field in errors.
  static StatusOr<Regex> Compile(std::string_view pattern, std::string_view what);
  // A regex matching `literal` exactly.
  static StatusOr<Regex> Literal(std::string_view literal, std::string_view what);

  // All non-overlapping matches in valid UTF-8 `text`, left to right, as `tokenizers`'
  // find_iter reports them (an empty match right after the previous match is skipped).
  void FindMatches(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  // Splits `text` into spans that cover it: the matches and the text between them (Pattern::
  // find_matches in `tokenizers`). Empty text gives one empty non-match span.
  void Spans(std::string_view text, bool invert, std::vector<Span>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
  std::string pattern_;
};

// Rewrites `\s`/`\S` for PCRE2 (exposed for tests).
std::string TranslateOnigurumaPattern(std::string_view pattern);

}  // namespace moegraph::tokenizer
