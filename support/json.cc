// JSON parsing on nlohmann-json's SAX parser, adapted to JsonValue and to our messages; the
// writer (Python-compatible number output).
#include "support/json.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <unordered_set>

#include "support/format.h"

namespace moegraph {
namespace {

// Objects at least this large track their keys in a hash set while parsing, so duplicate
// detection stays linear on big headers (a sharded checkpoint's weight_map has ~20k keys).
constexpr size_t kDuplicateSetThreshold = 16;

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// A `const char*` for nlohmann's input adapter that also publishes how far the lexer has read:
// nlohmann's SAX callbacks carry no position, and duplicate keys and the depth limit (which
// nlohmann does not check) are reported at a byte offset.
class TrackedIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackedIterator(const char* p, const char** cursor) : p_(p), cursor_(cursor) {}
  const char& operator*() const { return *p_; }
  TrackedIterator& operator++() {
    *cursor_ = ++p_;
    return *this;
  }
  bool operator==(const TrackedIterator& other) const { return p_ == other.p_; }

 private:
  const char* p_;
  const char** cursor_;
};

// Builds a JsonValue from nlohmann's SAX events, rejects what nlohmann accepts and we do not
// (duplicate keys, nesting deeper than kMaxJsonDepth), and rewords nlohmann's errors as
// "source:line:col: expected X, found Y" at the byte they are about.
//
// nlohmann reports an error with the count of bytes its lexer read; which token failed and what
// the grammar wanted there follow from where the last event left off (`resume_`) and from the
// innermost open container's phase: between two events the lexer only passes whitespace and at
// most one ',' or ':'.
class JsonBuilder {
 public:
  using Json = nlohmann::json;

  JsonBuilder(std::string_view text, std::string_view source_name)
      : text_(text), source_name_(source_name), cursor_(text.data()) {}

  StatusOr<JsonValue> Parse() {
    // nlohmann skips a UTF-8 byte order mark; RFC 8259 parsers may refuse it, and we do.
    if (!text_.empty() && static_cast<unsigned char>(text_[0]) == 0xEF) {
      return Error(0, "expected a JSON value, found byte 0xEF");
    }
    TrackedIterator first(text_.data(), &cursor_);
    TrackedIterator last(text_.data() + text_.size(), &cursor_);
    if (!Json::sax_parse(first, last, this)) return status_;
    return std::move(root_);
  }

