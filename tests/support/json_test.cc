// Tests for the strict JSON parser and writer.
#include "support/json.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace moegraph {
namespace {

JsonValue ParseOrDie(std::string_view text) {
  StatusOr<JsonValue> value = ParseJson(text, "test.json");
  EXPECT_TRUE(value.ok()) << value.status().ToString();
  return value.ok() ? *value : JsonValue();
}

TEST(JsonTest, ParsesScalarsArraysAndObjectsInKeyOrder) {
  JsonValue doc = ParseOrDie(R"( {"z": null, "a": [true, false, -12, 2.5], "m": {"k": "v"}} )");
  ASSERT_TRUE(doc.is_object());
  ASSERT_EQ(doc.size(), 3u);
  EXPECT_EQ(doc.as_object()[0].first, "z");
  EXPECT_EQ(doc.as_object()[1].first, "a");
  EXPECT_EQ(doc.as_object()[2].first, "m");
  EXPECT_TRUE(doc.Find("z")->is_null());
  const JsonValue& a = *doc.Find("a");
  ASSERT_TRUE(a.is_array());
  ASSERT_EQ(a.size(), 4u);
  EXPECT_TRUE(a.as_array()[0].as_bool());
  EXPECT_FALSE(a.as_array()[1].as_bool());
  EXPECT_TRUE(a.as_array()[2].is_int());
  EXPECT_EQ(a.as_array()[2].as_int(), -12);
  EXPECT_FALSE(a.as_array()[3].is_int());
  EXPECT_EQ(a.as_array()[3].as_double(), 2.5);
  EXPECT_EQ(doc.Find("m")->Find("k")->as_string(), "v");
  EXPECT_EQ(doc.Find("missing"), nullptr);
  EXPECT_EQ(a.Find("z"), nullptr);  // not an object
}

TEST(JsonTest, IntegersAreExactAndOutOfRangeIntegersBecomeDoubles) {
  EXPECT_EQ(ParseOrDie("9007199254740993").as_int(), 9007199254740993);  // 2^53 + 1
  EXPECT_EQ(ParseOrDie("-9223372036854775808").as_int(), INT64_MIN);
  EXPECT_EQ(ParseOrDie("9223372036854775807").as_int(), INT64_MAX);
  JsonValue big = ParseOrDie("9223372036854775808");
  EXPECT_TRUE(big.is_number());
  EXPECT_FALSE(big.is_int());
  EXPECT_EQ(big.as_double(), 9223372036854775808.0);
  EXPECT_FALSE(ParseOrDie("1.0").is_int());
  EXPECT_FALSE(ParseOrDie("1e2").is_int());
  EXPECT_EQ(ParseOrDie("1e2").as_double(), 100.0);
  EXPECT_EQ(ParseOrDie("-0.5E-3").as_double(), -0.0005);
  EXPECT_EQ(ParseOrDie("1e-400").as_double(), 0.0);  // underflow is harmless
}

TEST(JsonTest, DecodesEscapesAndUnicode) {
  EXPECT_EQ(ParseOrDie(R"("\"\\\/\b\f\n\r\t")").as_string(), "\"\\/\b\f\n\r\t");
  EXPECT_EQ(ParseOrDie(R"("\u0041\u00e9\u20AC")").as_string(), "A\xC3\xA9\xE2\x82\xAC");
  EXPECT_EQ(ParseOrDie(R"("\ud83d\ude00")").as_string(), "\xF0\x9F\x98\x80");  // U+1F600
  EXPECT_EQ(ParseOrDie(R"("\u0000x")").as_string(), std::string("\0x", 2));
  EXPECT_EQ(ParseOrDie("\"caf\xC3\xA9 \xF0\x9F\x98\x80\"").as_string(),
            "caf\xC3\xA9 \xF0\x9F\x98\x80");  // raw UTF-8 passes through
}

struct ErrorCase {
  std::string text;
  std::string expected;  // the whole message
};

TEST(JsonTest, EachErrorNamesItsLineColumnAndWhatWasExpected) {
  const ErrorCase cases[] = {
      {"", "test.json:1:1: expected a JSON value, found end of input"},
      {"  \n ", "test.json:2:2: expected a JSON value, found end of input"},
      {"{\n  \"a\": 1,\n}", "test.json:3:1: expected '\"' to start an object key, found '}'"},
      {"{1: 2}", "test.json:1:2: expected '\"' to start an object key or '}', found '1'"},
      {"[1 2]", "test.json:1:4: expected ',' or ']' after array element, found '2'"},
      {"[1", "test.json:1:3: expected ',' or ']' after array element, found end of input"},
      {"{\"a\" 1}", "test.json:1:6: expected ':' after object key, found '1'"},
      {"{\"a\":1 \"b\":2}", "test.json:1:8: expected ',' or '}' after object member, found '\"'"},
      {"[1,]", "test.json:1:4: expected a JSON value, found ']'"},
      {"01", "test.json:1:1: leading zeros are not allowed in numbers"},
      {"-", "test.json:1:2: expected a digit after '-', found end of input"},
      {"-x", "test.json:1:2: expected a digit after '-', found 'x'"},
      {"1.", "test.json:1:3: expected a digit after '.', found end of input"},
      {"1e+", "test.json:1:4: expected a digit in the exponent, found end of input"},
      {"1e999", "test.json:1:1: number 1e999 is out of double range"},
      {"tru", "test.json:1:1: expected 'true'"},
      {"nul", "test.json:1:1: expected 'null'"},
      {"NaN", "test.json:1:1: expected a JSON value, found 'N'"},
      {"\"abc", "test.json:1:1: unterminated string"},
      {"\"a\nb\"", "test.json:1:3: control character 0x0A in string (must be escaped)"},
      {"\"\\x\"",
       "test.json:1:2: invalid escape '\\x' in string (expected one of \\\" \\\\ \\/ \\b \\f \\n "
       "\\r \\t \\uXXXX)"},
      {"\"\\u12G4\"", "test.json:1:6: expected 4 hex digits after \\u, found 'G'"},
      {"\"\\ud800\"",
       "test.json:1:8: high surrogate \\ud800 must be followed by a \\uDC00-\\uDFFF low "
       "surrogate"},
      {"\"\\ud800\\u0041\"",
       "test.json:1:8: high surrogate \\ud800 must be followed by a \\uDC00-\\uDFFF low "
       "surrogate"},
      {"\"\\udc00\"", "test.json:1:2: unpaired low surrogate \\udc00"},
      {"\"\xFF\"", "test.json:1:2: invalid UTF-8 byte 0xFF in string"},
      {"\"\xC0\xAF\"", "test.json:1:2: invalid UTF-8 byte 0xC0 in string"},         // overlong '/'
      {"\"\xED\xA0\x80\"", "test.json:1:2: invalid UTF-8 byte 0xED in string"},     // surrogate
      {"\"\xE2\x82\"", "test.json:1:2: invalid UTF-8 byte 0xE2 in string"},         // truncated
      {"\xEF\xBB\xBF{}", "test.json:1:1: expected a JSON value, found byte 0xEF"},  // BOM
      {"{\"a\":1,\"a\":2}", "test.json:1:8: duplicate object key \"a\""},
      {"1 2", "test.json:1:3: expected end of input after the JSON value, found '2'"},
      {"{} x", "test.json:1:4: expected end of input after the JSON value, found 'x'"},
  };
  for (const ErrorCase& c : cases) {
    StatusOr<JsonValue> value = ParseJson(c.text, "test.json");
    ASSERT_FALSE(value.ok()) << "accepted: " << c.text;
    EXPECT_EQ(value.status().code(), StatusCode::kDataLoss) << c.text;
    EXPECT_EQ(value.status().message(), c.expected) << c.text;
  }
}

// The parser underneath (nlohmann-json) reports only how far its lexer read; these pin that the
// adapter still names the token it failed on after numbers (read one byte ahead), after ',' and
// ':', inside keys, and the grammar's expectation in every container phase.
TEST(JsonTest, ErrorsInsideContainersNameTheTokenAndTheExpectation) {
  const ErrorCase cases[] = {
      {"[1,x]", "test.json:1:4: expected a JSON value, found 'x'"},
      {"{\"a\":1 x}", "test.json:1:8: expected ',' or '}' after object member, found 'x'"},
      {"[0 1]", "test.json:1:4: expected ',' or ']' after array element, found '1'"},
      {"{\"a\":01}", "test.json:1:6: leading zeros are not allowed in numbers"},
      {"[-01]", "test.json:1:2: leading zeros are not allowed in numbers"},
      {"[01.5]", "test.json:1:2: leading zeros are not allowed in numbers"},
      {"{\"a\":0,\"b\"1}", "test.json:1:11: expected ':' after object key, found '1'"},
      {"[1.5e3 2]", "test.json:1:8: expected ',' or ']' after array element, found '2'"},
      {"[1,\n 2,\n 3e]", "test.json:3:4: expected a digit in the exponent, found ']'"},
      {"{\"a\":-}", "test.json:1:7: expected a digit after '-', found '}'"},
      {"0.5.1", "test.json:1:4: expected end of input after the JSON value, found '.'"},
      {"{\"k\": [true, fals]}", "test.json:1:14: expected 'false'"},
      {"{\"a\":1,,\"b\":2}", "test.json:1:8: expected '\"' to start an object key, found ','"},
      {"[1}", "test.json:1:3: expected ',' or ']' after array element, found '}'"},
      {"{\"a\":1]", "test.json:1:7: expected ',' or '}' after object member, found ']'"},
      // A bad token where no string or value may start is named, not lexed.
      {"[1 \"a\nb\"]", "test.json:1:4: expected ',' or ']' after array element, found '\"'"},
      {"[1 tru]", "test.json:1:4: expected ',' or ']' after array element, found 't'"},
      {"{\"a\" tru}", "test.json:1:6: expected ':' after object key, found 't'"},
      {"{\"a\" \"b\x01\"}", "test.json:1:6: expected ':' after object key, found '\"'"},
      // Strings: in keys as in values, at the byte at fault.
      {"{\"a\nb\":1}", "test.json:1:4: control character 0x0A in string (must be escaped)"},
      {"{\"a\":\"x\ty\"}", "test.json:1:8: control character 0x09 in string (must be escaped)"},
      {"\"ab\\", "test.json:1:1: unterminated string"},
      {"\"\\u00e9", "test.json:1:1: unterminated string"},
      {"\"\\ud800\\n\"",
       "test.json:1:8: high surrogate \\ud800 must be followed by a \\uDC00-\\uDFFF low "
       "surrogate"},
      {"\"\\ud800",
       "test.json:1:8: high surrogate \\ud800 must be followed by a \\uDC00-\\uDFFF low "
       "surrogate"},
      {"\"\\ud800\\ud800\"",
       "test.json:1:8: high surrogate \\ud800 must be followed by a \\uDC00-\\uDFFF low "
       "surrogate"},
      {"\"\xC3\xA9\x80\"", "test.json:1:4: invalid UTF-8 byte 0x80 in string"},  // stray
      {"\"\xE2\x41\"", "test.json:1:2: invalid UTF-8 byte 0xE2 in string"},      // cut short
      // Duplicate keys: the raw literal, on its line.
      {"{\"a\\\"b\":1,\"a\\\"b\":2}", "test.json:1:11: duplicate object key \"a\\\"b\""},
      {"{\n \"x\": 1,\n \"x\": 2}", "test.json:3:2: duplicate object key \"x\""},
      {"{\"\\ud83d\\ude00\": 1, \"\\ud83d\\ude00\": 2}",
       "test.json:1:21: duplicate object key \"\\ud83d\\ude00\""},
  };
  for (const ErrorCase& c : cases) {
    StatusOr<JsonValue> value = ParseJson(c.text, "test.json");
    ASSERT_FALSE(value.ok()) << "accepted: " << c.text;
    EXPECT_EQ(value.status().code(), StatusCode::kDataLoss) << c.text;
    EXPECT_EQ(value.status().message(), c.expected) << c.text;
  }
}

TEST(JsonTest, UnsignedIntegersBeyondInt64AreDoubles) {
  // nlohmann reads these as uint64; JsonValue keeps integers to int64 (safetensors offsets are
  // file positions, far below 2^63).
  JsonValue max_u64 = ParseOrDie("18446744073709551615");
  EXPECT_FALSE(max_u64.is_int());
  EXPECT_EQ(max_u64.as_double(), 18446744073709551615.0);
  JsonValue below_min = ParseOrDie("-9223372036854775809");
  EXPECT_FALSE(below_min.is_int());
  EXPECT_EQ(below_min.as_double(), -9223372036854775808.0);
  EXPECT_EQ(ParseOrDie("[0, -0]").Dump(), "[0,0]");
  EXPECT_TRUE(ParseOrDie("-0").is_int());
}

TEST(JsonTest, DuplicateKeysAreFoundInLargeObjects) {
  std::string text = "{";
  for (int i = 0; i < 40; ++i)
    text += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ",";
  text += "\"k7\": 0}";
  StatusOr<JsonValue> value = ParseJson(text, "big.json");
  ASSERT_FALSE(value.ok());
  EXPECT_NE(value.status().message().find("duplicate object key \"k7\""), std::string::npos)
      << value.status().message();

  text.replace(text.rfind("k7"), 2, "k40");
  EXPECT_TRUE(ParseJson(text, "big.json").ok());
}

TEST(JsonTest, NestingIsLimited) {
  auto nested = [](int depth) {
    return std::string(static_cast<size_t>(depth), '[') +
           std::string(static_cast<size_t>(depth), ']');
  };
  EXPECT_TRUE(ParseJson(nested(kMaxJsonDepth), "deep.json").ok());
  StatusOr<JsonValue> too_deep = ParseJson(nested(kMaxJsonDepth + 1), "deep.json");
  ASSERT_FALSE(too_deep.ok());
  EXPECT_EQ(too_deep.status().message(),
            "deep.json:1:257: arrays and objects nested deeper than 256");

  // Hostile input: far deeper than any stack could recurse, and objects too.
  EXPECT_FALSE(ParseJson(std::string(1000000, '['), "hostile.json").ok());
  std::string objects;
  for (int i = 0; i < 100000; ++i)
    objects += "{\"a\":";
  StatusOr<JsonValue> hostile = ParseJson(objects, "hostile.json");
  ASSERT_FALSE(hostile.ok());
  EXPECT_EQ(hostile.status().message(),
            "hostile.json:1:1281: arrays and objects nested deeper than 256");  // 5 * 256 + 1
}

TEST(JsonTest, EveryTruncationIsAnErrorNotACrash) {
  const std::string text = R"({"a": [1, -2.5e3, "x\u00e9\ud83d\ude00", {"b": null}], "c": true})";
  ASSERT_TRUE(ParseJson(text, "t").ok());
  for (size_t length = 0; length < text.size(); ++length) {
    EXPECT_FALSE(ParseJson(text.substr(0, length), "t").ok()) << length;
  }
}

TEST(JsonTest, DumpsCompactAndIndented) {
  JsonValue doc =
      ParseOrDie(R"({"b": [1, -2.5, "x\"y\n", null, true], "a": {}, "c": [], "d": {"e": 0}})");
  EXPECT_EQ(doc.Dump(), R"({"b":[1,-2.5,"x\"y\n",null,true],"a":{},"c":[],"d":{"e":0}})");
  EXPECT_EQ(doc.Dump(2),
            "{\n"
            "  \"b\": [\n"
            "    1,\n"
            "    -2.5,\n"
            "    \"x\\\"y\\n\",\n"
            "    null,\n"
            "    true\n"
            "  ],\n"
            "  \"a\": {},\n"
            "  \"c\": [],\n"
            "  \"d\": {\n"
            "    \"e\": 0\n"
            "  }\n"
            "}");
}

