// The CPU kernel table: reference kernels, and the optimised (AVX2/FMA/F16C, with an AVX-512
// GEMM for prefill rows) kernel of an op when this processor runs it and it supports the step.
#include "kernels/cpu/dispatch.h"

#include <algorithm>

#include <string_view>

#include "ir/op_registry.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/fill_kernels.h"
#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/simd_avx2.h"

namespace moegraph {
namespace {

// fp8e4m3 / mxfp4 / i8: a quantized matmul weight; the optimised matmul kernels read the blocks
// they take (simd::ToMatmulWType) and run the reference for others.
bool IsWeight(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16 ||
         IsQuantStorage(dtype);
}

// Inputs [first, first + count) exist and share one weight dtype.
bool WeightInputs(const KernelStep& step, size_t first, size_t count) {
  if (step.inputs.size() < first + count) return false;
  for (size_t i = first; i < first + count; ++i) {
    if (!IsWeight(step.inputs[i].dtype) || step.inputs[i].dtype != step.inputs[first].dtype) {
      return false;
    }
  }
  return true;
}

// An optimised kernel, the steps it supports, and whether its prefill rows run the AVX-512
// GEMM when SelectedCpuIsa() includes kAvx512 (its other paths are AVX2), and the AMX one for
// bf16 weights when it is kAmx.
struct OptKernel {
  KernelFn fn = nullptr;
  bool (*supports)(const KernelStep& step) = nullptr;
  bool avx512 = false;
};

struct Entry {
  std::string_view op;
  KernelFn reference;
  OptKernel opt;
};

template <size_t first, size_t count>
bool WeightsAt(const KernelStep& step) {
  return WeightInputs(step, first, count);
}
bool Always(const KernelStep&) {
  return true;
}
bool RopeSupported(const KernelStep& step) {
  RopeParams p;
  return DecodeParams(step.ints, step.floats, p) && p.head_dim % 2 == 0 && p.RotaryDim() % 2 == 0 &&
         p.RotaryDim() <= p.head_dim;
}
bool AttentionSupported(const KernelStep& step) {
  AttentionParams p;
  return DecodeParams(step.ints, step.floats, p) && p.head_dim > 0 && p.head_dim % 8 == 0 &&
         p.head_dim <= 256;
}

// Every op the CPU runs. Adding an op adds one line here.
constexpr Entry kTable[] = {
    {"zeros", RefZeros, {}},
    {"embedding", RefEmbedding, {}},
    {"rms_norm", RefRmsNorm, {OptRmsNorm, WeightsAt<1, 1>}},
    {"add_rms_norm", RefAddRmsNorm, {OptAddRmsNorm, WeightsAt<2, 1>}},
    {"add", RefAdd, {}},
    {"bias_add", RefBiasAdd, {}},
    {"linear", RefLinear, {OptLinear, WeightsAt<1, 1>, true}},
    {"sigmoid_gate_mul", RefSigmoidGateMul, {}},
    {"silu_mul", RefSiluMul, {}},
    {"linear_silu_mul", RefLinearSiluMul, {OptLinearSiluMul, WeightsAt<1, 2>, true}},
    {"rope", RefRope, {OptRope, RopeSupported}},
    {"attention", RefAttention, {OptAttention, AttentionSupported}},
    {"mla_attention", RefMlaAttention, {OptMlaAttention, WeightsAt<4, 1>}},
    {"gather_last", RefGatherLast, {}},
    {"mlp", RefMlp, {}},
    {"moe", RefMoe, {}},
    {"topk_route", RefTopkRoute, {OptTopkRoute, Always}},
    {"moe_align", RefMoeAlign, {}},
    {"moe_permute", RefMoePermute, {}},
    {"grouped_matmul", RefGroupedMatmul, {OptGroupedMatmul, WeightsAt<2, 1>, true}},
    {"grouped_matmul_silu_mul",
     RefGroupedMatmulSiluMul,
     {OptGroupedMatmulSiluMul, WeightsAt<2, 2>, true}},
    {"moe_unpermute_reduce", RefMoeUnpermuteReduce, {OptMoeUnpermuteReduce, Always}},
    {"moe_expert_batch", RefMoeExpertBatch, {}},
    {"expert_batched_gate_up_silu",
     RefExpertBatchedGateUpSilu,
     {OptExpertBatchedGateUpSilu, WeightsAt<3, 2>}},
    {"expert_batched_down", RefExpertBatchedDown, {OptExpertBatchedDown, WeightsAt<3, 1>}},
    {"moe_combine", RefMoeCombine, {OptMoeCombine, Always}},
    {"grouped_matmul_kn", RefGroupedMatmulKn, {OptGroupedMatmulKn, WeightsAt<2, 1>}},
    {"expert_batched_matmul_kn",
     RefExpertBatchedMatmulKn,
     {OptExpertBatchedMatmulKn, WeightsAt<3, 1>}},
    {"expert_batched_matmul", RefExpertBatchedMatmul, {OptExpertBatchedMatmul, WeightsAt<3, 1>}},
    {"clamped_swiglu", RefClampedSwiglu, {OptClampedSwiglu, Always}},
    {"slice_rows", RefSliceRows, {}},
    {"concat_rows", RefConcatRows, {}},
    {"split_cols", RefSplitCols, {}},
    {"all_gather", RefAllGather, {}},
    {"ep_dispatch", RefEpDispatch, {}},
    {"ep_combine", RefEpCombine, {}},
};

static_assert(kRefMaxExperts >= kMoeOpMaxExperts && kRefMaxTopK >= kMoeOpMaxTopK,
              "RefMoe must cover every moe op the shape rule accepts");

const Entry* Find(std::string_view op) {
  for (const Entry& e : kTable) {
    if (e.op == op) return &e;
  }
  return nullptr;
}

}  // namespace

bool OptKernelsSupported() {
  return SelectedCpuIsa() != CpuIsa::kReference;
}

KernelFn CpuReferenceKernel(std::string_view name) {
  const Entry* e = Find(name);
  return e ? e->reference : nullptr;
}

CpuKernelChoice SelectCpuKernel(const KernelStep& step, bool reference_only) {
  CpuKernelChoice choice;
  const Entry* e = Find(step.kernel);
  if (e == nullptr) return choice;
  choice.fn = e->reference;
  if (reference_only || !OptKernelsSupported() || e->opt.fn == nullptr) return choice;
  if (e->opt.supports(step)) {
    choice.fn = e->opt.fn;
    CpuIsa isa = e->opt.avx512 ? SelectedCpuIsa() : CpuIsa::kAvx2;
    const bool bf16_weights =
        std::any_of(step.inputs.begin(), step.inputs.end(),
                    [](const ArgRef& in) { return in.dtype == DType::kBF16; });
    if (isa == CpuIsa::kAmx && !bf16_weights) isa = CpuIsa::kAvx512;
    choice.variant = CpuIsaName(isa);
  }
  return choice;
}

}  // namespace moegraph