  // nlohmann's SAX interface. Returning false stops the parse (status_ says why).
  bool null() { return AddValue(JsonValue::Null()); }
  bool boolean(bool value) { return AddValue(JsonValue::Bool(value)); }
  bool number_integer(Json::number_integer_t value) { return AddNumber(JsonValue::Int(value)); }
  bool number_unsigned(Json::number_unsigned_t value) {
    // Beyond int64 a literal integer is only a double, as JsonValue documents.
    return AddNumber(value <= static_cast<uint64_t>(INT64_MAX)
                         ? JsonValue::Int(static_cast<int64_t>(value))
                         : JsonValue::Double(static_cast<double>(value)));
  }
  bool number_float(Json::number_float_t value, const std::string& /*literal*/) {
    return AddNumber(JsonValue::Double(value));
  }
  bool string(std::string& value) { return AddValue(JsonValue::String(std::move(value))); }
  bool binary(Json::binary_t& /*value*/) { return false; }  // only the binary formats have it
  bool start_object(size_t /*elements*/) { return Open(/*is_array=*/false); }
  bool start_array(size_t /*elements*/) { return Open(/*is_array=*/true); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool key(std::string& key) {
    resume_ = Offset();
    last_was_number_ = false;
    Frame& frame = frames_.back();
    bool duplicate = false;
    if (frame.members.size() < kDuplicateSetThreshold) {
      for (const auto& [existing, unused] : frame.members)
        duplicate = duplicate || existing == key;
    } else {
      if (frame.keys.empty()) {
        for (const auto& member : frame.members)
          frame.keys.insert(member.first);
      }
      duplicate = !frame.keys.insert(key).second;
    }
    if (duplicate) {
      const size_t open = OpeningQuoteBefore(resume_);
      status_ =
          Error(open, "duplicate object key " + std::string(text_.substr(open, resume_ - open)));
      return false;
    }
    frame.key = std::move(key);
    frame.phase = Phase::kAfterKey;
    return true;
  }
  bool parse_error(size_t bytes_read, const std::string& /*last_token*/,
                   const Json::exception& error) {
    status_ = Reword(std::min(bytes_read, text_.size() + 1), error);
    return false;
  }

 private:
  enum class Phase : uint8_t { kStart, kAfterKey, kAfterValue };
  struct Frame {
    bool is_array = false;
    Phase phase = Phase::kStart;
    JsonValue::Array elements;
    JsonValue::Object members;
    std::string key;                       // of the member whose value comes next
    std::unordered_set<std::string> keys;  // filled once members reach the threshold
  };

  size_t Offset() const { return static_cast<size_t>(cursor_ - text_.data()); }

  size_t SkipWhitespace(size_t at) const {
    while (at < text_.size() &&
           (text_[at] == ' ' || text_[at] == '\t' || text_[at] == '\n' || text_[at] == '\r'))
      ++at;
    return at;
  }

  // The '"' that opens the string literal ending just before `end`.
  size_t OpeningQuoteBefore(size_t end) const {
    size_t at = end - 1;
    while (at-- > 0) {
      if (text_[at] != '"') continue;
      size_t backslashes = 0;
      while (backslashes < at && text_[at - 1 - backslashes] == '\\')
        ++backslashes;
      if (backslashes % 2 == 0) return at;
    }
    return 0;
  }

  bool Open(bool is_array) {
    resume_ = Offset();
    last_was_number_ = false;
    if (frames_.size() >= static_cast<size_t>(kMaxJsonDepth)) {
      status_ =
          Error(resume_ - 1, Format("arrays and objects nested deeper than {}", kMaxJsonDepth));
      return false;
    }
    frames_.emplace_back().is_array = is_array;
    return true;
  }

  bool Close() {
    resume_ = Offset();
    last_was_number_ = false;
    Frame frame = std::move(frames_.back());
    frames_.pop_back();
    return Add(frame.is_array ? JsonValue::MakeArray(std::move(frame.elements))
                              : JsonValue::MakeObject(std::move(frame.members)));
  }

  bool AddValue(JsonValue&& value) {
    resume_ = Offset();
    last_was_number_ = false;
    return Add(std::move(value));
  }

  // The lexer has read one byte past a number, unless the number ended the input: find where
  // it ends from where it starts (after whitespace and a ',' or ':').
  bool AddNumber(JsonValue&& value) {
    size_t at = SkipWhitespace(resume_);
    if (at < text_.size() && (text_[at] == ',' || text_[at] == ':')) at = SkipWhitespace(at + 1);
    resume_ = NumberEnd(at);
    last_was_number_ = true;
    return Add(std::move(value));
  }

  // The end of the (well-formed) number literal at `at`.
  size_t NumberEnd(size_t at) const {
    auto digits = [&] {
      while (at < text_.size() && IsDigit(text_[at]))
        ++at;
    };
    if (at < text_.size() && text_[at] == '-') ++at;
    if (at < text_.size() && text_[at] == '0') {
      ++at;
    } else {
      digits();
    }
    if (at < text_.size() && text_[at] == '.') {
      ++at;
      digits();
    }
    if (at < text_.size() && (text_[at] == 'e' || text_[at] == 'E')) {
      ++at;
      if (at < text_.size() && (text_[at] == '+' || text_[at] == '-')) ++at;
      digits();
    }
    return at;
  }

  bool Add(JsonValue&& value) {
    if (frames_.empty()) {
      root_ = std::move(value);
      has_root_ = true;
      return true;
    }
    Frame& frame = frames_.back();
    if (frame.is_array) {
      frame.elements.push_back(std::move(value));
    } else {
      frame.members.emplace_back(std::move(frame.key), std::move(value));
    }
    frame.phase = Phase::kAfterValue;
    return true;
  }

  // "source:line:col: what", with the 1-based line and byte column of text_[at].
  Status Error(size_t at, std::string_view what) const {
    size_t line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    return DataLoss(Format("{}:{}:{}: {}", source_name_, line, at - line_start + 1, what));
  }

  // How the byte at `at` reads in an error message.
  std::string Describe(size_t at) const {
    if (at >= text_.size()) return "end of input";
    const unsigned char c = static_cast<unsigned char>(text_[at]);
    if (c >= 0x21 && c < 0x7F) return Format("'{}'", static_cast<char>(c));
    return Format("byte 0x{:02X}", c);
  }

  // The first byte of the UTF-8 sequence that the byte at `bad` broke (`bad` itself when it
  // cannot continue one): where the message points, and the byte it names.
  size_t Utf8Lead(size_t bad, size_t string_start) const {
    for (size_t back = 1; back <= 3 && bad - back > string_start; ++back) {
      const unsigned char c = static_cast<unsigned char>(text_[bad - back]);
      if (c >= 0x80 && c < 0xC0) continue;  // a continuation byte: look further back
      const size_t length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 1;
      return back < length ? bad - back : bad;
    }
    return bad;
  }

  Status Reword(size_t bytes_read, const Json::exception& error) {
    // The token nlohmann failed on starts after where the last event left off, and after the
    // ',' or ':' between them when the lexer read past it.
    size_t at = SkipWhitespace(resume_);
    bool separator = false;
    if (at < text_.size() && (text_[at] == ',' || text_[at] == ':') && bytes_read > at + 1) {
      separator = true;
      at = SkipWhitespace(at + 1);
    }
    // The byte the lexer stopped at (text_.size(): the end of the input).
    const size_t bad = bytes_read > 0 ? bytes_read - 1 : 0;

    // What the grammar wanted at `at`.
    enum class Want { kValue, kEnd, kKeyOrClose, kKey, kColon, kCommaOrBracket, kCommaOrBrace };
    Want want = has_root_ ? Want::kEnd : Want::kValue;
    if (!frames_.empty()) {
      const Frame& frame = frames_.back();
      if (frame.is_array) {
        want = frame.phase == Phase::kStart || separator ? Want::kValue : Want::kCommaOrBracket;
      } else if (frame.phase == Phase::kStart) {
        want = Want::kKeyOrClose;
      } else if (frame.phase == Phase::kAfterKey) {
        want = separator ? Want::kValue : Want::kColon;
      } else {
        want = separator ? Want::kKey : Want::kCommaOrBrace;
      }
    }

    // nlohmann reads "01" as 0 then 1.
    if (last_was_number_ && !separator && at == resume_ && at < text_.size() &&
        IsDigit(text_[at])) {
      return Error(at >= 2 && text_[at - 2] == '-' ? at - 2 : at - 1,
                   "leading zeros are not allowed in numbers");
    }
    if (error.id == 406) {  // out_of_range: "number overflow parsing '1e999'"
      return Error(
          at, Format("number {} is out of double range", text_.substr(at, NumberEnd(at) - at)));
    }

    // A lexer error: "syntax error while parsing value - invalid literal; last read: 'tru'".
    const std::string_view what = error.what();
    const size_t dash = what.find(" - ");
    const size_t last_read = what.find("; last read: '", dash);
    const bool key_here =
        (want == Want::kKey || want == Want::kKeyOrClose) && at < text_.size() && text_[at] == '"';
    if (dash != std::string_view::npos && last_read != std::string_view::npos &&
        at < text_.size() && (want == Want::kValue || key_here)) {
      const std::string_view lexer = what.substr(dash + 3, last_read - dash - 3);
      auto is = [&](std::string_view prefix) { return lexer.substr(0, prefix.size()) == prefix; };
      auto hex4 = [&](size_t escape) { return std::string(text_.substr(escape + 2, 4)); };
      if (is("invalid literal")) {
        for (std::string_view word : {"true", "false", "null"}) {
          if (text_[at] == word[0]) return Error(at, Format("expected '{}'", word));
        }
      } else if (is("invalid number; expected digit after '-'")) {
        return Error(bad, "expected a digit after '-', found " + Describe(bad));
      } else if (is("invalid number; expected digit after '.'")) {
        return Error(bad, "expected a digit after '.', found " + Describe(bad));
      } else if (is("invalid number")) {  // after the exponent or its sign
        return Error(bad, "expected a digit in the exponent, found " + Describe(bad));
      } else if (is("invalid string: missing closing quote") ||
                 (is("invalid string: forbidden character after backslash") &&
                  bad >= text_.size())) {
        return Error(at, "unterminated string");
      } else if (is("invalid string: forbidden character after backslash")) {
        return Error(bad - 1, Format("invalid escape '\\{}' in string (expected one of \\\" \\\\ "
                                     "\\/ \\b \\f \\n \\r \\t \\uXXXX)",
                                     text_[bad]));
      } else if (is("invalid string: '\\u' must be followed by 4 hex digits")) {
        return Error(bad, "expected 4 hex digits after \\u, found " + Describe(bad));
      } else if (is("invalid string: surrogate U+D800..U+DBFF must be followed")) {
        // `bad` is just after the high surrogate's escape, or in what follows it.
        for (size_t escape = bad - 6; escape + 11 >= bad && escape > at; --escape) {
          if (text_.substr(escape, 2) == "\\u" && (text_[escape + 2] | 0x20) == 'd' &&
              std::string_view("89abAB").find(text_[escape + 3]) != std::string_view::npos) {
            return Error(escape + 6, Format("high surrogate \\u{} must be followed by a "
                                            "\\uDC00-\\uDFFF low surrogate",
                                            hex4(escape)));
          }
        }
      } else if (is("invalid string: surrogate U+DC00..U+DFFF must follow")) {
        return Error(bad - 5, "unpaired low surrogate \\u" + hex4(bad - 5));
      } else if (is("invalid string: control character")) {
        return Error(bad, Format("control character 0x{:02X} in string (must be escaped)",
                                 static_cast<unsigned char>(text_[bad])));
      } else if (is("invalid string: ill-formed UTF-8 byte")) {
        const size_t lead = std::min(Utf8Lead(bad, at), text_.size() - 1);
        return Error(lead, Format("invalid UTF-8 byte 0x{:02X} in string",
                                  static_cast<unsigned char>(text_[lead])));
      }
    }

    static constexpr std::string_view kExpected[] = {
        "expected a JSON value",
        "expected end of input after the JSON value",
        "expected '\"' to start an object key or '}'",
        "expected '\"' to start an object key",
        "expected ':' after object key",
        "expected ',' or ']' after array element",
        "expected ',' or '}' after object member",
    };
    return Error(at, Format("{}, found {}", kExpected[static_cast<int>(want)], Describe(at)));
  }

  std::string_view text_;
  std::string_view source_name_;
  const char* cursor_;  // one past the last byte the lexer has read (TrackedIterator)
  size_t resume_ = 0;   // where the bytes after the last event start
  bool last_was_number_ = false;
  std::vector<Frame> frames_;  // the open arrays and objects, innermost last
  JsonValue root_;
  bool has_root_ = false;
  Status status_;
};

void AppendNewline(std::string& out, int indent, int depth) {
  out.push_back('\n');
  out.append(static_cast<size_t>(indent) * static_cast<size_t>(depth), ' ');
}

// Python's repr: the shortest digits that round-trip, in fixed notation for decimal exponents
// in [-4, 16) and scientific otherwise, with ".0" on integral values so they stay doubles.
void AppendDouble(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out.append("null");
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string_view text(buf, static_cast<size_t>(end - buf));  // "-d.ddde+XX"
  size_t e = text.find('e');
  int exponent = 0;
  std::from_chars(text.data() + e + (text[e + 1] == '+' ? 2 : 1), text.data() + text.size(),
                  exponent);
  if (exponent < -4 || exponent >= 16) {
    out.append(text);
    return;
  }
  std::string_view mantissa = text.substr(0, e);
  if (mantissa.front() == '-') {
    out.push_back('-');
    mantissa.remove_prefix(1);
  }
  std::string digits(1, mantissa.front());
  if (mantissa.size() > 2) digits.append(mantissa.substr(2));  // skip the '.'
  if (exponent < 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-exponent - 1), '0');
    out.append(digits);
    return;
  }
  const size_t integer_digits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= integer_digits) {
    out.append(digits);
    out.append(integer_digits - digits.size(), '0');
    out.append(".0");
  } else {
    out.append(digits, 0, integer_digits);
    out.push_back('.');
    out.append(digits, integer_digits);
  }
}

}  // namespace

