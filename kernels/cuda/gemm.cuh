// cuBLASLt GEMMs for the dense projections (linear, linear_silu_mul, the LM
// head). Host code. One plan per shape and operand alignment (descriptors +
// the heuristic's algorithm) is made on first use and kept, so the eager run,
// the capture warm-up and the captured graph all use the same algorithm
// (bit-identical results). The workspace is the caller's preallocated memory;
// nothing here allocates device memory or synchronizes, so Matmul is
// capturable once its plan exists.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "ir/dtype.h"
#include "support/status.h"

namespace moegraph::cuda {

class CublasLtGemm {
 public:
  // `workspace` (device memory, `workspace_bytes`) must outlive this object.
  static StatusOr<std::unique_ptr<CublasLtGemm>> Create(void* workspace, size_t workspace_bytes);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // d [m, n] f32 (row-major) = x [m, k] · w[n, k]^T, x and w both of `dtype`
  // (f32: plain fp32 GEMM, no TF32; bf16/f16: fp32 accumulation and output).
  // Unimplemented when cuBLASLt offers no algorithm for the shape/alignment
  // (the caller falls back to its own kernel).
  Status Matmul(const void* w, const void* x, float* d, int64_t m, int64_t n, int64_t k,
                DType dtype, cudaStream_t stream);

  size_t num_plans() const { return plans_.size(); }

 private:
  struct Plan;
  // dtype, m, n, k, alignment of w, x, d.
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int, int, int>;
  CublasLtGemm(void* handle, void* workspace, size_t workspace_bytes);
  StatusOr<Plan*> GetPlan(const Key& key);

  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace moegraph::cuda
