// Reference CPU kernels: the semantics every optimised kernel and the IR's eager
// interpreter are checked against. Correct and clear first; fp32 accumulation.
//
// Conventions shared by every kernel below:
//  - Activations are f32. Weights are f32, bf16 or f16 and widened to f32; the matmul
//    weights may also be quantized (block-scaled fp8, mxfp4, int8, int4: ir/quant.h), each
//    element dequantized to f32 before its product (ref_detail::WeightMatrix::Dot); int8 and
//    int4 weights with blocks of a multiple of 32 multiply by the input rounded to int8 in
//    blocks of 32 instead (RoundsInputToInt8, WeightMatrix::MatmulDot).
//  - A "stacked" weight [E, N, K] is a TensorArg whose expert_data[e] points at
//    expert e's row-major [N, K] slice; plain weights use `data`.
//  - args.meta is set only for ops that declare NeedsForwardMeta. Those whose
//    registry entry has TokenRows treat rows at or past meta->num_tokens (from
//    row_offset on) as padding and write them as zeros. Every other kernel
//    (linear, add, bias_add, sigmoid_gate_mul, silu_mul, norms, the pair- and slot-row MoE kernels,
//    the layout kernels) never sees num_tokens and computes every row: its rows may be (token,
//    expert) pairs. Padding reaches the MoE kernels as -1 ids.
//  - Shapes and dtypes are guaranteed by load-time step verification; a kernel
//    called against them is an internal error (MG_KERNEL_CONTRACT), never a
//    quiet zero tensor.
//  - Kernels never allocate, never read past real lengths and never crash on
//    padding or on out-of-range ids (data, not shape): an invalid index
//    zeroes what it would have produced.
//  - OpenMP loops run with args.num_threads threads.
//  - An op's parameters are its params struct (ir/op_params.h), read with
//    Params<FooParams>(args); the struct is named below as "params: Foo".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ir/dtype.h"
#include "kernels/kernel_abi.h"
#include "support/half.h"