JsonValue JsonValue::Bool(bool value) {
  JsonValue v;
  v.kind_ = Kind::kBool;
  v.bool_ = value;
  return v;
}

JsonValue JsonValue::Int(int64_t value) {
  JsonValue v;
  v.kind_ = Kind::kNumber;
  v.has_int_ = true;
  v.int_ = value;
  v.double_ = static_cast<double>(value);
  return v;
}

JsonValue JsonValue::Double(double value) {
  JsonValue v;
  v.kind_ = Kind::kNumber;
  v.double_ = value;
  return v;
}

JsonValue JsonValue::String(std::string value) {
  JsonValue v;
  v.kind_ = Kind::kString;
  v.string_ = std::move(value);
  return v;
}

JsonValue JsonValue::MakeArray(Array elements) {
  JsonValue v;
  v.kind_ = Kind::kArray;
  v.array_ = std::move(elements);
  return v;
}

JsonValue JsonValue::MakeObject(Object members) {
  JsonValue v;
  v.kind_ = Kind::kObject;
  v.object_ = std::move(members);
  return v;
}

const char* JsonValue::DescribeKind() const {
  switch (kind_) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return "a bool";
    case Kind::kNumber:
      return has_int_ ? "an integer" : "a non-integer number";
    case Kind::kString:
      return "a string";
    case Kind::kArray:
      return "an array";
    case Kind::kObject:
      return "an object";
  }
  return "unknown";
}