TEST(JsonTest, DumpsNumbersExactly) {
  EXPECT_EQ(JsonValue::Int(INT64_MIN).Dump(), "-9223372036854775808");
  EXPECT_EQ(JsonValue::Int(9007199254740993).Dump(), "9007199254740993");
  EXPECT_EQ(JsonValue::Double(1e6).Dump(), "1000000.0");  // stays a double on re-parse
  EXPECT_EQ(JsonValue::Double(-0.0).Dump(), "-0.0");
  EXPECT_EQ(JsonValue::Double(1e-6).Dump(), "1e-06");
  EXPECT_EQ(JsonValue::Double(0.1).Dump(), "0.1");
  // Python's repr: fixed notation for exponents in [-4, 16), scientific outside.
  EXPECT_EQ(JsonValue::Double(0.0).Dump(), "0.0");
  EXPECT_EQ(JsonValue::Double(0.0001).Dump(), "0.0001");
  EXPECT_EQ(JsonValue::Double(1.5e-5).Dump(), "1.5e-05");
  EXPECT_EQ(JsonValue::Double(-123456789.125).Dump(), "-123456789.125");
  EXPECT_EQ(JsonValue::Double(1e15).Dump(), "1000000000000000.0");
  EXPECT_EQ(JsonValue::Double(1e16).Dump(), "1e+16");
  EXPECT_EQ(JsonValue::Double(2.5e-300).Dump(), "2.5e-300");
  EXPECT_EQ(JsonValue::Double(1.0 / 0.0).Dump(), "null");
  for (double x : {0.1, 1.0 / 3.0, 1e-6, 2.5e-300, 5e-324, 1.7976931348623157e308, 123456789.125,
                   -6.02214076e23, 1e21}) {
    std::string text = JsonValue::Double(x).Dump();
    JsonValue back = ParseOrDie(text);
    EXPECT_FALSE(back.is_int()) << text;
    uint64_t bits_in, bits_out;
    double out = back.as_double();
    std::memcpy(&bits_in, &x, 8);
    std::memcpy(&bits_out, &out, 8);
    EXPECT_EQ(bits_in, bits_out) << text;
  }
}