namespace moegraph {

// ---- Embedding, norms, elementwise (ref_dense.cc, ref_norm.cc) ----------------

// in[0] tokens [T] i32, in[1] table [V, H] weight -> out[0] [T, H].
// Row t = table[tokens[t]]; an id outside [0, V) gives zeros.
void RefEmbedding(const KernelArgs& args);

// in[0] x [R, C], in[1] w [D] weight with C % D == 0 -> out[0] [R, C].
// Each group of D consecutive values: y = x / sqrt(mean(x^2) + eps) * w.
// params: RmsNormParams (eps).
void RefRmsNorm(const KernelArgs& args);

// in[0] x [R, C], in[1] residual [R, C], in[2] w [D] -> out[0] sum = x + residual
// [R, C], out[1] RmsNorm(sum) [R, C]. params: RmsNormParams (eps).
void RefAddRmsNorm(const KernelArgs& args);

// in[0] a, in[1] b (same shape) -> out[0] a + b.
void RefAdd(const KernelArgs& args);

// in[0] x [R, N], in[1] bias [N] weight -> out[0] [R, N] = x + bias on every row.
void RefBiasAdd(const KernelArgs& args);

// in[0] x [R, K], in[1] gate weight w [1, K], in[2] y [R, N] -> out[0] [R, N] =
// sigmoid(x[r] . w[0]) * y[r] on every row (Qwen2-MoE's shared-expert gate).
void RefSigmoidGateMul(const KernelArgs& args);

// in[0] a [R, N], in[1] b [R, N] -> out[0] [R, N] = silu(a) * b,
// silu(a) = a / (1 + exp(-a)).
void RefSiluMul(const KernelArgs& args);

// ---- Dense matmuls (ref_dense.cc) ---------------------------------------------

// in[0] x [R, K], in[1] w [N, K] weight -> out[0] [R, N] = x @ w^T.
void RefLinear(const KernelArgs& args);

// in[0] x [R, K], in[1] wg [N, K], in[2] wu [N, K] -> out[0] [R, N]
// = silu(x @ wg^T) * (x @ wu^T).
void RefLinearSiluMul(const KernelArgs& args);

// in[0] x [T, H], in[1] gate [I, H], in[2] up [I, H], in[3] down [H, I], and
// optionally in[4] gate bias [I], in[5] up bias [I], in[6] down bias [H] (all
// three or none) -> out[0] [T, H] = down(silu(gate x + bg) * (up x + bu)) + bd.
// The [I] hidden row is built on the stack 4096 values at a time, so I is
// unbounded.
void RefMlp(const KernelArgs& args);

// ---- Attention (ref_attention.cc) ---------------------------------------------

// in[0] x [T, num_heads * head_dim] -> out[0] same shape. params: RopeParams
// (head_dim, theta, rotary_dim, interleaved). Each head's first rd = rotary_dim
// (0: head_dim) values rotate at position meta->positions[t], the rest pass
// through: for i < rd/2, inv_freq = 1/theta^(2i/rd), angle = position * inv_freq,
// pair (a, b) = (i, i + rd/2) (NeoX rotate_half) or (2i, 2i + 1) (interleaved),
// y[a] = x[a] cos - x[b] sin, y[b] = x[b] cos + x[a] sin. Requires meta.
void RefRope(const KernelArgs& args);

// in[0] q [T, nh * hd], in[1] k [T, nkv * hd], in[2] v [T, nkv * hd]
// -> out[0] [T, nh * hd]. params: AttentionParams (layer, num_heads = nh,
// num_kv_heads = nkv, head_dim = hd, scale).
// 1. Writes k[t], v[t] of every real token with slot_mapping[t] >= 0 into the
//    paged cache of `layer`.
// 2. Each real token t of sequence batch_id_per_token[t] at position
//    positions[t] = p attends causally over cache positions 0..p of its
//    sequence (via block_tables); head h reads kv head h / (nh / nkv);
//    softmax(scale * q.k) in f32. Any invalid index zeroes that token's output.
void RefAttention(const KernelArgs& args);

// Multi-head latent attention, absorbed form. in[0] q_nope [T, nh * dn],
// in[1] q_pe [T, nh * dr] (roped), in[2] latent [T, r] (normalised), in[3]
// k_pe [T, dr] (roped), in[4] kv_b [nh * (dn + dv), r] (f32/bf16/f16, or block-scaled
// fp8e4m3 dequantized per element; head h's rows are its dn key rows, then its dv
// value rows) -> out[0] [T, nh * dv].
// params: MlaAttentionParams (r = kv_lora_rank, dn = qk_nope_head_dim,
// dr = qk_rope_head_dim, dv = v_head_dim).
// 1. Writes [latent[t], k_pe[t]] of every real token with slot_mapping[t] >= 0
//    into row slot of `layer`'s latent cache (kind kLatent, rows of r + dr).
// 2. Each real token t at position p, head h: q_lat = q_nope[t, h] @ Wk_h
//    ([dn] x [dn, r]); over cache positions j <= p of its sequence,
//    s_j = scale * (q_lat . latent_j + q_pe[t, h] . k_pe_j), softmax in f32;
//    o_lat = sum_j p_j latent_j; out[t, h] = Wv_h @ o_lat ([dv, r] x [r]).
//    Equal to expanding k = [latent @ Wk_h^T, k_pe] and v = latent @ Wv_h^T.
//    Any invalid index zeroes that token's output.
void RefMlaAttention(const KernelArgs& args);

// in[0] x [T, H] -> out[0] [B, H]: out[s] = x[cu_seqlens_q[s + 1] - 1] for
// s < num_seqs (a sequence with no tokens this step, or a bad index, gives
// zeros); rows s >= num_seqs are zeros. Requires meta.
void RefGatherLast(const KernelArgs& args);

// ---- Mixture of experts (ref_moe.cc) ------------------------------------------
//
// Routing (RefMoe, RefTopkRoute), in f32, by TopkRouteParams' rule
// (ir/op_params.h): scores s = softmax or sigmoid of the logits; the top_k
// experts of the kept groups by descending s + bias (ties: lower expert id
// first); weights = their s, divided by max(their sum, norm_min) when
// norm_topk_prob, times routed_scaling_factor. Without the optional attributes
// and bias: softmax top-k. Row t is padding if row_offset + t >= num_tokens.
// A "pair" p = t * top_k + j names token t's j-th route.

// Largest top_k the fused RefMoe supports (its routes live on the stack).
constexpr int kRefMaxTopK = 64;
// Largest expert count RefMoe supports (its router logits live on the stack).
constexpr int kRefMaxExperts = 4096;

// Whole sparse MoE block (HF Qwen3MoeSparseMoeBlock).
// in[0] x [T, H], in[1] router [E, H] weight, in[2] gate stacked [E, I, H],
// in[3] up stacked [E, I, H], in[4] down stacked [E, H, I], optional in[5]
// score-correction bias [E] f32 -> out[0] [T, H]
// = sum_j weight_j * down_e(silu(gate_e x) * up_e x).
// params: MoeParams (top_k <= kRefMaxTopK). With activation = 1 (GPT-OSS):
// in[2] gate_up [E, H, 2I] and in[3] down [E, I, H] in transformers' [in, out]
// layout, and optionally in[4] router bias [E], in[5] gate_up bias [E, 2I],
// in[6] down bias [E, H]: logits = router x + rb, out = sum_j weight_j *
// (down_e^T clamped_swiglu(gate_up_e^T x + bgu_e) + bd_e). out_major = 1: the same
// with gate_up [E, 2I, H] and down [E, H, I] (any matmul weight dtype: GPT-OSS's MXFP4).
// E > kRefMaxExperts or top_k > kRefMaxTopK: zeros. Hidden rows are chunked as
// in RefMlp.
void RefMoe(const KernelArgs& args);

// in[0] logits [T, E], optional in[1] score-correction bias [E] f32 -> out[0]
// ids [T, k] i32, out[1] weights [T, k] f32. params: TopkRouteParams.
// Padding rows (and routes j >= E): id -1, weight 0.
void RefTopkRoute(const KernelArgs& args);

// in[0] ids [T, k] i32 -> out[0] sorted_pairs [T * k] i32, out[1]
// expert_offsets [E + 1] i32. params: NumExpertsParams (num_experts = E).
// sorted_pairs lists the pairs with a valid id grouped by expert ascending,
// ascending p within an expert, then -1. expert_offsets[e] = start of expert
// e's group, expert_offsets[E] = number of valid pairs. Ids outside [0, E) are
// treated as -1.
void RefMoeAlign(const KernelArgs& args);

// in[0] x [T, H], in[1] sorted_pairs [P] i32 -> out[0] [P, H]; params: TopKParams.
// Row i = x[sorted_pairs[i] / top_k]; zeros for -1 (or out-of-range) pairs.
void RefMoePermute(const KernelArgs& args);

// in[0] xp [P, K], in[1] expert_offsets [E + 1] i32, in[2] w stacked [E, N, K],
// optional in[3] bias [E, N] (f32/bf16/f16) -> out[0] [P, N] = xp w_e^T + b_e.
// Rows in [off[e], off[e + 1]) use expert e. A range that is
// not monotone with the ones before it or runs past P is skipped; rows in no
// accepted range (including rows >= off[E]) are zeros.
void RefGroupedMatmul(const KernelArgs& args);

// in[0] xp [P, K], in[1] expert_offsets [E + 1] i32, in[2] wg stacked [E, N, K],
// in[3] wu stacked [E, N, K] -> out[0] [P, N] = silu(x wg_e^T) * (x wu_e^T).
// Offsets are validated as in RefGroupedMatmul.
void RefGroupedMatmulSiluMul(const KernelArgs& args);

// in[0] y [P, H], in[1] sorted_pairs [P] i32, in[2] route_weights [T, k] f32
// -> out[0] [T, H]; params: TopKParams. out = 0, then for i ascending with
// p = sorted_pairs[i] >= 0: out[p / k] += route_weights[p] * y[i].
void RefMoeUnpermuteReduce(const KernelArgs& args);

// Decode layout: experts outer, their tokens inner.
// in[0] ids [T, k] i32 -> out[0] batch_experts [S] i32, out[1] batch_pairs
// [S, T] i32, with S = out[0] dim 0 = min(E, T * k). params: NumExpertsParams.
// The distinct experts used, ascending, one per slot, then -1. batch_pairs[s]
// lists the pairs routed to slot s's expert ascending, then -1. Ids outside
// [0, E) are treated as -1.
void RefMoeExpertBatch(const KernelArgs& args);

// in[0] x [T, H], in[1] batch_experts [S] i32, in[2] batch_pairs [S, T] i32,
// in[3] wg stacked [E, I, H], in[4] wu stacked [E, I, H] -> out[0] h [T * k, I];
// params: TopKParams. h[p] = silu(wg_e x[p / k]) * (wu_e x[p / k]) for every pair
// p of every slot with expert e >= 0; rows not written are zeros.
void RefExpertBatchedGateUpSilu(const KernelArgs& args);

// in[0] h [T * k, I], in[1] batch_experts [S] i32, in[2] batch_pairs [S, T] i32,
// in[3] wd stacked [E, H, I] -> out[0] y [T * k, H]: y[p] = wd_e h[p];
// rows not written are zeros.
void RefExpertBatchedDown(const KernelArgs& args);

// GPT-OSS's experts read in transformers' [in, out] layout (no copy).
// in[0] xp [P, K], in[1] expert_offsets [E + 1] i32, in[2] w stacked [E, K, N],
// optional in[3] bias [E, N] (f32/bf16/f16) -> out[0] [P, N] = xp w_e + b_e for
// rows of expert e; offsets validated as in RefGroupedMatmul, other rows zeros.
void RefGroupedMatmulKn(const KernelArgs& args);

// in[0] x [R, K], in[1] batch_experts [S] i32, in[2] batch_pairs [S, T] i32,
// in[3] w stacked [E, K, N], optional in[4] bias [E, N] -> out[0] [R * k, N];
// params: TopKParams. out[p] = x[p / k] w_e + b_e for every pair p of every slot
// with expert e >= 0; rows not written are zeros.
void RefExpertBatchedMatmulKn(const KernelArgs& args);

// GPT-OSS's MXFP4 experts, out-major as published (the layout of expert_batched_down).
// in[0] x [R, K], in[1] batch_experts [S] i32, in[2] batch_pairs [S, T] i32,
// in[3] w stacked [E, N, K], optional in[4] bias [E, N] -> out[0] [R * k, N];
// params: TopKParams. out[p] = w_e x[p / k] + b_e for every pair p of every slot
// with expert e >= 0; rows not written are zeros.
void RefExpertBatchedMatmul(const KernelArgs& args);

// in[0] x [R, 2I] f32 (interleaved gate, up) -> out[0] [R, I]; params:
// ClampedSwigluParams' rule.
void RefClampedSwiglu(const KernelArgs& args);

// in[0] y [T * k, H], in[1] route_weights [T, k] f32 -> out[0] [T, H]:
// out[t] = sum_j route_weights[t, j] * y[t * k + j].
void RefMoeCombine(const KernelArgs& args);

// ---- Layout (ref_layout.cc): any dtype, copied as bytes; no padding rule -------

// in[0] x [R, ...] -> out[0] [rows, ...] (rows = out dim 0): rows
// [begin, begin + rows) of x (params: SliceRowsParams; the kernel reads
// begin); rows outside [0, R) are zeros.
void RefSliceRows(const KernelArgs& args);

// in[0] x [R, C] -> out[0] [R, C / g * f], out[1] [R, C / g * (g - f)]
// (params: SplitColsParams g = group, f = first): each group of g columns
// sends its first f to out[0] and the rest to out[1]. f32.
void RefSplitCols(const KernelArgs& args);

// in[0..num_in) each [R_i, ...] -> out[0] [sum R_i, ...].
void RefConcatRows(const KernelArgs& args);

// Single-rank all-gather: in[0] -> out[0] copy. params: AllGatherParams; a
// world_size other than 1 leaves out[0] zeroed (the compiler rejects it before this).
void RefAllGather(const KernelArgs& args);

// ---- Expert parallelism (ep_kernels.cc) ------------------------------------------
// Collectives over args.comm (null, or a group other than the plan's ep_size /
// ep_rank, is a contract violation; so is a collective's error, reported with
// the rank and the Status). Every rank makes the same collective calls, an empty
// chunk (T = 0) included. params: EpParams (E = num_experts, W = ep_size,
// C = capacity); ExpertOwner / ExpertRangeOf (ir/op_params.h) split the experts.

// in[0] x [T, H] f32, in[1] ids [T, k] i32 -> out[0] rx [C, H] f32, out[1] rids
// [C, 1] i32, out[2] layout [T * k + 2W] i32.
// Pair p = t * k + j is live when t < meta->num_tokens and ids[p] in [0, E); it goes
// to rank ExpertOwner(ids[p]). Send order: live pairs by destination rank, then by p;
// layout[p] = the pair's slot in it (-1 when dead), layout[T * k + d] = pairs sent
// to rank d, layout[T * k + W + s] = pairs received from rank s. Rows [0, R) of rx
// are the R received pairs' x rows in source-rank order, rids their local expert ids
// (id - ExpertRangeOf(dest).first); rows [R, C) are zeros with rids -1. R > C
// aborts (the compiler sizes C for every key).
void RefEpDispatch(const KernelArgs& args);

// in[0] yp [C, H] f32, in[1] sorted [C] i32, in[2] offsets [E_local + 1] i32 (what
// moe_align of rids produced), in[3] w [T, k] f32, in[4] layout (ep_dispatch's)
// -> out[0] y [T, H] f32. yp[q] is the expert output of received row sorted[q] for
// q < offsets[E_local]; those rows go back to the ranks that sent them, and
// y[t] = sum over j ascending of w[t, j] * (the row pair t * k + j got back), from
// zero, for live pairs; zeros for t >= meta->num_tokens.
void RefEpCombine(const KernelArgs& args);

// ---- Helpers shared by the reference kernels ----------------------------------
namespace ref_detail {

inline bool IsWeightDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
}

// Element i of a weight buffer of `dtype` widened to f32 (0 for other dtypes).
inline float LoadWeight(const void* w, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(w)[i];
    case DType::kBF16:
      return Bf16ToF32(static_cast<const uint16_t*>(w)[i]);
    case DType::kF16:
      return F16ToF32(static_cast<const uint16_t*>(w)[i]);
    default:
      return 0.0f;
  }
}

