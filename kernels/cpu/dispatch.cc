// CPU kernel selection: the optimised (AVX2/FMA/F16C) kernel of an op when
// this processor runs it and it covers the step's dtypes and shapes, else the
// op's reference kernel.
#include "kernels/cpu/dispatch.h"

#include <string_view>

#include "ir/op_registry.h"
#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/simd_avx2.h"

namespace moegraph {
namespace {

bool IsWeight(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
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

int64_t IntParam(const KernelStep& step, size_t i) {
  return i < step.ints.size() ? step.ints[i] : 0;
}

// The optimised kernel for `step`, or null when it has none for these operands.
KernelFn SelectOptKernel(const KernelStep& step) {
  const std::string_view kernel = step.kernel;
  if (kernel == "linear") return WeightInputs(step, 1, 1) ? OptLinear : nullptr;
  if (kernel == "linear_silu_mul") return WeightInputs(step, 1, 2) ? OptLinearSiluMul : nullptr;
  if (kernel == "rms_norm") return WeightInputs(step, 1, 1) ? OptRmsNorm : nullptr;
  if (kernel == "add_rms_norm") return WeightInputs(step, 2, 1) ? OptAddRmsNorm : nullptr;
  if (kernel == "rope") return IntParam(step, 0) % 2 == 0 ? OptRope : nullptr;
  if (kernel == "attention") {
    const int64_t head_dim = IntParam(step, 3);
    return head_dim > 0 && head_dim % 8 == 0 && head_dim <= 256 ? OptAttention : nullptr;
  }
  if (kernel == "topk_route") return OptTopkRoute;
  if (kernel == "grouped_matmul") return WeightInputs(step, 2, 1) ? OptGroupedMatmul : nullptr;
  if (kernel == "grouped_matmul_silu_mul") {
    return WeightInputs(step, 2, 2) ? OptGroupedMatmulSiluMul : nullptr;
  }
  if (kernel == "expert_batched_gate_up_silu") {
    return WeightInputs(step, 3, 2) ? OptExpertBatchedGateUpSilu : nullptr;
  }
  if (kernel == "expert_batched_down") {
    return WeightInputs(step, 3, 1) ? OptExpertBatchedDown : nullptr;
  }
  if (kernel == "moe_combine") return OptMoeCombine;
  if (kernel == "moe_unpermute_reduce") return OptMoeUnpermuteReduce;
  return nullptr;
}

}  // namespace

bool OptKernelsSupported() {
  static const bool supported = simd::CpuHasAvx2Fma();
  return supported;
}

CpuKernelChoice SelectCpuKernel(const KernelStep& step, bool reference_only) {
  CpuKernelChoice choice;
  const OpDef* def = LookupOp(step.kernel);
  if (def) choice.fn = def->reference;
  if (reference_only || !OptKernelsSupported()) return choice;
  if (KernelFn fn = SelectOptKernel(step)) {
    choice.fn = fn;
    choice.variant = "avx2";
  }
  return choice;
}

}  // namespace moegraph
