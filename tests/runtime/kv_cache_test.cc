// Paged KV cache bookkeeping, ForwardMeta construction and the phase/chunk rules.
#include "runtime/kv_cache.h"

#include <gtest/gtest.h>

#include "runtime/forward_meta.h"

namespace moegraph {
namespace {

KvCacheConfig Small(int32_t blocks) {
  KvCacheConfig c;
  c.num_layers = 2;
  c.num_kv_heads = 3;
  c.head_dim = 5;
  c.block_size = 4;
  c.num_blocks = blocks;
  return c;
}

TEST(KvCache, ReservesReleasesAndRefusesWithoutChange) {
  StatusOr<KvCache> kv = KvCache::Create(Small(5));
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->bytes(), 2ull * 2 * 5 * 4 * 3 * 5 * sizeof(float));
  ASSERT_TRUE(kv->Reserve(7, 9).ok());  // 3 blocks
  EXPECT_EQ(kv->BlockTable(7), (std::vector<int32_t>{0, 1, 2}));
  ASSERT_TRUE(kv->Reserve(7, 12).ok());  // still 3
  EXPECT_EQ(kv->num_free_blocks(), 2);
  Status refused = kv->Reserve(8, 9);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("needs 3 more blocks"), std::string::npos) << refused.message();
  EXPECT_FALSE(kv->Has(8)) << "a refused reservation leaves no trace";
  EXPECT_EQ(kv->num_free_blocks(), 2);
  kv->Release(7);
  EXPECT_EQ(kv->num_free_blocks(), 5);
  ASSERT_TRUE(kv->Reserve(8, 1).ok());
  EXPECT_EQ(kv->BlockTable(8), (std::vector<int32_t>{0})) << "lowest ids first";
}

TEST(KvCache, BadConfigAndStoragelessMode) {
  EXPECT_FALSE(KvCache::Create(Small(0)).ok());
  KvCacheConfig c = Small(3);
  c.block_size = 0;
  EXPECT_FALSE(KvCache::Create(c).ok());
  c = Small(3);
  c.allocate_storage = false;  // a device backend holds the data
  StatusOr<KvCache> kv = KvCache::Create(c);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->view().k, nullptr);
  EXPECT_EQ(kv->bytes(), 2ull * 2 * 3 * 4 * 3 * 5 * sizeof(float));
  EXPECT_TRUE(kv->Reserve(1, 12).ok());
}

TEST(ForwardMeta, FillsEveryFieldAndPadsTheBucket) {
  StatusOr<KvCache> kv = KvCache::Create(Small(8));
  ASSERT_TRUE(kv.ok());
  ASSERT_TRUE(kv->Reserve(10, 6).ok());  // blocks 0, 1
  ASSERT_TRUE(kv->Reserve(11, 2).ok());  // block 2
  ForwardMetaBuffers meta(/*max_tokens=*/8, /*max_seqs=*/4, /*max_blocks_per_seq=*/3);
  // Sequence 10 continues its prompt at position 4; 11 starts.
  std::vector<SequenceStep> batch = {{10, {7, 8}, 4}, {11, {9, 3}, 0}};
  ASSERT_TRUE(meta.Fill(batch, /*token_capacity=*/6, /*seq_capacity=*/3, *kv).ok());
  const ForwardMetaView& v = meta.view();
  EXPECT_EQ(v.num_tokens, 4);
  EXPECT_EQ(v.num_seqs, 2);
  EXPECT_EQ(std::vector<int32_t>(meta.tokens(), meta.tokens() + 6),
            (std::vector<int32_t>{7, 8, 9, 3, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(v.positions, v.positions + 6),
            (std::vector<int32_t>{4, 5, 0, 1, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(v.batch_id_per_token, v.batch_id_per_token + 6),
            (std::vector<int32_t>{0, 0, 1, 1, -1, -1}));
  // Position 4 of sequence 10 is block 1 offset 0 -> slot 4; block 2 -> slots 8, 9.
  EXPECT_EQ(std::vector<int32_t>(v.slot_mapping, v.slot_mapping + 6),
            (std::vector<int32_t>{4, 5, 8, 9, -1, -1}));
  EXPECT_EQ(std::vector<int32_t>(v.cu_seqlens_q, v.cu_seqlens_q + 4),
            (std::vector<int32_t>{0, 2, 4, 4}));
  EXPECT_EQ(v.seq_lens_encoder[0], 0);
  EXPECT_EQ(v.seq_lens_encoder[1], 2);
  EXPECT_EQ(v.seq_lens_decoder[0], 4);
  EXPECT_EQ(std::vector<int32_t>(v.block_tables, v.block_tables + 6),
            (std::vector<int32_t>{0, 1, -1, 2, -1, -1}));
  // A batch over the bucket, or a sequence without reserved blocks, is refused.
  EXPECT_FALSE(meta.Fill(batch, 3, 3, *kv).ok());
  EXPECT_FALSE(meta.Fill({{12, {1}, 0}}, 6, 3, *kv).ok());
}

TEST(ForwardMeta, PhaseAndChunkRules) {
  EXPECT_EQ(PhaseOf({{1, {5}, 3}, {2, {6}, 9}}), MoePhase::kDecode);
  EXPECT_EQ(PhaseOf({{1, {5}, 3}, {2, {6, 7}, 9}}), MoePhase::kPrefill);
  EXPECT_EQ(PhaseOf({{1, {5}, 0}}), MoePhase::kPrefill) << "a one-token prompt is a prefill";
  EXPECT_EQ(MoeNumChunks(256, 256), 1);
  EXPECT_EQ(MoeNumChunks(257, 256), 2);
  EXPECT_EQ(MoeNumChunks(1, 256), 1);
  EXPECT_EQ(MoeNumChunks(1000, 256), 4);
}

}  // namespace
}  // namespace moegraph