// sum_{i < n} x[i] * w[offset + i] with w of `dtype`, accumulated in f32.
inline float DotWeight(const float* x, const void* w, DType dtype, int64_t offset, int64_t n) {
  float acc = 0.0f;
  switch (dtype) {
    case DType::kF32: {
      const float* row = static_cast<const float*>(w) + offset;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < n; ++i)
        acc += x[i] * row[i];
      break;
    }
    case DType::kBF16: {
      const uint16_t* row = static_cast<const uint16_t*>(w) + offset;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < n; ++i)
        acc += x[i] * Bf16ToF32(row[i]);
      break;
    }
    case DType::kF16: {
      const uint16_t* row = static_cast<const uint16_t*>(w) + offset;
      for (int64_t i = 0; i < n; ++i)
        acc += x[i] * F16ToF32(row[i]);
      break;
    }
    default:
      break;
  }
  return acc;
}

// Whether `w` is a weight a matmul kernel reads: f32/bf16/f16, fp8e4m3 or i8 with its block
// scales (QuantScheme::kFp8Block, kInt8Block), packed mxfp4 with its e8m0 scales (kMxfp4) or
// packed i4 with f32 scales (kInt4Block; both K % 32 == 0).
inline bool IsMatmulWeight(const TensorArg& w) {
  if (ByteBlockScheme(w.quant.scheme)) {
    return w.dtype == QuantWeightDType(w.quant.scheme) && w.quant.block_rows > 0 &&
           w.quant.block_cols > 0 && (w.scales != nullptr || w.expert_scales != nullptr);
  }
  if (w.quant.scheme == QuantScheme::kMxfp4 || w.quant.scheme == QuantScheme::kInt4Block) {
    return w.dtype == QuantWeightDType(w.quant.scheme) && w.quant.block_rows == 1 &&
           w.quant.block_cols % 32 == 0 &&
           (w.quant.scheme == QuantScheme::kInt4Block || w.quant.block_cols == 32) && w.rank >= 1 &&
           w.dim(-1) % 32 == 0 && (w.scales != nullptr || w.expert_scales != nullptr);
  }
  return !w.quant.quantized() && IsWeightDType(w.dtype);
}