const std::string& JsonValue::as_string() const {
  static const std::string kEmpty;
  return is_string() ? string_ : kEmpty;
}

const JsonValue::Array& JsonValue::as_array() const {
  static const Array kEmpty;
  return is_array() ? array_ : kEmpty;
}

const JsonValue::Object& JsonValue::as_object() const {
  static const Object kEmpty;
  return is_object() ? object_ : kEmpty;
}

size_t JsonValue::size() const {
  if (is_array()) return array_.size();
  if (is_object()) return object_.size();
  return 0;
}

const JsonValue* JsonValue::Find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const Member& member : object_) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

void JsonValue::Set(std::string key, JsonValue value) {
  if (is_null()) kind_ = Kind::kObject;
  for (Member& member : object_) {
    if (member.first == key) {
      member.second = std::move(value);
      return;
    }
  }
  object_.emplace_back(std::move(key), std::move(value));
}

void JsonValue::Append(JsonValue value) {
  if (is_null()) kind_ = Kind::kArray;
  array_.push_back(std::move(value));
}

bool JsonValue::operator==(const JsonValue& other) const {
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kNull:
      return true;
    case Kind::kBool:
      return bool_ == other.bool_;
    case Kind::kNumber:
      if (has_int_ && other.has_int_) return int_ == other.int_;
      return has_int_ == other.has_int_ && double_ == other.double_;
    case Kind::kString:
      return string_ == other.string_;
    case Kind::kArray:
      return array_ == other.array_;
    case Kind::kObject:
      return object_ == other.object_;
  }
  return false;
}