TEST(JsonTest, DumpEscapesControlCharactersAndKeepsUtf8) {
  JsonValue s = JsonValue::String(std::string("a\x01\x1F\t\\\"\xC3\xA9", 8));
  EXPECT_EQ(s.Dump(), "\"a\\u0001\\u001f\\t\\\\\\\"\xC3\xA9\"");
  EXPECT_EQ(ParseOrDie(s.Dump()), s);
}

TEST(JsonTest, RoundTripsThroughDump) {
  const char* text = R"({
    "name": "Qwen3 \u00e9\ud83d\ude00", "ints": [0, -1, 9007199254740993, 151936],
    "floats": [1e-06, 1000000.0, 0.001, -2.5], "nested": {"deep": [[[{}]]], "n": null},
    "flags": [true, false], "empty": ""})";
  JsonValue doc = ParseOrDie(text);
  EXPECT_EQ(ParseOrDie(doc.Dump()), doc);
  EXPECT_EQ(ParseOrDie(doc.Dump(4)), doc);
  EXPECT_EQ(ParseOrDie(doc.Dump()).Dump(), doc.Dump());
  EXPECT_FALSE(ParseOrDie(R"({"a": 1})") == ParseOrDie(R"({"a": 1.0})"));
  EXPECT_FALSE(ParseOrDie(R"({"a": 1, "b": 2})") == ParseOrDie(R"({"b": 2, "a": 1})"));
}

TEST(JsonTest, BuildersSetAndAppend) {
  JsonValue doc;
  doc.Set("x", JsonValue::Int(1));
  doc.Set("y", JsonValue::String("s"));
  doc.Set("x", JsonValue::Bool(false));  // replaces in place
  JsonValue list;
  list.Append(JsonValue::Double(0.5));
  list.Append(JsonValue::Null());
  doc.Set("list", std::move(list));
  EXPECT_EQ(doc.Dump(), R"({"x":false,"y":"s","list":[0.5,null]})");
}

TEST(JsonTest, AccessorsOnTheWrongKindReturnZeroValues) {
  JsonValue s = JsonValue::String("x");
  EXPECT_EQ(s.as_int(), 0);
  EXPECT_EQ(s.as_double(), 0.0);
  EXPECT_FALSE(s.as_bool());
  EXPECT_TRUE(s.as_array().empty());
  EXPECT_TRUE(s.as_object().empty());
  EXPECT_EQ(JsonValue::Int(3).as_string(), "");
  EXPECT_EQ(s.size(), 0u);
}

}  // namespace
}  // namespace moegraph