// One [N, K] matrix of a weight operand (a plain weight, or one expert of a stacked one) as
// the reference kernels read it: element (row, col) dequantized to f32.
struct WeightMatrix {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t cols = 0;  // K
  WeightQuant quant;
  // [ceil(N / block_rows), ceil(K / block_cols)] when quantized: f32 for kFp8Block,
  // kInt8Block and kInt4Block, u8 e8m0 for kMxfp4 (kMxfp4 and kInt4Block data rows are K / 2
  // bytes of packed codes).
  const void* scales = nullptr;

  // sum_{i < n} x[i] * W[row, col0 + i], each element dequantized (fp8 / fp4 value times its
  // block's scale, in f32) before the product.
  float Dot(const float* x, int64_t row, int64_t col0, int64_t n) const {
    if (quant.scheme == QuantScheme::kMxfp4) {
      const uint8_t* q = static_cast<const uint8_t*>(data) + row * (cols / 2);
      const uint8_t* s = static_cast<const uint8_t*>(scales) + row * (cols / 32);
      float acc = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t c = col0 + i;
        acc += x[i] * (Mxfp4At(q, c) * E8M0ToF32(s[c / 32]));
      }
      return acc;
    }
    if (quant.scheme == QuantScheme::kInt4Block) {
      const uint8_t* q = static_cast<const uint8_t*>(data) + row * (cols / 2);
      const float* s = static_cast<const float*>(scales) + row * quant.ScaleCols(cols);
      float acc = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t c = col0 + i;
        acc += x[i] * (static_cast<float>(Int4At(q, c)) * s[c / quant.block_cols]);
      }
      return acc;
    }
    if (!ByteBlockScheme(quant.scheme)) return DotWeight(x, data, dtype, row * cols + col0, n);
    const uint8_t* q = static_cast<const uint8_t*>(data) + row * cols;
    const float* s =
        static_cast<const float*>(scales) + (row / quant.block_rows) * quant.ScaleCols(cols);
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = col0 + i;
      acc += x[i] * (DecodeByte(q[c]) * s[c / quant.block_cols]);
    }
    return acc;
  }

  // The product a matmul op computes with this weight: Dot, or for a weight that rounds its
  // input to int8 (RoundsInputToInt8; col0 and n multiples of 32) the sum over blocks of 32
  // of the block's exact integer product times the weight's scale times the input's.
  float MatmulDot(const float* x, int64_t row, int64_t col0, int64_t n) const {
    if (!RoundsInputToInt8(quant, cols) || col0 % kQ8Block != 0 || n % kQ8Block != 0) {
      return Dot(x, row, col0, n);
    }
    const bool int4 = quant.scheme == QuantScheme::kInt4Block;
    const uint8_t* q = static_cast<const uint8_t*>(data) + row * (int4 ? cols / 2 : cols);
    const float* s =
        static_cast<const float*>(scales) + (row / quant.block_rows) * quant.ScaleCols(cols);
    float acc = 0.0f;
    int8_t xq[kQ8Block];
    for (int64_t b = 0; b < n; b += kQ8Block) {
      const float d = RoundToQ8Block(x + b, xq);
      int32_t isum = 0;
      for (int64_t i = 0; i < kQ8Block; ++i) {
        const int64_t c = col0 + b + i;
        isum += xq[i] * (int4 ? Int4At(q, c) : static_cast<int8_t>(q[c]));
      }
      acc += static_cast<float>(isum) * (s[(col0 + b) / quant.block_cols] * d);
    }
    return acc;
  }

  // W[row, col] dequantized to f32.
  float At(int64_t row, int64_t col) const {
    if (quant.scheme == QuantScheme::kMxfp4) {
      const uint8_t* q = static_cast<const uint8_t*>(data) + row * (cols / 2);
      const uint8_t* s = static_cast<const uint8_t*>(scales) + row * (cols / 32);
      return Mxfp4At(q, col) * E8M0ToF32(s[col / 32]);
    }
    if (quant.scheme == QuantScheme::kInt4Block) {
      const uint8_t* q = static_cast<const uint8_t*>(data) + row * (cols / 2);
      const float* s = static_cast<const float*>(scales) + row * quant.ScaleCols(cols);
      return static_cast<float>(Int4At(q, col)) * s[col / quant.block_cols];
    }
    if (!ByteBlockScheme(quant.scheme)) return LoadWeight(data, dtype, row * cols + col);
    const uint8_t q = static_cast<const uint8_t*>(data)[row * cols + col];
    const float* s =
        static_cast<const float*>(scales) + (row / quant.block_rows) * quant.ScaleCols(cols);
    return DecodeByte(q) * s[col / quant.block_cols];
  }

  // A byte of a kFp8Block / kInt8Block weight, unscaled: its e4m3 or its signed 8-bit value.
  float DecodeByte(uint8_t q) const {
    return quant.scheme == QuantScheme::kInt8Block ? static_cast<float>(static_cast<int8_t>(q))
                                                   : Fp8E4M3ToF32(q);
  }
};

