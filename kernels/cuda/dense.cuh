// CUDA dense kernels: embedding, RMSNorm (+ fused residual add), elementwise
// add / SiLU-and-mul, bias_add, sigmoid_gate_mul, gather_last, and the small kernels around the
// cuBLASLt GEMMs (activation split into half precision, the epilogue). Host launchers take raw
// device pointers, sizes and a stream, allocate nothing and return the launch status. Semantics:
// kernels/cpu/reference_kernels.h.
//
// Padding: `row_limit` is the host-known bound on real rows (0 when a shape
// check failed); the device ForwardMeta (`meta`, device memory, may be null)
// lowers it to num_tokens. Rows at or past the result are written as zeros.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ir/dtype.h"
#include "kernels/kernel_abi.h"

namespace moegraph::cuda {

// out [num_rows, hidden] = table[tokens[t]] (f32/bf16/f16 table [vocab, hidden]),
// zeros for padding rows and ids outside [0, vocab).
cudaError_t LaunchEmbedding(const int32_t* tokens, const void* table, DType table_dtype,
                            int64_t vocab, float* out, int64_t num_rows, int64_t hidden,
                            int64_t row_limit, const ForwardMetaView* meta, cudaStream_t stream);

// y [num_rows, row_size] = RMSNorm over groups of w_size values with weight w.
// With `residual`, first sum = x + residual (written to `sum`), then y =
// RMSNorm(sum). y may alias x.
cudaError_t LaunchRmsNorm(const float* x, const float* residual, const void* w, DType w_dtype,
                          int64_t w_size, float eps, float* sum, float* y, int64_t num_rows,
                          int64_t row_size, int64_t row_limit, const ForwardMetaView* meta,
                          cudaStream_t stream);

enum class Elementwise : int { kAdd = 0, kSiluMul = 1 };

// out = a + b or silu(a) * b over [num_rows, row_size].
cudaError_t LaunchElementwise(Elementwise op, const float* a, const float* b, float* out,
                              int64_t num_rows, int64_t row_size, const ForwardMetaView* meta,
                              cudaStream_t stream);

// out [num_rows, row_size] = x + bias, the f32/bf16/f16 bias [row_size] added to
// every row. A null meta has no padding rule (rows may be anything, as for
// linear: the bias_add op); with meta, rows at or past num_tokens are zeros (the
// mlp op's bias, whose padding rows stay zero). x may alias out.
cudaError_t LaunchBiasAdd(const float* x, const void* bias, DType bias_dtype, float* out,
                          int64_t num_rows, int64_t row_size, const ForwardMetaView* meta,
                          cudaStream_t stream);

// out [num_rows, n] = sigmoid(x[r] . w) * y[r] for x [num_rows, k], the f32/bf16/f16 gate
// weight w [1, k] and y [num_rows, n]; every row (no padding rule).
cudaError_t LaunchSigmoidGateMul(const float* x, const void* w, DType w_dtype, const float* y,
                                 float* out, int64_t num_rows, int64_t k, int64_t n,
                                 cudaStream_t stream);

// out [num_out, hidden]: row s < num_seqs = x[cu_seqlens_q[s + 1] - 1] when that
// row is real (< min(x_row_limit, num_tokens)) and the sequence has tokens;
// zeros otherwise. A null meta gives zeros.
cudaError_t LaunchGatherLast(const float* x, int64_t x_row_limit, float* out, int64_t num_out,
                             int64_t hidden, const ForwardMetaView* meta, cudaStream_t stream);

// Splits x [rows, k] f32 into `num_parts` (1 or 2) half-precision matrices
// stacked as out [num_parts * rows, k] of `half_dtype` (bf16 or f16):
// part 0 = round(x), part 1 = round(x - part 0). Their sum carries ~16
// mantissa bits of x, so one GEMM over the stacked rows followed by
// LaunchGemmEpilogue's sum loses almost nothing against an fp32 GEMM.
cudaError_t LaunchSplitToHalf(const float* x, int64_t rows, int64_t k, DType half_dtype,
                              int num_parts, void* out, cudaStream_t stream);

// Finishes a GEMM chunk of `rows` rows starting at token row `row_base`:
// d_gate / d_up hold [num_parts * rows, n] f32 partial products (part-major),
// y [rows, n] (already offset to row_base) = sum of parts, or with d_up,
// silu(sum gate parts) * (sum up parts). Rows at or past the real-row count
// (row_limit, meta) are zeros.
cudaError_t LaunchGemmEpilogue(const float* d_gate, const float* d_up, int num_parts, int64_t rows,
                               int64_t n, float* y, int64_t row_base, int64_t row_limit,
                               const ForwardMetaView* meta, cudaStream_t stream);

}  // namespace moegraph::cuda
