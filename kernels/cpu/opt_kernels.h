// Optimised CPU kernels (AVX2/FMA/F16C, the prefill GEMM also AVX-512): same contract and semantics
// as the reference kernel of the same op (reference_kernels.h), results equal to within f32
// accumulation order. Dispatch (SelectCpuKernel) calls them only on processors where
// OptKernelsSupported() holds; each one falls back to its reference kernel for inputs outside its
// fast path (bad shapes, other dtypes).
//
// Threads: every kernel splits its outputs statically over args.num_threads
// from the shapes (and, for MoE kernels, the routing in its inputs), and each
// output element is computed by one thread in a fixed order, so results are
// bit-identical from call to call whatever the timing.
#pragma once

#include "kernels/kernel_abi.h"

namespace moegraph {

// True when the optimised kernels run: this processor has AVX2, FMA and F16C and
// SelectedCpuIsa() (cpu_isa.h) is not kReference.
bool OptKernelsSupported();

// ---- Dense (opt_dense.cc) --------------------------------------------------------
// linear / linear_silu_mul: register-tiled GEMV while at most 4 rows are real
// (decode, the LM head), else a packed 4x24 GEMM (prefill; 8x48 with AVX-512).
void OptLinear(const KernelArgs& args);
void OptLinearSiluMul(const KernelArgs& args);

// ---- Norms (opt_norm.cc) ---------------------------------------------------------
void OptRmsNorm(const KernelArgs& args);
void OptAddRmsNorm(const KernelArgs& args);

// ---- Attention (opt_attention.cc) ------------------------------------------------
// rope: the same f32 angles as the reference (partial and interleaved too),
// inverse frequencies computed once per call. attention: paged, GQA heads of one
// KV head together, keys in blocks with an online softmax; head_dim must be a
// multiple of 8 (else reference).
void OptRope(const KernelArgs& args);
void OptAttention(const KernelArgs& args);
// mla_attention: the reference's absorbed form with AVX2 projections and dots,
// one pass over the latent cache per (token, head) with an online softmax; a
// block-scaled fp8 kv_b is decoded in registers (simd::Load8<kFp8>) and each vector
// of 8 multiplied by its block's scale, as the fp8 matmul kernels.
void OptMlaAttention(const KernelArgs& args);

// ---- Mixture of experts (opt_moe.cc) ---------------------------------------------
// topk_route: probabilities computed once per row (bit-identical to the reference).
void OptTopkRoute(const KernelArgs& args);
// grouped matmuls: per expert, packed GEMM over its row group (GEMV tiles when
// the group has at most 4 rows); gate/up share one panel and fuse SiLU-and-mul;
// grouped_matmul's bias is added to each expert's panel columns after its matmul.
void OptGroupedMatmul(const KernelArgs& args);
void OptGroupedMatmulSiluMul(const KernelArgs& args);
// decode: only the routed experts' rows are read, each once per token group;
// gate and up rows are read in one pass with SiLU-and-mul fused.
void OptExpertBatchedGateUpSilu(const KernelArgs& args);
void OptExpertBatchedDown(const KernelArgs& args);
// expert_batched_matmul: expert_batched_down's GEMV tiles with the token-row rule of gate/up
// (x row p / top_k) and the bias added per column unit.
void OptExpertBatchedMatmul(const KernelArgs& args);
void OptMoeCombine(const KernelArgs& args);
void OptMoeUnpermuteReduce(const KernelArgs& args);
// GPT-OSS's experts (opt_moe_kn.cc): [in, out] weights read four rows at a time as long
// contiguous runs (a column chunk per work unit) into up to 4 activation rows' outputs, the bias
// added per chunk; the clamped SwiGLU is the reference's scalar math split over the pool.
void OptGroupedMatmulKn(const KernelArgs& args);
void OptExpertBatchedMatmulKn(const KernelArgs& args);
void OptClampedSwiglu(const KernelArgs& args);

}  // namespace moegraph
