// Paged KV cache bookkeeping, ForwardMeta construction and the phase/chunk rules.
#include "runtime/kv_cache.h"

#include <gtest/gtest.h>

#include "runtime/forward_meta.h"

namespace moegraph {
namespace {

KvCacheConfig Small(int32_t blocks) {
  KvCacheConfig c = KvCacheConfig::Uniform(/*num_layers=*/2, /*num_kv_heads=*/3, /*head_dim=*/5);
  c.block_size = 4;
  c.num_blocks = blocks;
  return c;
}

uint64_t Aligned(uint64_t bytes) {
  return (bytes + KvCache::kArrayAlignment - 1) / KvCache::kArrayAlignment *
         KvCache::kArrayAlignment;
}

TEST(KvCache, ReservesReleasesAndRefusesWithoutChange) {
  StatusOr<KvCache> kv = KvCache::Create(Small(5));
  ASSERT_TRUE(kv.ok());
  // Four arrays (2 layers x K, V) of 5 blocks x 4 tokens x 3 heads x 5 floats,
  // each but the last padded to the array alignment.
  const uint64_t array = 5 * 4 * 3 * 5 * sizeof(float);
  EXPECT_EQ(kv->bytes(), 3 * Aligned(array) + array);
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
  ASSERT_EQ(kv->view().num_layers, 2);
  EXPECT_EQ(kv->view().layers[0].k, nullptr);
  EXPECT_EQ(kv->view().layers[1].v, nullptr);
  const uint64_t array = 3 * 4 * 3 * 5 * sizeof(float);
  EXPECT_EQ(kv->bytes(), 3 * Aligned(array) + array);
  EXPECT_TRUE(kv->Reserve(1, 12).ok());
}

TEST(KvCache, SizesEachLayerFromItsOwnGeometryAndDtype) {
  // Three layers of different heads, head_dim and dtype share one block table.
  KvCacheConfig c;
  c.layers = {{KvLayerKind::kKeyValue, 3, 5, 0, DType::kF32},
              {KvLayerKind::kKeyValue, 1, 7, 0, DType::kBF16},
              {KvLayerKind::kKeyValue, 2, 3, 0, DType::kF16}};
  c.block_size = 4;
  c.num_blocks = 3;
  // Per token: 2 * (15 * 4 + 7 * 2 + 6 * 2) bytes.
  StatusOr<uint64_t> block_bytes = KvCache::BlockBytes(c.layers, c.block_size);
  ASSERT_TRUE(block_bytes.ok()) << block_bytes.status().ToString();
  EXPECT_EQ(*block_bytes, 4u * 2 * (15 * 4 + 7 * 2 + 6 * 2));
  StatusOr<KvCache> kv = KvCache::Create(c);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  const uint64_t slots = 3 * 4;
  const uint64_t a0 = slots * 15 * 4, a1 = slots * 7 * 2, a2 = slots * 6 * 2;
  const uint64_t offsets[6] = {0,
                               Aligned(a0),
                               2 * Aligned(a0),
                               2 * Aligned(a0) + Aligned(a1),
                               2 * Aligned(a0) + 2 * Aligned(a1),
                               2 * Aligned(a0) + 2 * Aligned(a1) + Aligned(a2)};
  for (int l = 0; l < 3; ++l) {
    for (int a = 0; a < 2; ++a)
      EXPECT_EQ(kv->array_offset(l, a), offsets[2 * l + a]) << "layer " << l << " array " << a;
  }
  EXPECT_EQ(kv->bytes(), offsets[5] + a2);
  const KvCacheView& view = kv->view();
  ASSERT_EQ(view.num_layers, 3);
  EXPECT_EQ(view.num_blocks, 3);
  EXPECT_EQ(view.block_size, 4);
  EXPECT_EQ(view.layer(3), nullptr);
  EXPECT_EQ(view.layer(-1), nullptr);
  const auto* base = static_cast<const std::byte*>(view.layers[0].k);
  for (int l = 0; l < 3; ++l) {
    const KvLayerView& layer = *view.layer(l);
    EXPECT_EQ(static_cast<const std::byte*>(layer.k) - base,
              static_cast<ptrdiff_t>(offsets[2 * l]));
    EXPECT_EQ(static_cast<const std::byte*>(layer.v) - base,
              static_cast<ptrdiff_t>(offsets[2 * l + 1]));
    EXPECT_EQ(layer.dtype, c.layers[l].dtype);
    EXPECT_EQ(layer.num_kv_heads, c.layers[l].num_kv_heads);
    EXPECT_EQ(layer.head_dim, c.layers[l].head_dim);
    EXPECT_EQ(layer.slot_stride, c.layers[l].num_kv_heads * c.layers[l].head_dim);
  }
  EXPECT_EQ(kv->DTypeSummary(), "f32+f16+bf16");
  // One block table for every layer: a 9-token sequence takes 3 blocks.
  ASSERT_TRUE(kv->Reserve(1, 9).ok());
  EXPECT_EQ(kv->num_free_blocks(), 0);
  // The same layout at another base (a device copy).
  std::vector<std::byte> other(kv->bytes());
  const std::vector<KvLayerView> moved = kv->LayerViewsAt(other.data());
  EXPECT_EQ(static_cast<std::byte*>(moved[2].v) - other.data(), static_cast<ptrdiff_t>(offsets[5]));
}

TEST(KvCache, RefusesBadLayerEntries) {
  auto with = [](PlanKvLayer layer) {
    KvCacheConfig c;
    c.layers = {{KvLayerKind::kKeyValue, 2, 4, 0, DType::kF32}, layer};
    c.num_blocks = 2;
    return KvCache::Create(c).status();
  };
  Status s = with({KvLayerKind::kKeyValue, 2, 4, 0, DType::kI32});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("KV cache layer 1 (kind 0, 2 KV heads of 4, i32): dtype must be f32, "
                             "f16 or bf16"),
            std::string::npos)
      << s.message();
  s = with({KvLayerKind::kKeyValue, 0, 4, 0, DType::kBF16});
  EXPECT_NE(s.message().find("expected a known kind with positive dims"), std::string::npos)
      << s.message();
  s = with({static_cast<KvLayerKind>(7), 2, 4, 0, DType::kBF16});
  EXPECT_NE(s.message().find("KV cache layer 1 (kind 7"), std::string::npos) << s.message();
  EXPECT_FALSE(KvCache::BlockBytes({{KvLayerKind::kKeyValue, -2, 4, 0, DType::kF32}}, 16).ok());
  KvCacheConfig none;
  none.num_blocks = 2;
  EXPECT_EQ(KvCache::Create(none).status().code(), StatusCode::kInvalidArgument);
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
