// CUDA dense kernels (see dense.cuh). Each mirrors its reference loop in
// kernels/cpu/ref_dense.cc / ref_norm.cc / ref_attention.cc (gather_last).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/dense.cuh"
#include "kernels/cuda/device_util.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row, threads over columns.
__global__ void EmbeddingKernel(const int32_t* tokens, const void* table, DType table_dtype,
                                int64_t vocab, float* out, int64_t hidden, int64_t row_limit,
                                const ForwardMetaView* meta) {
  const int64_t t = blockIdx.x;
  const int64_t num_real = NumRealRows(meta, row_limit);
  const int64_t id = t < num_real ? tokens[t] : -1;
  float* row = out + t * hidden;
  const bool valid = id >= 0 && id < vocab;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    row[c] = valid ? LoadWeight(table, table_dtype, id * hidden + c) : 0.0f;
  }
}

// One block per (row, weight group). Pass 1 sums squares (and writes the
// residual sum); pass 2 scales. Each thread reads back only the elements it
// wrote, so y may alias x.
__global__ void RmsNormKernel(const float* x, const float* residual, const void* w, DType w_dtype,
                              int64_t w_size, float eps, float* sum, float* y, int64_t row_size,
                              int64_t row_limit, const ForwardMetaView* meta) {
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  const int64_t g = static_cast<int64_t>(blockIdx.y) * w_size;
  const int64_t base = r * row_size + g;
  if (r >= NumRealRows(meta, row_limit)) {
    for (int64_t i = threadIdx.x; i < w_size; i += blockDim.x) {
      y[base + i] = 0.0f;
      if (sum != nullptr) sum[base + i] = 0.0f;
    }
    return;
  }
  const float* src = x;
  if (residual != nullptr) {
    for (int64_t i = threadIdx.x; i < w_size; i += blockDim.x) {
      sum[base + i] = x[base + i] + residual[base + i];
    }
    src = sum;
  }
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < w_size; i += blockDim.x) {
    const float v = src[base + i];
    sum_sq += v * v;
  }
  sum_sq = BlockSum(sum_sq, shared);
  const float inv_rms = 1.0f / sqrtf(sum_sq / static_cast<float>(w_size) + eps);
  for (int64_t i = threadIdx.x; i < w_size; i += blockDim.x) {
    y[base + i] = (src[base + i] * inv_rms) * LoadWeight(w, w_dtype, i);
  }
}

__global__ void ElementwiseKernel(Elementwise op, const float* a, const float* b, float* out,
                                  int64_t num_rows, int64_t row_size, const ForwardMetaView* meta) {
  const int64_t n = num_rows * row_size;
  const int64_t num_real = NumRealRows(meta, num_rows);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = 0.0f;
    if (i / row_size < num_real) v = op == Elementwise::kAdd ? a[i] + b[i] : Silu(a[i]) * b[i];
    out[i] = v;
  }
}

__global__ void BiasAddKernel(const float* x, const void* bias, DType bias_dtype, float* out,
                              int64_t num_rows, int64_t row_size, const ForwardMetaView* meta) {
  const int64_t n = num_rows * row_size;
  const int64_t num_real = NumRealRows(meta, num_rows);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = i / row_size < num_real ? x[i] + LoadWeight(bias, bias_dtype, i % row_size) : 0.0f;
  }
}

// One block per row: the block sums x[r] . w, then scales y[r]. Every read of x
// precedes BlockSum's barriers, so out may alias x or y.
__global__ void SigmoidGateMulKernel(const float* x, const void* w, DType w_dtype, const float* y,
                                     float* out, int64_t k, int64_t n) {
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    dot += x[r * k + i] * LoadWeight(w, w_dtype, i);
  }
  dot = BlockSum(dot, shared);
  const float gate = 1.0f / (1.0f + expf(-dot));
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
    out[r * n + c] = gate * y[r * n + c];
  }
}

__global__ void GatherLastKernel(const float* x, int64_t x_row_limit, float* out, int64_t hidden,
                                 const ForwardMetaView* meta) {
  const int64_t s = blockIdx.x;
  int64_t last = -1;
  if (meta != nullptr && s < meta->num_seqs) {
    const int64_t num_real = NumRealRows(meta, x_row_limit);
    const int64_t begin = meta->cu_seqlens_q[s];
    const int64_t end = meta->cu_seqlens_q[s + 1];
    if (end > begin && end - 1 >= 0 && end - 1 < num_real) last = end - 1;
  }
  float* row = out + s * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    row[c] = last < 0 ? 0.0f : x[last * hidden + c];
  }
}

template <typename Half>
__device__ __forceinline__ Half ToHalf(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 ToHalf<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half ToHalf<__half>(float v) {
  return __float2half_rn(v);
}
template <typename Half>
__device__ __forceinline__ float FromHalf(Half v);
template <>
__device__ __forceinline__ float FromHalf<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float FromHalf<__half>(__half v) {
  return __half2float(v);
}

template <typename Half>
__global__ void SplitToHalfKernel(const float* x, int64_t n, int num_parts, Half* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = x[i];
    const Half hi = ToHalf<Half>(v);
    out[i] = hi;
    if (num_parts > 1) out[n + i] = ToHalf<Half>(v - FromHalf<Half>(hi));
  }
}

__global__ void GemmEpilogueKernel(const float* d_gate, const float* d_up, int num_parts,
                                   int64_t rows, int64_t n, float* y, int64_t row_base,
                                   int64_t row_limit, const ForwardMetaView* meta) {
  const int64_t total = rows * n;
  const int64_t part_stride = rows * n;
  const int64_t num_real = NumRealRows(meta, row_limit);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = 0.0f;
    if (row_base + i / n < num_real) {
      float g = d_gate[i];
      for (int p = 1; p < num_parts; ++p)
        g += d_gate[p * part_stride + i];
      if (d_up == nullptr) {
        v = g;
      } else {
        float u = d_up[i];
        for (int p = 1; p < num_parts; ++p)
          u += d_up[p * part_stride + i];
        v = Silu(g) * u;
      }
    }
    y[i] = v;
  }
}

