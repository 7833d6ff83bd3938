// Strict JSON parser (recursive descent with a depth limit) and writer.
#include "support/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <system_error>
#include <unordered_set>

namespace moegraph {
namespace {

// Objects at least this large track their keys in a hash set while parsing, so duplicate
// detection stays linear on big headers (a sharded checkpoint's weight_map has ~20k keys).
constexpr size_t kDuplicateSetThreshold = 16;

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

// Length of the well-formed UTF-8 sequence at the start of `s` (which starts with a byte
// >= 0x80), or 0 if it is malformed: overlong, a surrogate, above U+10FFFF, or truncated.
size_t Utf8SequenceLength(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  unsigned char b0 = byte(0);
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
  if (b0 == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (b0 == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (b0 == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xF1 && b0 <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

std::string HexByte(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02X", c);
  return buf;
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view source_name)
      : text_(text), source_name_(source_name) {}

  StatusOr<JsonValue> ParseDocument() {
    JsonValue value;
    SkipWhitespace();
    MG_RETURN_IF_ERROR(ParseValue(value, /*depth=*/0));
    SkipWhitespace();
    if (pos_ != text_.size()) {
      return Error(pos_, "expected end of input after the JSON value, found " + Describe(pos_));
    }
    return value;
  }

 private:
  // "source:line:col: what", with the 1-based line and byte column of text_[at].
  Status Error(size_t at, const std::string& what) const {
    size_t line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    return DataLoss(std::string(source_name_) + ":" + std::to_string(line) + ":" +
                    std::to_string(at - line_start + 1) + ": " + what);
  }

  // How the byte at `at` reads in an error message.
  std::string Describe(size_t at) const {
    if (at >= text_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(text_[at]);
    if (c >= 0x21 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
    return "byte " + HexByte(c);
  }

  void SkipWhitespace() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Status ParseValue(JsonValue& out, int depth) {
    if (pos_ >= text_.size()) return Error(pos_, "expected a JSON value, found end of input");
    switch (text_[pos_]) {
      case '{':
        return ParseObject(out, depth + 1);
      case '[':
        return ParseArray(out, depth + 1);
      case '"': {
        std::string s;
        MG_RETURN_IF_ERROR(ParseString(s));
        out = JsonValue::String(std::move(s));
        return Status::Ok();
      }
      case 't':
        return ParseLiteral("true", JsonValue::Bool(true), out);
      case 'f':
        return ParseLiteral("false", JsonValue::Bool(false), out);
      case 'n':
        return ParseLiteral("null", JsonValue::Null(), out);
      default:
        if (text_[pos_] == '-' || IsDigit(text_[pos_])) return ParseNumber(out);
        return Error(pos_, "expected a JSON value, found " + Describe(pos_));
    }
  }

  Status ParseLiteral(std::string_view word, JsonValue value, JsonValue& out) {
    if (text_.substr(pos_, word.size()) != word) {
      return Error(pos_, "expected '" + std::string(word) + "'");
    }
    pos_ += word.size();
    out = std::move(value);
    return Status::Ok();
  }

  Status CheckDepth(int depth) const {
    if (depth > kMaxJsonDepth) {
      return Error(pos_, "arrays and objects nested deeper than " + std::to_string(kMaxJsonDepth));
    }
    return Status::Ok();
  }

  Status ParseObject(JsonValue& out, int depth) {
    MG_RETURN_IF_ERROR(CheckDepth(depth));
    ++pos_;  // '{'
    JsonValue::Object members;
    std::unordered_set<std::string> keys;  // filled once members reach the threshold
    SkipWhitespace();
    if (Consume('}')) {
      out = JsonValue::MakeObject();
      return Status::Ok();
    }
    while (true) {
      if (pos_ >= text_.size() || text_[pos_] != '"') {
        return Error(pos_, std::string(members.empty() ? "expected '\"' to start an object key or "
                                                         "'}', found "
                                                       : "expected '\"' to start an object key, "
                                                         "found ") +
                               Describe(pos_));
      }
      size_t key_pos = pos_;
      std::string key;
      MG_RETURN_IF_ERROR(ParseString(key));
      bool duplicate = false;
      if (members.size() < kDuplicateSetThreshold) {
        for (const auto& [existing, unused] : members)
          duplicate = duplicate || existing == key;
      } else {
        if (keys.empty()) {
          for (const auto& member : members)
            keys.insert(member.first);
        }
        duplicate = !keys.insert(key).second;
      }
      if (duplicate) return Error(key_pos, "duplicate object key " + QuoteAt(key_pos));
      SkipWhitespace();
      if (!Consume(':')) {
        return Error(pos_, "expected ':' after object key, found " + Describe(pos_));
      }
      SkipWhitespace();
      JsonValue value;
      MG_RETURN_IF_ERROR(ParseValue(value, depth));
      members.emplace_back(std::move(key), std::move(value));
      SkipWhitespace();
      if (Consume('}')) break;
      if (!Consume(',')) {
        return Error(pos_, "expected ',' or '}' after object member, found " + Describe(pos_));
      }
      SkipWhitespace();
    }
    out = JsonValue::MakeObject(std::move(members));
    return Status::Ok();
  }

  // The string literal starting at `at`, re-read for an error message (already validated).
  std::string QuoteAt(size_t at) const {
    size_t end = at + 1;
    while (end < text_.size() && text_[end] != '"')
      end += text_[end] == '\\' ? 2 : 1;
    return std::string(text_.substr(at, end + 1 - at));
  }

  Status ParseArray(JsonValue& out, int depth) {
    MG_RETURN_IF_ERROR(CheckDepth(depth));
    ++pos_;  // '['
    JsonValue::Array elements;
    SkipWhitespace();
    if (Consume(']')) {
      out = JsonValue::MakeArray();
      return Status::Ok();
    }
    while (true) {
      JsonValue element;
      MG_RETURN_IF_ERROR(ParseValue(element, depth));
      elements.push_back(std::move(element));
      SkipWhitespace();
      if (Consume(']')) break;
      if (!Consume(',')) {
        return Error(pos_, "expected ',' or ']' after array element, found " + Describe(pos_));
      }
      SkipWhitespace();
    }
    out = JsonValue::MakeArray(std::move(elements));
    return Status::Ok();
  }

  // Reads 4 hex digits at pos_ (just after "\u").
  Status ParseHex4(uint32_t& out) {
    out = 0;
    for (int i = 0; i < 4; ++i) {
      int digit = pos_ < text_.size() ? HexValue(text_[pos_]) : -1;
      if (digit < 0) {
        return Error(pos_, "expected 4 hex digits after \\u, found " + Describe(pos_));
      }
      out = out * 16 + static_cast<uint32_t>(digit);
      ++pos_;
    }
    return Status::Ok();
  }

  Status ParseString(std::string& out) {
    size_t open = pos_;
    ++pos_;  // '"'
    while (true) {
      size_t run = pos_;
      while (pos_ < text_.size()) {
        unsigned char c = static_cast<unsigned char>(text_[pos_]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++pos_;
      }
      out.append(text_.substr(run, pos_ - run));
      if (pos_ >= text_.size()) return Error(open, "unterminated string");
      unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return Status::Ok();
      }
      if (c < 0x20) {
        return Error(pos_, "control character " + HexByte(c) + " in string (must be escaped)");
      }
      if (c >= 0x80) {
        size_t length = Utf8SequenceLength(text_.substr(pos_));
        if (length == 0) return Error(pos_, "invalid UTF-8 byte " + HexByte(c) + " in string");
        out.append(text_.substr(pos_, length));
        pos_ += length;
        continue;
      }
      // Backslash escape.
      size_t escape = pos_;
      ++pos_;
      if (pos_ >= text_.size()) return Error(open, "unterminated string");
      char e = text_[pos_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          uint32_t unit;
          MG_RETURN_IF_ERROR(ParseHex4(unit));
          if (unit >= 0xDC00 && unit <= 0xDFFF) {
            return Error(escape,
                         "unpaired low surrogate \\u" + std::string(text_.substr(escape + 2, 4)));
          }
          if (unit >= 0xD800 && unit <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") {
              return Error(pos_, "high surrogate \\u" + std::string(text_.substr(escape + 2, 4)) +
                                     " must be followed by a \\uDC00-\\uDFFF low surrogate");
            }
            size_t low_escape = pos_;
            pos_ += 2;
            uint32_t low;
            MG_RETURN_IF_ERROR(ParseHex4(low));
            if (low < 0xDC00 || low > 0xDFFF) {
              return Error(low_escape, "high surrogate \\u" +
                                           std::string(text_.substr(escape + 2, 4)) +
                                           " must be followed by a \\uDC00-\\uDFFF low surrogate");
            }
            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(out, unit);
          break;
        }
        default:
          return Error(escape, "invalid escape '\\" + std::string(1, e) +
                                   "' in string (expected one of \\\" \\\\ \\/ \\b \\f \\n "
                                   "\\r \\t \\uXXXX)");
      }
    }
  }

  Status ParseNumber(JsonValue& out) {
    size_t start = pos_;
    Consume('-');
    if (pos_ >= text_.size() || !IsDigit(text_[pos_])) {
      return Error(pos_, "expected a digit after '-', found " + Describe(pos_));
    }
    if (text_[pos_] == '0') {
      ++pos_;
      if (pos_ < text_.size() && IsDigit(text_[pos_])) {
        return Error(start, "leading zeros are not allowed in numbers");
      }
    } else {
      while (pos_ < text_.size() && IsDigit(text_[pos_]))
        ++pos_;
    }
    bool integer = true;
    if (Consume('.')) {
      integer = false;
      if (pos_ >= text_.size() || !IsDigit(text_[pos_])) {
        return Error(pos_, "expected a digit after '.', found " + Describe(pos_));
      }
      while (pos_ < text_.size() && IsDigit(text_[pos_]))
        ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integer = false;
      ++pos_;
      if (!Consume('+')) Consume('-');
      if (pos_ >= text_.size() || !IsDigit(text_[pos_])) {
        return Error(pos_, "expected a digit in the exponent, found " + Describe(pos_));
      }
      while (pos_ < text_.size() && IsDigit(text_[pos_]))
        ++pos_;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integer) {
      int64_t value = 0;
      auto [ptr, ec] = std::from_chars(first, last, value);
      if (ec == std::errc() && ptr == last) {
        out = JsonValue::Int(value);
        return Status::Ok();
      }
      // Out of int64 range: keep it as a double only.
    }
    double value = 0.0;
    auto [ptr, ec] = std::from_chars(first, last, value);
    if (ec == std::errc::result_out_of_range) {
      // Underflow to zero is harmless; overflow to infinity is not representable in JSON.
      bool overflow = false;
      for (const char* p = first; p < last; ++p) {
        if (*p == 'e' || *p == 'E') overflow = p[1] != '-';
      }
      if (overflow || integer) {
        return Error(start, "number " + std::string(first, last) + " is out of double range");
      }
      value = 0.0;
    } else if (ec != std::errc() || ptr != last) {
      return Error(start, "malformed number " + std::string(first, last));
    }
    out = JsonValue::Double(value);
    return Status::Ok();
  }

  std::string_view text_;
  std::string_view source_name_;
  size_t pos_ = 0;
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
  return Parser(text, source_name).ParseDocument();
}

}  // namespace moegraph
