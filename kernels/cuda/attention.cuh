// CUDA attention kernels: rotary embedding, the paged KV-cache write and
// causal paged attention (prefill and decode alike: every token attends to
// cache positions 0..positions[t] of its sequence). Sequence lengths,
// positions, block tables and slot mapping are read from the device
// ForwardMeta, so one captured graph serves any batch of its bucket.
// Semantics: RefRope / RefAttention / RefMlaAttention in kernels/cpu/reference_kernels.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/kernel_abi.h"

namespace moegraph::cuda {

// RopeParams' frequency scaling (ir/rope_freq.h), passed by value to the kernel.
struct RopeScalingArgs {
  int64_t scaling = 0;
  double factor = 1, ramp_low = 0, ramp_high = 0;
  float attention_factor = 1;
};

// y [num_rows, row_size] = RoPE of x at meta->positions over the first rotary_dim
// values of each head (NeoX rotate-half, or GPT-J pairs when interleaved), the
// rest copied. `row_limit` is 0 when the host-side shape check failed; a null
// meta zeroes y.
cudaError_t LaunchRope(const float* x, float* y, int64_t num_rows, int64_t row_size,
                       int64_t head_dim, int64_t rotary_dim, bool interleaved, float theta,
                       const RopeScalingArgs& scaling, int64_t row_limit,
                       const ForwardMetaView* meta, cudaStream_t stream);

// One layer's slice of the paged cache: [num_blocks * block_size, num_kv_heads,
// head_dim] keys and values of `dtype` (kF32, kF16 or kBF16), read as f32 and
// written rounded to nearest even.
struct KvLayer {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::kF32;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t ring_blocks = 0;  // KvLayerView::ring_blocks: > 0 for a ring (sliding) layer
  int32_t num_rings = 0;    // KvCacheView::num_rings
};

// Writes k/v [num_rows, num_kv_heads * head_dim] of every real token with a
// valid slot_mapping into the layer's cache.
cudaError_t LaunchKvCacheWrite(const float* k, const float* v, int64_t num_rows, int64_t kv_row,
                               KvLayer layer, int64_t row_limit, const ForwardMetaView* meta,
                               cudaStream_t stream);

// out [num_rows, num_heads * head_dim]: softmax(scale * q.k) v over the cache,
// causal per sequence, GQA (head h reads kv head h / (num_heads / num_kv_heads)).
// Tokens past the real count or with an invalid sequence/block get zeros.
// `sinks` (null: none) holds one logit per head of `sinks_dtype` (f32, bf16 or
// f16) that joins each softmax's max and denominator. window > 0: a token at
// position p reads positions (p - window, p] only.
cudaError_t LaunchPagedAttention(const float* q, KvLayer layer, const void* sinks,
                                 DType sinks_dtype, float* out, int64_t num_rows, int num_heads,
                                 int num_kv_heads, int head_dim, float scale, int64_t window,
                                 int64_t row_limit, const ForwardMetaView* meta,
                                 cudaStream_t stream);

// Multi-head latent attention (RefMlaAttention): writes [latent, k_pe] rows
// (kv_lora_rank + qk_rope_head_dim) of every real token with a valid slot into
// the latent layer `layer.k` (layer.v unused), then per (token, head) the
// absorbed attention: q_lat = q_nope @ kv_b's key rows, scores over the cache,
// out = kv_b's value rows @ (sum p * latent). kv_b [num_heads * (nope + v_dim),
// rank] of `kv_b_dtype` (f32/bf16/f16, or block-scaled fp8e4m3: each element decoded
// and multiplied by its block's f32 scale from `kv_b_scales`, as the reference).
struct MlaShape {
  int num_heads = 0;
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  float scale = 0;
};
// kv_b's block scales (fp8e4m3 only): [ceil(rows / block_rows), scale_cols] f32.
struct MlaWeightScales {
  const float* scales = nullptr;
  int64_t block_rows = 0, block_cols = 0, scale_cols = 0;
};
cudaError_t LaunchMlaAttention(const float* q_nope, const float* q_pe, const float* latent,
                               const float* k_pe, const void* kv_b, DType kv_b_dtype,
                               MlaWeightScales kv_b_scales, KvLayer layer, float* out,
                               int64_t num_rows, MlaShape shape, int64_t row_limit,
                               const ForwardMetaView* meta, cudaStream_t stream);

}  // namespace moegraph::cuda