int ThreadsFor(int64_t n) {
  // A multiple of 32, at most kThreads, at least one warp.
  const int64_t rounded = (n + kWarpSize - 1) / kWarpSize * kWarpSize;
  return static_cast<int>(rounded < kWarpSize ? kWarpSize
                                              : (rounded > kThreads ? kThreads : rounded));
}

}  // namespace

cudaError_t LaunchEmbedding(const int32_t* tokens, const void* table, DType table_dtype,
                            int64_t vocab, float* out, int64_t num_rows, int64_t hidden,
                            int64_t row_limit, const ForwardMetaView* meta, cudaStream_t stream) {
  if (num_rows <= 0 || hidden <= 0) return cudaSuccess;
  EmbeddingKernel<<<static_cast<unsigned int>(num_rows), ThreadsFor(hidden), 0, stream>>>(
      tokens, table, table_dtype, vocab, out, hidden, row_limit, meta);
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(const float* x, const float* residual, const void* w, DType w_dtype,
                          int64_t w_size, float eps, float* sum, float* y, int64_t num_rows,
                          int64_t row_size, int64_t row_limit, const ForwardMetaView* meta,
                          cudaStream_t stream) {
  if (num_rows <= 0 || row_size <= 0) return cudaSuccess;
  if (w_size <= 0 || row_size % w_size != 0) {
    // The reference zeroes every row when the weight does not tile the row.
    cudaError_t e = cudaMemsetAsync(y, 0, num_rows * row_size * sizeof(float), stream);
    if (e == cudaSuccess && sum != nullptr) {
      e = cudaMemsetAsync(sum, 0, num_rows * row_size * sizeof(float), stream);
    }
    return e;
  }
  const int64_t num_groups = row_size / w_size;
  if (num_groups > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned int>(num_rows), static_cast<unsigned int>(num_groups));
  RmsNormKernel<<<grid, ThreadsFor(w_size), 0, stream>>>(x, residual, w, w_dtype, w_size, eps, sum,
                                                         y, row_size, row_limit, meta);
  return cudaGetLastError();
}

cudaError_t LaunchElementwise(Elementwise op, const float* a, const float* b, float* out,
                              int64_t num_rows, int64_t row_size, const ForwardMetaView* meta,
                              cudaStream_t stream) {
  const int64_t n = num_rows * row_size;
  if (n <= 0) return cudaSuccess;
  ElementwiseKernel<<<GridFor(n, kThreads), kThreads, 0, stream>>>(op, a, b, out, num_rows,
                                                                   row_size, meta);
  return cudaGetLastError();
}

cudaError_t LaunchBiasAdd(const float* x, const void* bias, DType bias_dtype, float* out,
                          int64_t num_rows, int64_t row_size, const ForwardMetaView* meta,
                          cudaStream_t stream) {
  const int64_t n = num_rows * row_size;
  if (n <= 0) return cudaSuccess;
  BiasAddKernel<<<GridFor(n, kThreads), kThreads, 0, stream>>>(x, bias, bias_dtype, out, num_rows,
                                                               row_size, meta);
  return cudaGetLastError();
}

cudaError_t LaunchSigmoidGateMul(const float* x, const void* w, DType w_dtype, const float* y,
                                 float* out, int64_t num_rows, int64_t k, int64_t n,
                                 cudaStream_t stream) {
  if (num_rows <= 0 || n <= 0) return cudaSuccess;
  SigmoidGateMulKernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(x, w, w_dtype, y,
                                                                                 out, k, n);
  return cudaGetLastError();
}

cudaError_t LaunchGatherLast(const float* x, int64_t x_row_limit, float* out, int64_t num_out,
                             int64_t hidden, const ForwardMetaView* meta, cudaStream_t stream) {
  if (num_out <= 0 || hidden <= 0) return cudaSuccess;
  GatherLastKernel<<<static_cast<unsigned int>(num_out), ThreadsFor(hidden), 0, stream>>>(
      x, x_row_limit, out, hidden, meta);
  return cudaGetLastError();
}

cudaError_t LaunchSplitToHalf(const float* x, int64_t rows, int64_t k, DType half_dtype,
                              int num_parts, void* out, cudaStream_t stream) {
  const int64_t n = rows * k;
  if (n <= 0) return cudaSuccess;
  if (num_parts < 1 || num_parts > 2) return cudaErrorInvalidValue;
  if (half_dtype == DType::kBF16) {
    SplitToHalfKernel<__nv_bfloat16><<<GridFor(n, kThreads), kThreads, 0, stream>>>(
        x, n, num_parts, static_cast<__nv_bfloat16*>(out));
  } else if (half_dtype == DType::kF16) {
    SplitToHalfKernel<__half>
        <<<GridFor(n, kThreads), kThreads, 0, stream>>>(x, n, num_parts, static_cast<__half*>(out));
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchGemmEpilogue(const float* d_gate, const float* d_up, int num_parts, int64_t rows,
                               int64_t n, float* y, int64_t row_base, int64_t row_limit,
                               const ForwardMetaView* meta, cudaStream_t stream) {
  const int64_t total = rows * n;
  if (total <= 0) return cudaSuccess;
  GemmEpilogueKernel<<<GridFor(total, kThreads), kThreads, 0, stream>>>(
      d_gate, d_up, num_parts, rows, n, y, row_base, row_limit, meta);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
