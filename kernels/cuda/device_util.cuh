// Device helpers shared by the CUDA kernel families: weight widening, the
// padding rule read from the device ForwardMeta, block reductions and launch
// arithmetic. Included only by .cu files.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ir/dtype.h"
#include "kernels/kernel_abi.h"

namespace moegraph::cuda {

constexpr int kWarpSize = 32;

// An e4m3fn byte's value, exactly as Fp8E4M3ToF32 (ir/quant.h): bias 7, subnormals
// m * 2^-9, 0x7f / 0xff NaN.
__device__ __forceinline__ float Fp8E4M3ToF32Device(uint8_t v) {
  const uint32_t mag = v & 0x7f, sign = static_cast<uint32_t>(v & 0x80) << 24;
  if (mag == 0x7f) return __uint_as_float(sign | 0x7fc00000u);
  if (mag < 8) return __uint_as_float(sign) + (v & 0x80 ? -1.0f : 1.0f) * mag * (1.0f / 512);
  return __uint_as_float(sign | ((mag << 20) + (120u << 23)));
}

// An FP4 e2m1 code's value (the low 4 bits of c), exactly as Fp4E2M1ToF32: exponent e (bias
// 1), mantissa m: e == 0 is the subnormal m * 0.5, else (1 + m / 2) * 2^(e - 1).
__device__ __forceinline__ float Fp4E2M1ToF32Device(uint32_t c) {
  const uint32_t e = (c >> 1) & 3u, m = c & 1u;
  const float magnitude =
      e == 0 ? 0.5f * m : (1.0f + 0.5f * m) * static_cast<float>(1u << e) * 0.5f;
  return (c & 8u) != 0 ? -magnitude : magnitude;
}

// An e8m0 scale byte's value, exactly as E8M0ToF32: 2^(v - 127), 0xff NaN.
__device__ __forceinline__ float E8M0ToF32Device(uint8_t v) {
  if (v == 0xff) return __uint_as_float(0x7fc00000u);
  if (v == 0) return __uint_as_float(0x00400000u);
  return __uint_as_float(static_cast<uint32_t>(v) << 23);
}

// Element i of a weight of `dtype` widened to f32, bit-exact with the CPU's
// Bf16ToF32 / F16ToF32 (0 for other dtypes, as ref_detail::LoadWeight). fp8e4m3 and mxfp4
// (element i in byte i / 2, low nibble first) are decoded unscaled: the caller multiplies by
// the element's block scale.
__device__ __forceinline__ float LoadWeight(const void* w, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kFp8E4M3:
      return Fp8E4M3ToF32Device(static_cast<const uint8_t*>(w)[i]);
    case DType::kMxfp4: {
      const uint32_t byte = static_cast<const uint8_t*>(w)[i >> 1];
      return Fp4E2M1ToF32Device((i & 1) != 0 ? byte >> 4 : byte);
    }
    case DType::kF32:
      return static_cast<const float*>(w)[i];
    case DType::kBF16:
      return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(w)[i]) << 16);
    case DType::kF16:
      return __half2float(__ushort_as_half(static_cast<const uint16_t*>(w)[i]));
    default:
      return 0.0f;
  }
}

__device__ __forceinline__ float Silu(float a) {
  return a / (1.0f + expf(-a));
}

// Rows [0, result) of a tensor whose rows stand for tokens row_offset.. are
// real: min(row_limit, num_tokens - row_offset), clamped at 0. A null meta
// means every row up to row_limit is real (the reference's rule).
__device__ __forceinline__ int64_t NumRealRows(const ForwardMetaView* meta, int64_t row_limit,
                                               int64_t row_offset = 0) {
  if (meta == nullptr) return row_limit;
  int64_t real = static_cast<int64_t>(meta->num_tokens) - row_offset;
  if (real < 0) real = 0;
  return real < row_limit ? real : row_limit;
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to
// every thread. Deterministic: a fixed shuffle tree, then warp 0 over the
// per-warp sums. `shared` holds 32 floats; the call ends with a barrier so
// `shared` may be reused right after.
__device__ __forceinline__ float BlockSum(float v, float* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  v = WarpSum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < num_warps ? shared[lane] : 0.0f;
    s = WarpSum(s);
    if (lane == 0) shared[0] = s;
  }
  __syncthreads();
  const float total = shared[0];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float BlockMax(float v, float* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  v = WarpMax(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < num_warps ? shared[lane] : -INFINITY;
    s = WarpMax(s);
    if (lane == 0) shared[0] = s;
  }
  __syncthreads();
  const float total = shared[0];
  __syncthreads();
  return total;
}

inline unsigned int CeilDiv(int64_t a, int64_t b) {
  return static_cast<unsigned int>((a + b - 1) / b);
}

// Grid size for a grid-stride loop over n elements.
inline unsigned int GridFor(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

// Largest grid.y / grid.z a launch may use.
constexpr int64_t kMaxGridY = 65535;

}  // namespace moegraph::cuda