inline WeightMatrix MatrixOf(const TensorArg& w) {
  return WeightMatrix{w.data, w.dtype, w.dim(-1), w.quant, w.scales};
}
inline WeightMatrix ExpertMatrix(const TensorArg& w, int64_t e) {
  return WeightMatrix{w.expert(e), w.dtype, w.dim(-1), w.quant,
                      w.quant.quantized() ? w.expert_scale(e) : nullptr};
}

// sum_{i < n} a[i] * b[i], accumulated in f32.
inline float DotF32(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i)
    acc += a[i] * b[i];
  return acc;
}

// GPT-OSS's activation of one (gate, up) pair (ClampedSwigluParams).
inline float ClampedSwiglu(float gate, float up, float alpha, float limit) {
  const float g = std::min(gate, limit);
  const float u = std::clamp(up, -limit, limit);
  return (u + 1.0f) * (g / (1.0f + std::exp(-alpha * g)));
}

inline float Silu(float a) {
  return a / (1.0f + std::exp(-a));
}

// Rows [0, result) of a tensor with `num_rows` token rows are real.
inline int64_t NumRealRows(const KernelArgs& args, int64_t num_rows) {
  if (args.meta == nullptr) return num_rows;
  const int64_t num_tokens = args.meta->num_tokens < 0 ? 0 : args.meta->num_tokens;
  return num_tokens < num_rows ? num_tokens : num_rows;
}