void AppendJsonString(std::string& out, std::string_view text) {
  out.push_back('"');
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out.append(buf);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

void JsonValue::DumpTo(std::string& out, int indent, int depth) const {
  switch (kind_) {
    case Kind::kNull:
      out.append("null");
      return;
    case Kind::kBool:
      out.append(bool_ ? "true" : "false");
      return;
    case Kind::kNumber:
      if (has_int_) {
        out.append(std::to_string(int_));
      } else {
        AppendDouble(out, double_);
      }
      return;
    case Kind::kString:
      AppendJsonString(out, string_);
      return;
    case Kind::kArray:
      out.push_back('[');
      for (size_t i = 0; i < array_.size(); ++i) {
        if (i > 0) out.push_back(',');
        if (indent >= 0) AppendNewline(out, indent, depth + 1);
        array_[i].DumpTo(out, indent, depth + 1);
      }
      if (indent >= 0 && !array_.empty()) AppendNewline(out, indent, depth);
      out.push_back(']');
      return;
    case Kind::kObject:
      out.push_back('{');
      for (size_t i = 0; i < object_.size(); ++i) {
        if (i > 0) out.push_back(',');
        if (indent >= 0) AppendNewline(out, indent, depth + 1);
        AppendJsonString(out, object_[i].first);
        out.append(indent >= 0 ? ": " : ":");
        object_[i].second.DumpTo(out, indent, depth + 1);
      }
      if (indent >= 0 && !object_.empty()) AppendNewline(out, indent, depth);
      out.push_back('}');
      return;
  }
}

std::string JsonValue::Dump(int indent) const {
  std::string out;
  DumpTo(out, indent, 0);
  return out;
}

StatusOr<JsonValue> ParseJson(std::string_view text, std::string_view source_name) {
  return JsonBuilder(text, source_name).Parse();
}

}  // namespace moegraph
