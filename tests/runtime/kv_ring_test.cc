// Sliding-window KV rings: a ring layer gives the outputs of the full-storage masked
// computation (the reference kernel on a paged cache that keeps every position), decoded
// token by token and prefilled in chunks that cross window boundaries, several sequences at
// once; and it holds a bounded number of bytes per sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "runtime/forward_meta.h"
#include "runtime/kv_cache.h"
#include "tests/testing/tensors.h"

namespace moegraph {
namespace {

constexpr int32_t kWindow = 5, kBlockSize = 4, kHeadDim = 8, kMaxStepTokens = 7;
constexpr int32_t kFullLayer = 0, kSlidingLayer = 1;

struct Heads {
  int64_t num_heads, num_kv_heads;
};

// Layer 0 full, layer 1 sliding (window 5); rings when num_rings > 0.
KvCacheConfig Config(Heads h, int32_t num_rings) {
  KvCacheConfig c;
  const auto nkv = static_cast<int32_t>(h.num_kv_heads);
  c.layers = {{KvLayerKind::kKeyValue, nkv, kHeadDim, 0, DType::kF32},
              {KvLayerKind::kKeyValue, nkv, kHeadDim, kWindow, DType::kF32}};
  c.block_size = kBlockSize;
  c.num_blocks = 64;
  c.num_rings = num_rings;
  c.max_step_tokens = kMaxStepTokens;
  return c;
}

// One sequence's share of a step: its id and how many tokens it feeds.
struct Feed {
  int64_t seq_id;
  int32_t tokens;
};

// Runs attention of `layer` (window as the layer's) over one step's q/k/v rows.
std::vector<float> Attend(KernelFn kernel, const KvCache& kv, const ForwardMetaBuffers& meta,
                          Heads h, int32_t layer, int64_t rows, const std::vector<float>& q,
                          const std::vector<float>& k, const std::vector<float>& v) {
  const int64_t q_cols = h.num_heads * kHeadDim, kv_cols = h.num_kv_heads * kHeadDim;
  std::vector<float> out(static_cast<size_t>(rows * q_cols), std::nanf(""));
  std::vector<TensorArg> in = {testing::HostArg(q.data(), DType::kF32, {rows, q_cols}),
                               testing::HostArg(k.data(), DType::kF32, {rows, kv_cols}),
                               testing::HostArg(v.data(), DType::kF32, {rows, kv_cols})};
  TensorArg out_arg = testing::HostArg(out.data(), DType::kF32, {rows, q_cols});
  KernelArgs args;
  args.meta = &meta.view();
  args.kv = &kv.view();
  args.in = in.data();
  args.num_in = static_cast<int>(in.size());
  args.out = &out_arg;
  args.num_out = 1;
  args.num_threads = 2;
  SetParams(args, AttentionParams{.layer = layer,
                                  .num_heads = h.num_heads,
                                  .num_kv_heads = h.num_kv_heads,
                                  .head_dim = kHeadDim,
                                  .scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim)),
                                  .window = layer == kSlidingLayer ? kWindow : 0});
  kernel(args);
  return out;
}

