// Kernel selection for the CPU backend: once per step, at capture, pick the
// fastest implementation that supports the step's dtypes and shapes on this
// processor; fall back to the op's reference kernel.
#pragma once

#include "ir/program.h"
#include "kernels/kernel_abi.h"

namespace moegraph {

struct CpuKernelChoice {
  KernelFn fn = nullptr;
  const char* variant = "reference";  // e.g. "avx2", for logs and benchmarks
};

// `reference_only` forces the registry's reference kernels (the baseline the
// optimised ones are tested against).
CpuKernelChoice SelectCpuKernel(const KernelStep& step, bool reference_only);

}  // namespace moegraph