// Elements per dim-0 row (1 for rank <= 1).
inline int64_t RowSize(const TensorArg& t) {
  int64_t n = 1;
  for (int i = 1; i < t.rank; ++i)
    n *= t.shape[i];
  return n;
}

inline int64_t NumRows(const TensorArg& t) {
  return t.rank == 0 ? 1 : t.shape[0];
}

// True when every cache block holding positions 0..position of sequence `seq`
// is addressable.
inline bool SeqBlocksValid(const ForwardMetaView& meta, const KvCacheView& kv, int32_t seq,
                           int32_t position) {
  if (seq < 0 || seq >= meta.num_seqs || position < 0) return false;
  const int64_t last_block = position / kv.block_size;
  if (last_block >= meta.max_blocks_per_seq) return false;
  const int32_t* table = meta.block_tables + static_cast<int64_t>(seq) * meta.max_blocks_per_seq;
  for (int64_t b = 0; b <= last_block; ++b) {
    if (table[b] < 0 || table[b] >= kv.num_blocks) return false;
  }
  return true;
}

// The attention op's optional sinks (in[3]: [num_heads] of a weight dtype), widened to f32
// into dst[0, num_heads); false, dst untouched, when the op has none.
inline bool LoadAttentionSinks(const KernelArgs& args, int64_t num_heads, float* dst) {
  if (args.num_in <= 3) return false;
  const TensorArg& sinks = args.in[3];
  MG_KERNEL_CONTRACT(IsWeightDType(sinks.dtype) && sinks.numel() == num_heads, "attention",
                     "sinks must be f32/bf16/f16 [num_heads]");
  for (int64_t h = 0; h < num_heads; ++h)
    dst[h] = LoadWeight(sinks.data, sinks.dtype, h);
  return true;
}

