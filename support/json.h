// A small, strict JSON (RFC 8259) value, parser (nlohmann-json underneath) and writer for
// configs and file headers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/status.h"

namespace moegraph {

// One JSON value. Objects keep their members in document order; the parser rejects duplicate
// keys, so a key names at most one member. Numbers are kept as a double, and also as an exact
// int64 when the literal was an integer that fits (`is_int()`), so 2^53 + 1 survives.
//
// The typed accessors (`as_bool()`, `as_int()`, ...) require the matching kind; check with the
// `is_*()` predicates first. On a mismatch they return a zero value rather than crash.
class JsonValue {
 public:
  enum class Kind : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<JsonValue>;
  using Member = std::pair<std::string, JsonValue>;
  using Object = std::vector<Member>;

  JsonValue() = default;  // null
  static JsonValue Null() { return JsonValue(); }
  static JsonValue Bool(bool value);
  static JsonValue Int(int64_t value);
  static JsonValue Double(double value);
  static JsonValue String(std::string value);
  static JsonValue MakeArray(Array elements = {});
  static JsonValue MakeObject(Object members = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  // A number whose literal was an integer in int64 range (or made with `Int`).
  bool is_int() const { return kind_ == Kind::kNumber && has_int_; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  // For error messages: "null", "a bool", "an integer", "a non-integer number", "a string",
  // "an array" or "an object".
  const char* DescribeKind() const;

  bool as_bool() const { return is_bool() && bool_; }
  int64_t as_int() const { return is_int() ? int_ : 0; }
  double as_double() const { return is_number() ? double_ : 0.0; }
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Number of array elements or object members; 0 for scalars.
  size_t size() const;
  // The member named `key` of an object, or nullptr (also when this is not an object).
  // Linear in the number of members: iterate `as_object()` to visit large objects.
  const JsonValue* Find(std::string_view key) const;

  // Builders. `Set` replaces an existing member or appends a new one; this becomes an object
  // (or array) first if it was null.
  void Set(std::string key, JsonValue value);
  void Append(JsonValue value);

  // Serializes. indent < 0: compact, one line. indent >= 0: one member or element per line,
  // nested `indent` spaces deeper. Integers print exactly; doubles print as Python's repr does
  // (the shortest digits that parse back to the same bits, "1000000.0", "1e-06"), so integral
  // doubles keep their ".0" and stay doubles. Non-finite doubles, which JSON cannot hold, print
  // as null.
  std::string Dump(int indent = -1) const;

  bool operator==(const JsonValue& other) const;

 private:
  void DumpTo(std::string& out, int indent, int depth) const;

  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  bool has_int_ = false;
  int64_t int_ = 0;
  double double_ = 0.0;
  std::string string_;
  Array array_;
  Object object_;
};

// The deepest nesting of arrays and objects `ParseJson` accepts; deeper input is rejected
// (rather than overflowing the stack on hostile input).
inline constexpr int kMaxJsonDepth = 256;

// Parses exactly one JSON value (surrounded by optional whitespace) from `text`, which must be
// UTF-8. Errors are DataLoss with "source_name:line:col: what was expected" (1-based line and
// byte column). Rejects duplicate object keys, lone surrogates, control characters in strings,
// invalid UTF-8, leading zeros, NaN/Infinity, trailing commas and trailing content.
StatusOr<JsonValue> ParseJson(std::string_view text, std::string_view source_name);

// Appends `text` as a quoted JSON string literal (escaping quotes, backslashes and controls).
void AppendJsonString(std::string& out, std::string_view text);

}  // namespace moegraph