// Feeds the steps to a ring cache and a full-storage cache and compares, per step and layer:
// the reference and AVX2 kernels on the ring cache against the reference kernel on the full
// cache (the reference bit for bit, AVX2 within rounding), and the AVX2 kernel on both.
void ExpectRingMatchesFullStorage(Heads h, const std::vector<std::vector<Feed>>& steps) {
  StatusOr<KvCache> ring = KvCache::Create(Config(h, /*num_rings=*/3));
  StatusOr<KvCache> full = KvCache::Create(Config(h, /*num_rings=*/0));
  ASSERT_TRUE(ring.ok()) << ring.status().ToString();
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  ASSERT_TRUE(ring->has_rings());
  ASSERT_FALSE(full->has_rings());
  ASSERT_EQ(ring->view().layer(kSlidingLayer)->ring_blocks, 3);  // ceil((5 + 7 - 1) / 4)
  ASSERT_EQ(ring->view().layer(kFullLayer)->ring_blocks, 0);
  ForwardMetaBuffers ring_meta(32, 3, 64), full_meta(32, 3, 64);
  std::map<int64_t, int32_t> cached;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    std::vector<SequenceStep> batch;
    int64_t rows = 0;
    for (const Feed& f : steps[i]) {
      batch.push_back(
          {f.seq_id, std::vector<int32_t>(static_cast<size_t>(f.tokens), 1), cached[f.seq_id]});
      rows += f.tokens;
    }
    for (const SequenceStep& s : batch) {
      const int64_t total = s.num_cached + static_cast<int64_t>(s.tokens.size());
      ASSERT_TRUE(ring->Reserve(s.seq_id, total).ok());
      ASSERT_TRUE(full->Reserve(s.seq_id, total).ok());
    }
    rows += 2;  // padding rows
    ASSERT_TRUE(ring_meta.Fill(batch, static_cast<int32_t>(rows), 3, *ring).ok());
    ASSERT_TRUE(full_meta.Fill(batch, static_cast<int32_t>(rows), 3, *full).ok());
    const auto seed = static_cast<uint32_t>(100 + 3 * i);
    const auto q = testing::RandomFloats(rows * h.num_heads * kHeadDim, seed);
    const auto k = testing::RandomFloats(rows * h.num_kv_heads * kHeadDim, seed + 1);
    const auto v = testing::RandomFloats(rows * h.num_kv_heads * kHeadDim, seed + 2);
    for (int32_t layer : {kFullLayer, kSlidingLayer}) {
      SCOPED_TRACE("layer " + std::to_string(layer));
      const auto want = Attend(RefAttention, *full, full_meta, h, layer, rows, q, k, v);
      // The two ring runs write the same rows; the second rewrites what the first wrote.
      const auto ref = Attend(RefAttention, *ring, ring_meta, h, layer, rows, q, k, v);
      ASSERT_EQ(0, std::memcmp(want.data(), ref.data(), want.size() * sizeof(float)));
      if (!avx2) continue;
      const auto opt = Attend(OptAttention, *ring, ring_meta, h, layer, rows, q, k, v);
      const auto opt_full = Attend(OptAttention, *full, full_meta, h, layer, rows, q, k, v);
      ASSERT_EQ(0, std::memcmp(opt_full.data(), opt.data(), opt.size() * sizeof(float)));
      for (size_t c = 0; c < want.size(); ++c)
        ASSERT_NEAR(want[c], opt[c], 1e-5) << "element " << c;
    }
    for (const Feed& f : steps[i])
      cached[f.seq_id] += f.tokens;
  }
}

TEST(KvRing, DecodeTokenByTokenMatchesFullStorage) {
  // One sequence of 23 positions (> 4 windows), one token per step.
  std::vector<std::vector<Feed>> steps;
  for (int i = 0; i < 23; ++i)
    steps.push_back({{7, 1}});
  for (Heads h : {Heads{3, 3}, Heads{3, 1}})
    ExpectRingMatchesFullStorage(h, steps);
}

TEST(KvRing, ChunkedPrefillAndSeveralSequencesMatchFullStorage) {
  // A: prefill in chunks 7, 3, 6, 5 (crossing windows and blocks), then decode; B joins
  // later with a 4-token prompt and decodes; C decodes from a 1-token prompt. Sequence ids
  // are not ring ids.
  std::vector<std::vector<Feed>> steps = {{{10, 7}, {20, 1}},
                                          {{10, 3}, {20, 1}},
                                          {{10, 6}, {20, 1}, {30, 4}},
                                          {{10, 5}, {20, 1}, {30, 1}}};
  for (int i = 0; i < 6; ++i)
    steps.push_back({{10, 1}, {20, 1}, {30, i % 2 == 0 ? 7 : 1}});
  for (Heads h : {Heads{3, 3}, Heads{3, 1}})
    ExpectRingMatchesFullStorage(h, steps);
}