// TopkRouteParams' group rule (ir/op_params.h): kept[g] for the num_groups groups of
// num_experts / num_groups experts, from each expert's choice score choice(e). A group is
// kept when fewer than KeptGroups() groups beat it (a larger sum of its two best choice
// scores, or an equal one and a lower id); with every group kept, choice is not called.
template <typename Choice>
void KeptRouteGroups(const TopkRouteParams& p, int64_t num_experts, const Choice& choice,
                     bool* kept) {
  const int64_t num_groups = p.num_groups;
  const int64_t group_size = num_experts / num_groups;
  std::fill(kept, kept + num_groups, true);
  if (p.KeptGroups() >= num_groups) return;
  float group_score[kMaxRouteGroups];
  for (int64_t g = 0; g < num_groups; ++g) {
    float first = -std::numeric_limits<float>::infinity(), second = first;
    for (int64_t e = g * group_size; e < (g + 1) * group_size; ++e) {
      const float c = choice(e);
      if (c > first) {
        second = first;
        first = c;
      } else if (c > second) {
        second = c;
      }
    }
    group_score[g] = first + second;
  }
  for (int64_t g = 0; g < num_groups; ++g) {
    int64_t better = 0;
    for (int64_t h = 0; h < num_groups; ++h) {
      better += group_score[h] > group_score[g] || (group_score[h] == group_score[g] && h < g);
    }
    kept[g] = better < p.KeptGroups();
  }
}

// The chosen experts' unbiased scores weights[0, top_k) (0 past the chosen ones) made final:
// divided by max(their in-order sum, norm_min) under norm_topk_prob, then scaled by
// routed_scaling_factor.
inline void FinishRouteWeights(const TopkRouteParams& p, float* weights) {
  float chosen_sum = 0.0f;
  for (int64_t j = 0; j < p.top_k; ++j)
    chosen_sum += weights[j];
  const float denominator = std::max(chosen_sum, static_cast<float>(p.norm_min));
  if (p.norm_topk_prob != 0 && denominator > 0.0f) {
    for (int64_t j = 0; j < p.top_k; ++j)
      weights[j] /= denominator;
  }
  const float scale = static_cast<float>(p.routed_scaling_factor);
  for (int64_t j = 0; j < p.top_k; ++j)
    weights[j] *= scale;
}

}  // namespace ref_detail
}  // namespace moegraph
