// The CPU backend's kernel table: for each op of the registry that the CPU
// implements, its reference kernel and, where one exists, an optimised kernel
// with a `supports` rule over the step's dtypes and parameters (ggml's
// supports_op). Capture looks each step up once and binds the choice.
#pragma once

#include <string_view>

#include "ir/program.h"
#include "kernels/kernel_abi.h"

namespace moegraph {

struct CpuKernelChoice {
  KernelFn fn = nullptr;
  const char* variant = "reference";  // e.g. "avx2", for logs and benchmarks
};

// The reference kernel of op `name` (the eager interpreter's semantics), or
// null when the CPU has none.
KernelFn CpuReferenceKernel(std::string_view name);

// The fastest kernel for `step` on this processor: the optimised one when the
// CPU runs it and it supports the step, else the reference kernel (null fn
// for an op the CPU does not implement). `reference_only` forces the
// reference kernels (the baseline the optimised ones are tested against).
CpuKernelChoice SelectCpuKernel(const KernelStep& step, bool reference_only);

}  // namespace moegraph
