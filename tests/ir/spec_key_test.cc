// Specialization keys: the phase/chunk/bucket rules and the key set.
#include "ir/spec_key.h"

#include <gtest/gtest.h>

namespace moegraph {
namespace {

TEST(SpecKey, PrintsAndParses) {
  const SpecKey key{MoePhase::kDecode, 2, 3, 64, 64};
  EXPECT_EQ(key.ToString(), "phase=decode,chunks=2,max_chunks=3,tokens=64,seqs=64");
  StatusOr<SpecKey> parsed = ParseSpecKey(key.ToString());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, key);
  StatusOr<SpecKey> partial = ParseSpecKey("phase=prefill,chunks=4,tokens=512");
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->max_moe_num_chunk, 4);
  EXPECT_FALSE(ParseSpecKey("phase=sideways").ok());
  EXPECT_FALSE(ParseSpecKey("tokens=-1").ok());
  EXPECT_FALSE(ParseSpecKey("tokens").ok());
  EXPECT_FALSE(ParseSpecKey("colour=blue").ok());
}

TEST(SpecKey, ChunkRuleAndBuckets) {
  KeySetOptions o;  // chunk 256, decode 1..64, prefill 16..2048
  SpecKey k = KeyForStep(MoePhase::kPrefill, 300, 2, o);
  EXPECT_EQ(k, (SpecKey{MoePhase::kPrefill, 2, 2, 512, 16}));
  k = KeyForStep(MoePhase::kPrefill, 256, 1, o);
  EXPECT_EQ(k, (SpecKey{MoePhase::kPrefill, 1, 1, 256, 16}));
  k = KeyForStep(MoePhase::kPrefill, 257, 1, o);
  EXPECT_EQ(k.moe_num_chunk, 2);
  k = KeyForStep(MoePhase::kDecode, 5, 5, o);
  EXPECT_EQ(k, (SpecKey{MoePhase::kDecode, 1, 1, 8, 8}));
  k = KeyForStep(MoePhase::kDecode, 65, 65, o);
  EXPECT_EQ(k.token_bucket, 65) << "no bucket fits: the key names what was needed";
  o.expert_parallel = 4;
  k = KeyForStep(MoePhase::kPrefill, 300, 1, o, /*agreed_max_chunks=*/5);
  EXPECT_EQ(k, (SpecKey{MoePhase::kPrefill, 2, 5, 512, 16}))
      << "an expert-parallel rank runs its own chunks and the agreed maximum";
  k = KeyForStep(MoePhase::kPrefill, 0, 0, o, 3);
  EXPECT_EQ(k, (SpecKey{MoePhase::kPrefill, 1, 3, 16, 16})) << "the empty forward";
  k = KeyForStep(MoePhase::kPrefill, 600, 1, o, 1);
  EXPECT_EQ(k.max_moe_num_chunk, 3) << "never below the rank's own count";
}

// With expert-parallel ranks every own chunk count n has a key for each agreed maximum from
// n to the most its phase's largest bucket needs (decode: 1 here).
TEST(SpecKey, ExpertParallelKeysCoverEveryAgreedMaximum) {
  KeySetOptions o;
  o.chunk_size = 8;
  o.max_chunks = 4;
  o.expert_parallel = 2;
  o.prefill_buckets = {8, 24};
  o.decode_buckets = {1, 4};
  o.max_prefill_seqs = 4;
  StatusOr<std::vector<SpecKey>> keys = EnumerateKeys(o);
  ASSERT_TRUE(keys.ok());
  std::vector<std::string> names;
  for (const SpecKey& k : *keys)
    names.push_back(k.ToString());
  EXPECT_EQ(names, (std::vector<std::string>{
                       "phase=prefill,chunks=2,max_chunks=2,tokens=24,seqs=4",
                       "phase=prefill,chunks=2,max_chunks=3,tokens=24,seqs=4",
                       "phase=prefill,chunks=3,max_chunks=3,tokens=24,seqs=4",
                       "phase=prefill,chunks=1,max_chunks=1,tokens=8,seqs=4",
                       "phase=prefill,chunks=1,max_chunks=2,tokens=8,seqs=4",
                       "phase=prefill,chunks=1,max_chunks=3,tokens=8,seqs=4",
                       "phase=decode,chunks=1,max_chunks=1,tokens=4,seqs=4",
                       "phase=decode,chunks=1,max_chunks=1,tokens=1,seqs=1",
                   }));
}

TEST(SpecKey, EnumerationCoversEveryReachableKeyLargestFirst) {
  KeySetOptions o;
  o.chunk_size = 8;
  o.max_chunks = 4;
  o.prefill_buckets = {8, 32};
  o.decode_buckets = {1, 4};
  o.max_prefill_seqs = 4;
  StatusOr<std::vector<SpecKey>> keys = EnumerateKeys(o);
  ASSERT_TRUE(keys.ok());
  std::vector<std::string> names;
  for (const SpecKey& k : *keys)
    names.push_back(k.ToString());
  // Bucket 32 serves 9..32 tokens: 2, 3 or 4 chunks.
  EXPECT_EQ(names, (std::vector<std::string>{
                       "phase=prefill,chunks=2,max_chunks=2,tokens=32,seqs=4",
                       "phase=prefill,chunks=3,max_chunks=3,tokens=32,seqs=4",
                       "phase=prefill,chunks=4,max_chunks=4,tokens=32,seqs=4",
                       "phase=prefill,chunks=1,max_chunks=1,tokens=8,seqs=4",
                       "phase=decode,chunks=1,max_chunks=1,tokens=4,seqs=4",
                       "phase=decode,chunks=1,max_chunks=1,tokens=1,seqs=1",
                   }));
  // With 3 chunks at most, steps of 25..32 tokens would have no key: the
  // bucket is refused instead of dropped.
  o.max_chunks = 3;
  StatusOr<std::vector<SpecKey>> holes = EnumerateKeys(o);
  ASSERT_FALSE(holes.ok());
  EXPECT_NE(holes.status().message().find("prefill token bucket 32 needs up to 4 MoE chunks of 8 "
                                          "rows, but max chunks is 3"),
            std::string::npos)
      << holes.status().message();
  o.max_chunks = 4;
  o.decode_buckets = {4, 4};
  EXPECT_FALSE(EnumerateKeys(o).ok());
  o.decode_buckets = {};
  EXPECT_FALSE(EnumerateKeys(o).ok());
  o.decode = false;
  EXPECT_TRUE(EnumerateKeys(o).ok());
  o.chunk_size = 0;
  EXPECT_FALSE(EnumerateKeys(o).ok());
}

}  // namespace
}  // namespace moegraph
