// CUDA mixture-of-experts kernels: softmax top-k routing, the prefill path
// (align → permute → grouped GEMMs → unpermute-reduce) and the decode path
// (expert batch → expert-batched GEMMs → combine). Routing counts and offsets
// stay on the device; every buffer has its static worst-case size, so the
// whole path is capturable. All kernels are deterministic (no floating-point
// atomics; sums run in a fixed order). Semantics: kernels/cpu/reference_kernels.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ir/dtype.h"
#include "kernels/kernel_abi.h"

namespace moegraph::cuda {

// A route's rule (TopkRouteParams, ir/op_params.h) as the routing kernel
// takes it; `bias` is the optional score-correction bias [num_experts] (null:
// none).
struct RouteRule {
  int top_k = 0;
  bool norm_topk_prob = false;
  bool sigmoid = false;  // RouteScoring::kSigmoid
  int num_groups = 1;    // divides num_experts, <= kMaxRouteGroups
  int kept_groups = 1;   // <= num_groups
  float routed_scaling_factor = 1.0f;
  float norm_min = 0.0f;
  const float* bias = nullptr;
};

// The rule of `params` with the optional bias.
RouteRule MakeRouteRule(const TopkRouteParams& params, const float* bias);

// ids / weights [num_rows, top_k] from logits [num_rows, num_experts]. Row t is
// padding (ids -1, weights 0) at or past min(row_limit, num_tokens - row_offset).
cudaError_t LaunchTopkRoute(const float* logits, int64_t num_experts, const RouteRule& rule,
                            int32_t* ids, float* weights, int64_t num_rows, int64_t row_offset,
                            int64_t row_limit, const ForwardMetaView* meta, cudaStream_t stream);

// Counting sort of the num_pairs (token, expert) pairs by expert: sorted_pairs
// [num_sorted] (ascending pair id within an expert, then -1) and expert_offsets
// [num_offsets >= num_experts + 1].
cudaError_t LaunchMoeAlign(const int32_t* ids, int64_t num_pairs, int32_t* sorted_pairs,
                           int64_t num_sorted, int32_t* expert_offsets, int64_t num_offsets,
                           int64_t num_experts, cudaStream_t stream);

// out [num_rows, hidden]: row i = x[sorted_pairs[i] / top_k] (x has num_tokens
// rows), zeros for -1 or out-of-range pairs.
cudaError_t LaunchMoePermute(const float* x, int64_t num_tokens, const int32_t* sorted_pairs,
                             int64_t num_pairs, int top_k, float* out, int64_t num_rows,
                             int64_t hidden, cudaStream_t stream);

// How the rows of a grouped GEMM are grouped: by expert_offsets ranges
// (prefill, grouped_matmul*), by the decode layout's slots
// (expert_batched_*), or one dense group (the fallback for linear when
// cuBLASLt has no algorithm).
enum class GroupMode : int { kOffsets = 0, kSlots = 1, kDense = 2 };

// out [out_rows, n] (zeroed first) = per group, x rows times that group's expert
// weight (stacked [num_experts, n, k]: w_gate[e] is expert e's [n, k] slice, a
// device array of device pointers), or silu(x wg^T) * (x wu^T) with w_up.
//  - kOffsets: group e covers rows [offsets[e], offsets[e + 1]) when the range
//    is accepted (RefGroupedMatmul's rule, over `valid_rows` rows); in and out
//    row are the same.
//  - kSlots: group s is expert batch_experts[s]; entry c of slot s is pair
//    p = batch_pairs[s * pairs_per_slot + c]; valid when 0 <= p < out_limit
//    and p / in_div < x_rows; input row p / in_div, output row p.
//  - kDense: one group, weights dense_gate / dense_up ([n, k] each), rows
//    [0, min(valid_rows, meta->num_tokens)); the other rows stay zero.
// Simple shared-memory tiled FMA kernel: f32 activations times widened
// weights with f32 accumulation, as the reference (no tensor cores).
struct GroupedGemmArgs {
  GroupMode mode = GroupMode::kOffsets;
  const float* x = nullptr;
  int64_t x_rows = 0;
  int64_t k = 0;
  const void* const* w_gate = nullptr;
  const void* const* w_up = nullptr;  // null: plain grouped GEMM
  DType w_dtype = DType::kF32;
  DType w_up_dtype = DType::kF32;
  int64_t num_experts = 0;
  float* out = nullptr;
  int64_t out_rows = 0;
  int64_t n = 0;
  // kOffsets (and kDense: valid_rows)
  const int32_t* expert_offsets = nullptr;
  int64_t valid_rows = 0;
  // kDense
  const void* dense_gate = nullptr;
  const void* dense_up = nullptr;  // null: plain GEMM
  const ForwardMetaView* meta = nullptr;
  // kSlots
  const int32_t* batch_experts = nullptr;
  const int32_t* batch_pairs = nullptr;
  int64_t num_slots = 0;
  int64_t pairs_per_slot = 0;
  int64_t in_div = 1;
  int64_t out_limit = 0;
  // Block-scaled fp8 weights (w_dtype kFp8E4M3) and mxfp4 weights (kMxfp4: packed [n, k / 2]
  // bytes, u8 e8m0 scales in 1 x 32 blocks): each weight element is multiplied by its
  // block's scale before the product, as the reference (direct dequantization in the
  // tile load: cuBLASLt has no block-scaled e4m3 / fp4 GEMM with f32 activations). Per-expert
  // scale matrices [ceil(n / block_rows), scale_cols] (device pointer arrays; f32 for fp8,
  // u8 for mxfp4), or the dense ones.
  const void* const* w_gate_scales = nullptr;
  const void* const* w_up_scales = nullptr;
  const void* dense_gate_scales = nullptr;
  const void* dense_up_scales = nullptr;
  int64_t block_rows = 0, block_cols = 0, scale_cols = 0;
  // The optional expert bias [num_experts, n] (f32/bf16/f16) added to each output of group
  // expert e (plain GEMM only; null: none): grouped_matmul's and expert_batched_matmul's.
  const void* bias = nullptr;
  DType bias_dtype = DType::kF32;
};
cudaError_t LaunchGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);