TEST(KvRing, RingsAreRecycledAndBounded) {
  StatusOr<KvCache> kv = KvCache::Create(Config(Heads{3, 3}, /*num_rings=*/2));
  ASSERT_TRUE(kv.ok());
  ASSERT_TRUE(kv->Reserve(1, 3).ok());
  ASSERT_TRUE(kv->Reserve(2, 3).ok());
  EXPECT_EQ(kv->RingOf(1), 0);
  EXPECT_EQ(kv->RingOf(2), 1);
  const int32_t free_blocks = kv->num_free_blocks();
  // No ring left: refused, nothing changed.
  EXPECT_EQ(kv->Reserve(3, 3).code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(kv->Has(3));
  EXPECT_EQ(kv->num_free_blocks(), free_blocks);
  kv->Release(1);
  EXPECT_EQ(kv->RingOf(1), -1);
  ASSERT_TRUE(kv->Reserve(3, 3).ok());
  EXPECT_EQ(kv->RingOf(3), 0);
  kv->ShrinkTo(3, 0);  // undoing the first Reserve frees the ring too
  EXPECT_EQ(kv->num_free_rings(), 1);
  // A step of more tokens than the rings were sized for is refused.
  ForwardMetaBuffers meta(16, 2, 64);
  ASSERT_TRUE(kv->Reserve(2, 3 + 8).ok());
  const std::vector<SequenceStep> too_long = {{2, std::vector<int32_t>(8, 1), 3}};
  EXPECT_EQ(meta.Fill(too_long, 16, 2, *kv).code(), StatusCode::kFailedPrecondition);

  // Bytes: the ring storage is num_rings rings of 3 blocks, in bytes().
  const uint64_t row_bytes = 2 * 3 * kHeadDim * sizeof(float);  // key and value, 3 KV heads
  EXPECT_EQ(kv->ring_bytes(), 2u * 3 * kBlockSize * row_bytes);
  StatusOr<uint64_t> ring_per_seq = KvCache::RingBytes(kv->config());
  ASSERT_TRUE(ring_per_seq.ok());
  EXPECT_EQ(*ring_per_seq, 3u * kBlockSize * row_bytes);
  StatusOr<uint64_t> block_bytes =
      KvCache::BlockBytes(kv->config().layers, kBlockSize, kMaxStepTokens);
  ASSERT_TRUE(block_bytes.ok());
  EXPECT_EQ(*block_bytes, kBlockSize * row_bytes);  // the full layer only
  // A sequence 4x the window: the full layer holds its 20 positions (5 blocks), the
  // sliding layer its ring (3 blocks, 12 slots) however long the sequence grows.
  for (int64_t tokens : {int64_t{4 * kWindow}, int64_t{40 * kWindow}}) {
    const uint64_t full_bytes = kv->LayerBytesHeld(kFullLayer, tokens);
    const uint64_t sliding_bytes = kv->LayerBytesHeld(kSlidingLayer, tokens);
    std::printf(
        "KV bytes held for a sequence of %lld tokens (window %d, block %d, 3 KV heads "
        "of %d, f32): full layer %llu, sliding layer %llu\n",
        static_cast<long long>(tokens), kWindow, kBlockSize, kHeadDim,
        static_cast<unsigned long long>(full_bytes),
        static_cast<unsigned long long>(sliding_bytes));
    EXPECT_EQ(full_bytes, static_cast<uint64_t>((tokens + kBlockSize - 1) / kBlockSize) *
                              kBlockSize * row_bytes);
    EXPECT_EQ(sliding_bytes, 3u * kBlockSize * row_bytes);
  }
}

}  // namespace
}  // namespace moegraph
