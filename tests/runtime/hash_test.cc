// XXH64 against the reference implementation's published values, and the
// streaming form against the one-shot one.
#include "support/hash.h"

#include <gtest/gtest.h>

#include <string>

namespace moegraph {
namespace {

TEST(HashTest, MatchesReferenceXxh64) {
  EXPECT_EQ(HashBytes(""), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(HashBytes("abc"), 0x44BC2CF5AD770999ull);
  // Over 32 bytes: the four-lane path.
  EXPECT_EQ(HashBytes("Nobody inspects the spammish repetition"), 0xFBCEA83C8A378BF1ull);
  EXPECT_EQ(FormatHash(0x44BC2CF5AD770999ull), "0x44bc2cf5ad770999");
}

TEST(HashTest, StreamingEqualsOneShotForEverySplit) {
  std::string data(211, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 37 + 11);
  const uint64_t whole = HashBytes(data, /*seed=*/7);
  for (size_t split = 0; split <= data.size(); split += 13) {
    Xxh64 h(7);
    h.Update(data.data(), split);
    h.Update(data.data() + split, data.size() - split);
    EXPECT_EQ(h.Digest(), whole) << split;
  }
  EXPECT_NE(HashBytes(data, 8), whole);
}

}  // namespace
}  // namespace moegraph
