// The tools' list formats and the escaping of bytes read from files.
#include <gtest/gtest.h>

#include "support/cli.h"
#include "support/strings.h"

namespace moegraph {
namespace {

TEST(ParseIntListTest, ParsesAndRejectsEmptyPiecesAndOutOfRangeValues) {
  StatusOr<std::vector<int32_t>> ok = ParseIntList("1,2,40", "--buckets", {1, 64});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, (std::vector<int32_t>{1, 2, 40}));
  struct Case {
    const char* text;
    const char* expected;
  };
  for (const Case& c : std::vector<Case>{
           {"", "--buckets: expected a comma-separated list of integers, got an empty value"},
           {"1,,2", "--buckets: item 2 of '1,,2' is empty"},
           {"1,2,", "--buckets: item 3 of '1,2,' is empty"},
           {",1", "--buckets: item 1 of ',1' is empty"},
           {"1,65", "--buckets: 65 is outside the range [1, 64]"},
           {"0", "--buckets: 0 is outside the range [1, 64]"},
           {"4294967297", "--buckets: 4294967297 is outside the range [1, 64]"},
           {"99999999999999999999", "--buckets: 99999999999999999999 is outside the range"},
           {"1, 2", "--buckets: ' 2' is not an integer"},
           {"0x10", "--buckets: '0x10' is not an integer"},
       }) {
    StatusOr<std::vector<int32_t>> bad = ParseIntList(c.text, "--buckets", {1, 64});
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_EQ(bad.status().message().rfind(c.expected, 0), 0u) << bad.status().message();
  }
}

TEST(ParsePromptIdsTest, KeepsEveryPromptInOrderAndRejectsEmptyOnes) {
  StatusOr<std::vector<std::vector<int32_t>>> ok = ParsePromptIds("1,2;3;4,5,6", "--prompt-ids");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, (std::vector<std::vector<int32_t>>{{1, 2}, {3}, {4, 5, 6}}));
  struct Case {
    const char* text;
    const char* expected;
  };
  for (const Case& c : std::vector<Case>{
           {"", "--prompt-ids: empty"},
           {"1,2;;3", "--prompt-ids: prompt 2 of 3 is empty"},
           {";", "--prompt-ids: prompt 1 of 2 is empty"},
           {"1;", "--prompt-ids: prompt 2 of 2 is empty"},
           {"1;2,-3", "--prompt-ids: prompt 2 of 2: -3 is outside the range [0, 2147483647]"},
       }) {
    StatusOr<std::vector<std::vector<int32_t>>> bad = ParsePromptIds(c.text, "--prompt-ids");
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(bad.status().message().rfind(c.expected, 0), 0u) << bad.status().message();
  }
}

TEST(EscapeBytesTest, EscapesControlBytesAndInvalidUtf8KeepsValidUtf8) {
  EXPECT_EQ(EscapeBytes("model.layers.0.mlp"), "model.layers.0.mlp");  // no change
  EXPECT_EQ(EscapeBytes(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(EscapeBytes("\x1b[2J\t\n\x7f"), "\\x1b[2J\\x09\\x0a\\x7f");
  EXPECT_EQ(EscapeBytes("back\\slash"), "back\\x5cslash");
  // Valid UTF-8 of 2, 3 and 4 bytes stays.
  EXPECT_EQ(EscapeBytes("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  // Stray continuation, truncated sequence, overlong form, surrogate, > U+10FFFF.
  EXPECT_EQ(EscapeBytes("\x80"), "\\x80");
  EXPECT_EQ(EscapeBytes("\xc3"), "\\xc3");
  EXPECT_EQ(EscapeBytes("\xe2\x82"), "\\xe2\\x82");
  EXPECT_EQ(EscapeBytes("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(EscapeBytes("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(EscapeBytes("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
  EXPECT_EQ(EscapeBytes("\xff\xc3\xa9"), "\\xff\xc3\xa9");
}

}  // namespace
}  // namespace moegraph