// GPT-OSS's experts in transformers' [in, out] layout: out [out_rows, n] (zeroed first) = per
// group, x rows times that group's expert weight w[e] ([k, n], row-major), plus bias[e]
// ([num_experts, n], null: none). kOffsets and kSlots group rows as GroupedGemmArgs do
// (kDense is not used). One thread per output element, k in order (the reference's sum).
struct KnGemmArgs {
  GroupMode mode = GroupMode::kOffsets;
  const float* x = nullptr;
  int64_t x_rows = 0;
  int64_t k = 0;
  const void* const* w = nullptr;
  DType w_dtype = DType::kF32;
  const void* bias = nullptr;
  DType bias_dtype = DType::kF32;
  int64_t num_experts = 0;
  float* out = nullptr;
  int64_t out_rows = 0;
  int64_t n = 0;
  const int32_t* expert_offsets = nullptr;  // kOffsets, over valid_rows rows
  int64_t valid_rows = 0;
  const int32_t* batch_experts = nullptr;  // kSlots
  const int32_t* batch_pairs = nullptr;
  int64_t num_slots = 0;
  int64_t pairs_per_slot = 0;
  int64_t in_div = 1;
  int64_t out_limit = 0;
};
cudaError_t LaunchGroupedGemmKn(const KnGemmArgs& args, cudaStream_t stream);

// out [num_rows, inter] from interleaved (gate, up) pairs x [num_rows, 2 inter]:
// ClampedSwigluParams' rule (ir/op_params.h).
cudaError_t LaunchClampedSwiglu(const float* x, float* out, int64_t num_rows, int64_t inter,
                                float alpha, float limit, cudaStream_t stream);

// out [num_tokens, hidden] = 0, then for i ascending with p = sorted_pairs[i]
// valid (0 <= p < num_weights, p / top_k < num_tokens): out[p / top_k] +=
// route_weights[p] * y[i]. One block per token scans the pair list in order,
// so each sum runs in the reference's order.
cudaError_t LaunchMoeUnpermuteReduce(const float* y, const int32_t* sorted_pairs, int64_t num_pairs,
                                     const float* route_weights, int64_t num_weights, int top_k,
                                     float* out, int64_t num_tokens, int64_t hidden,
                                     cudaStream_t stream);

// Decode layout: batch_experts [num_slots] = the distinct valid experts
// ascending then -1; batch_pairs [pair_rows, pairs_per_slot] = each slot's
// pairs ascending then -1. One block; needs num_experts <= 65536.
cudaError_t LaunchMoeExpertBatch(const int32_t* ids, int64_t num_pairs, int32_t* batch_experts,
                                 int64_t num_slots, int32_t* batch_pairs, int64_t pair_rows,
                                 int64_t pairs_per_slot, int64_t num_experts, cudaStream_t stream);

// out [num_rows, hidden]: real row t = sum_j route_weights[t, j] * y[t * top_k + j]
// (terms with t * top_k + j >= num_y_rows skipped).
cudaError_t LaunchMoeCombine(const float* y, int64_t num_y_rows, const float* route_weights,
                             int64_t top_k, float* out, int64_t num_rows, int64_t hidden,
                             int64_t row_limit, const ForwardMetaView* meta, cudaStream_t stream);

}  // namespace moegraph::cuda
