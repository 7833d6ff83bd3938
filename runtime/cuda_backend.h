// The CUDA backend: device memory, kernels from kernels/cuda/, GEMMs through
// cuBLASLt, and capture into CUDA graphs (warm-up run, then
// cudaStreamBeginCapture → every step → cudaStreamEndCapture →
// cudaGraphInstantiate → cudaGraphUpload; replay is cudaGraphLaunch).
// docs/CUDA.md has the design, the numeric choices and the capture rules.
// This header needs no CUDA headers; without CUDA in the build every entry
// point reports that.
#pragma once

#include <memory>
#include <string>

#include "runtime/backend.h"
#include "support/status.h"

namespace moegraph {

struct CudaBackendOptions {
  int device = 0;
  // bf16/f16 weights: activations enter cuBLASLt split into 2 half-precision
  // parts (hi + lo: close to an fp32 GEMM, twice the tensor-core work) or 1
  // (plain rounding: ~1e-3 relative error, faster).
  int activation_parts = 2;
  // false: dense GEMMs run on the tiled CUDA kernel instead of cuBLASLt
  // (exact fp32 activations; for debugging numerics).
  bool use_cublaslt = true;
};

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

// Whether this build has CUDA and the machine a CUDA device; when not, why
// ("built without CUDA", "no CUDA device: ..."). Tests skip on false.
bool CudaDeviceAvailable(std::string* reason = nullptr);

// The CUDA backend's stream (a cudaStream_t), for collectives and benchmarks
// that must order their work with the backend's; null for other backends.
void* CudaBackendStream(Backend& backend);

}  // namespace moegraph
