// Tests for Format (support/format.h) and the string helpers built on it.
#include "support/format.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "support/strings.h"

namespace moegraph {
namespace {

TEST(FormatTest, FormatsStringsIntegersAndBytes) {
  EXPECT_EQ(Format("{}: field \"{}\" is {}, expected at most {}", std::string("config.json"),
                   std::string_view("head_dim"), int64_t{-3}, INT32_MAX),
            "config.json: field \"head_dim\" is -3, expected at most 2147483647");
  EXPECT_EQ(Format("{}", UINT64_MAX), "18446744073709551615");
  // unsigned char is a number to fmt, char a character.
  EXPECT_EQ(Format("0x{:02X} '{}'", static_cast<unsigned char>(0x0A), 'x'), "0x0A 'x'");
  EXPECT_EQ(Format("no arguments"), "no arguments");
}

TEST(FormatTest, ShapeStringListsTheDims) {
  EXPECT_EQ(ShapeString({}), "[]");
  EXPECT_EQ(ShapeString({7}), "[7]");
  EXPECT_EQ(ShapeString({19, 1, -1, INT64_MAX}), "[19, 1, -1, 9223372036854775807]");
}

TEST(FormatTest, FormatBytesPicksTheUnitAndDigits) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes((1ull << 20) - 1), "1024.0 KiB");
  EXPECT_EQ(FormatBytes(3ull << 19), "1.50 MiB");
  EXPECT_EQ(FormatBytes(5ull << 30), "5.00 GiB");
  EXPECT_EQ(FormatBytes(UINT64_MAX), "17179869184.00 GiB");
}

}  // namespace
}  // namespace moegraph
