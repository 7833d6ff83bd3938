// The CUDA op table: for each op kind of the registry, the host function that
// runs one kernel step on a stream (adapting KernelArgs to the raw-pointer
// launchers of dense.cuh, attention.cuh, moe.cuh and gemm.cuh) and the scratch
// memory it needs. The CUDA backend resolves steps through it at capture.
//
// KernelArgs conventions on CUDA (set up by runtime/cuda_backend.cc):
//  - TensorArg::data is device memory; a stacked weight's expert_data is a
//    device array of device pointers (kernels index it on the device).
//  - KernelArgs::meta points at a ForwardMetaView in device memory whose
//    arrays are device memory (null: every row is real).
//  - KernelArgs::kv is a host-readable view whose k/v are device memory.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "ir/program.h"
#include "kernels/kernel_abi.h"
#include "support/status.h"

namespace moegraph::cuda {

class CublasLtGemm;

struct CudaStepContext {
  cudaStream_t stream = nullptr;
  CublasLtGemm* gemm = nullptr;  // null: linear falls back to the tiled CUDA kernel
  std::byte* scratch = nullptr;  // >= the step's scratch bytes, 256-byte aligned
  size_t scratch_bytes = 0;
  // bf16/f16 weights: activations enter cuBLASLt as 2 half-precision parts
  // (hi + lo, ~fp32 accuracy) or 1 (plain rounding, faster, ~1e-3 relative).
  int activation_parts = 2;
};

using CudaStepFn = Status (*)(const KernelArgs& args, const CudaStepContext& ctx);
using CudaScratchFn = size_t (*)(const KernelArgs& args, int activation_parts);

struct CudaKernel {
  CudaStepFn run = nullptr;
  CudaScratchFn scratch_bytes = nullptr;  // null: needs none
};

// The CUDA implementation of op kind `op`; run is null (and `why_not` says
// why) when there is none.
CudaKernel LookupCudaKernel(std::string_view op, std::string* why_not = nullptr);

// Why the CUDA backend cannot run `step` (empty when it can): no kernel, or
// the op waits for the host (kHostSync traits never enter a captured graph).
std::string CudaUnsupportedReason(const KernelStep& step);

}  // namespace moegraph::cuda
