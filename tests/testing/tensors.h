// Tensor fixtures shared by the kernel, cross-backend and benchmark code: seeded uniform
// random values and TensorArg views of host buffers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/kernel_abi.h"

namespace moegraph::testing {

// n values uniform in [-scale, scale), the same sequence for the same seed on every platform
// that has std::mt19937 and IEEE floats.
inline std::vector<float> RandomFloats(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v)
    x = dist(rng);
  return v;
}

// A kernel argument viewing `data` (not owned) as `dtype` `shape` (row-major, rank <= 4).
inline TensorArg HostArg(const void* data, DType dtype, const std::vector<int64_t>& shape) {
  TensorArg arg;
  arg.data = const_cast<void*>(data);
  arg.dtype = dtype;
  arg.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), arg.shape);
  return arg;
}

// Every matrix of quantized test weight `w` (Fp8BlockWeight, Mxfp4Weight: experts, n, k and
// At(e, r, c)) dequantized: [max(experts, 1), n, k] f32.
template <typename W>
std::vector<float> DequantizedOf(const W& w) {
  const int64_t m = std::max<int64_t>(w.experts, 1);
  std::vector<float> out(static_cast<size_t>(m * w.n * w.k));
  for (int64_t e = 0; e < m; ++e) {
    for (int64_t r = 0; r < w.n; ++r) {
      for (int64_t c = 0; c < w.k; ++c)
        out[static_cast<size_t>((e * w.n + r) * w.k + c)] = w.At(e, r, c);
    }
  }
  return out;
}

// Its kernel argument: `dtype` [n, k] with `scales`, or [experts, n, k] with per-expert data
// and scale pointers.
template <typename W>
TensorArg QuantizedArg(const W& w, DType dtype) {
  TensorArg a = w.experts == 0 ? HostArg(w.bytes.data(), dtype, {w.n, w.k})
                               : HostArg(w.bytes.data(), dtype, {w.experts, w.n, w.k});
  a.quant = w.quant;
  a.scales = w.scales.data();
  if (w.experts > 0) {
    a.expert_data = w.data_ptrs.data();
    a.expert_scales = w.scale_ptrs.data();
  }
  return a;
}

// A block-quantized fp8 weight (QuantScheme::kFp8Block): `experts` matrices [n, k] (experts 0:
// one plain [n, k] weight) of seeded random e4m3 bytes (every code but NaN, so subnormals,
// zeros and +-448 occur) with positive scales [ceil(n / block_rows), ceil(k / block_cols)]
// per matrix, and the f32 values a kernel must see. With `scheme` kInt8Block the same bytes
// are int8 codes (every value in [-128, 127]) under the same block scales.
struct Fp8BlockWeight {
  int64_t experts = 0, n = 0, k = 0;
  WeightQuant quant;
  std::vector<uint8_t> bytes;  // [max(experts, 1), n, k]
  std::vector<float> scales;   // [max(experts, 1), ScaleRows(n), ScaleCols(k)]
  std::vector<const void*> data_ptrs, scale_ptrs;

  Fp8BlockWeight(int64_t num_experts, int64_t rows, int64_t cols, int32_t block_rows,
                 int32_t block_cols, uint32_t seed, float scale = 1.0f,
                 QuantScheme scheme = QuantScheme::kFp8Block)
      : experts(num_experts), n(rows), k(cols), quant{scheme, block_rows, block_cols} {
    const int64_t m = std::max<int64_t>(experts, 1);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    bytes.resize(static_cast<size_t>(m * n * k));
    for (uint8_t& b : bytes) {
      b = static_cast<uint8_t>(byte(rng));
      if (scheme == QuantScheme::kFp8Block && (b & 0x7f) == 0x7f) b ^= 0x01;  // NaN -> +-448
    }
    std::uniform_real_distribution<float> s(0.5f, 1.5f);
    scales.resize(static_cast<size_t>(m * ScaleRows() * ScaleCols()));
    for (float& v : scales)
      v = s(rng) * scale / (scheme == QuantScheme::kFp8Block ? 448.0f : 127.0f);
    for (int64_t e = 0; e < m; ++e) {
      data_ptrs.push_back(bytes.data() + e * n * k);
      scale_ptrs.push_back(scales.data() + e * ScaleRows() * ScaleCols());
    }
  }
  int64_t ScaleRows() const { return quant.ScaleRows(n); }
  int64_t ScaleCols() const { return quant.ScaleCols(k); }
  // Element (r, c) of matrix e, dequantized.
  float At(int64_t e, int64_t r, int64_t c) const {
    const uint8_t byte = bytes[static_cast<size_t>((e * n + r) * k + c)];
    const float v = quant.scheme == QuantScheme::kInt8Block
                        ? static_cast<float>(static_cast<int8_t>(byte))
                        : Fp8E4M3ToF32(byte);
    return v * scales[static_cast<size_t>((e * ScaleRows() + r / quant.block_rows) * ScaleCols() +
                                          c / quant.block_cols)];
  }
  // Every matrix dequantized ([max(experts, 1), n, k] f32) and the kernel argument.
  std::vector<float> Dequantized() const { return DequantizedOf(*this); }
  TensorArg arg() const { return QuantizedArg(*this, QuantWeightDType(quant.scheme)); }
};

// An MXFP4 weight (QuantScheme::kMxfp4): `experts` matrices [n, k] (experts 0: one plain [n, k]
// weight; k % 32 == 0) of seeded random bytes (every fp4 code, both nibbles) packed two codes a
// byte, with e8m0 scales [n, k / 32] per matrix drawn from [scale_lo, scale_hi] (2^-7 .. 2^3
// by default), and the f32 values a kernel must see.
struct Mxfp4Weight {
  int64_t experts = 0, n = 0, k = 0;
  WeightQuant quant{QuantScheme::kMxfp4, 1, 32};
  std::vector<uint8_t> bytes;   // [max(experts, 1), n, k / 2]
  std::vector<uint8_t> scales;  // [max(experts, 1), n, k / 32]
  std::vector<const void*> data_ptrs, scale_ptrs;

  Mxfp4Weight(int64_t num_experts, int64_t rows, int64_t cols, uint32_t seed, int scale_lo = 120,
              int scale_hi = 130)
      : experts(num_experts), n(rows), k(cols) {
    const int64_t m = std::max<int64_t>(experts, 1);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255), scale(scale_lo, scale_hi);
    bytes.resize(static_cast<size_t>(m * n * k / 2));
    for (uint8_t& b : bytes)
      b = static_cast<uint8_t>(byte(rng));
    scales.resize(static_cast<size_t>(m * n * k / 32));
    for (uint8_t& v : scales)
      v = static_cast<uint8_t>(scale(rng));
    for (int64_t e = 0; e < m; ++e) {
      data_ptrs.push_back(bytes.data() + e * n * k / 2);
      scale_ptrs.push_back(scales.data() + e * n * k / 32);
    }
  }
  // Element (r, c) of matrix e, dequantized.
  float At(int64_t e, int64_t r, int64_t c) const {
    const uint8_t* row = bytes.data() + (e * n + r) * (k / 2);
    return Mxfp4At(row, c) *
           E8M0ToF32(scales[static_cast<size_t>((e * n + r) * (k / 32) + c / 32)]);
  }
  // Every matrix dequantized ([max(experts, 1), n, k] f32) and the kernel argument.
  std::vector<float> Dequantized() const { return DequantizedOf(*this); }
  TensorArg arg() const { return QuantizedArg(*this, DType::kMxfp4); }
};

// An int4 weight (QuantScheme::kInt4Block, as compile-model --weights int4 writes it):
// `experts` matrices [n, k] (experts 0: one plain [n, k] weight; k % 32 == 0) of seeded random
// bytes (every i4 code in both nibbles) with f32 scales [n, ceil(k / block_cols)] per matrix of
// either sign (Q4_0's d = m / -8 is negative for a positive m), and the f32 values a kernel
// must see.
struct Int4BlockWeight {
  int64_t experts = 0, n = 0, k = 0;
  WeightQuant quant;
  std::vector<uint8_t> bytes;  // [max(experts, 1), n, k / 2]
  std::vector<float> scales;   // [max(experts, 1), n, ScaleCols(k)]
  std::vector<const void*> data_ptrs, scale_ptrs;

  Int4BlockWeight(int64_t num_experts, int64_t rows, int64_t cols, int32_t block_cols,
                  uint32_t seed, float scale = 0.5f)
      : experts(num_experts), n(rows), k(cols), quant{QuantScheme::kInt4Block, 1, block_cols} {
    const int64_t m = std::max<int64_t>(experts, 1);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    bytes.resize(static_cast<size_t>(m * n * k / 2));
    for (uint8_t& b : bytes)
      b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> s(0.5f, 1.5f);
    std::bernoulli_distribution negative(0.5);
    scales.resize(static_cast<size_t>(m * n * ScaleCols()));
    for (float& v : scales)
      v = s(rng) * scale / 8.0f * (negative(rng) ? -1.0f : 1.0f);
    for (int64_t e = 0; e < m; ++e) {
      data_ptrs.push_back(bytes.data() + e * n * k / 2);
      scale_ptrs.push_back(scales.data() + e * n * ScaleCols());
    }
  }
  int64_t ScaleCols() const { return quant.ScaleCols(k); }
  // Element (r, c) of matrix e, dequantized.
  float At(int64_t e, int64_t r, int64_t c) const {
    const uint8_t* row = bytes.data() + (e * n + r) * (k / 2);
    return static_cast<float>(Int4At(row, c)) *
           scales[static_cast<size_t>((e * n + r) * ScaleCols() + c / quant.block_cols)];
  }
  // Every matrix dequantized ([max(experts, 1), n, k] f32) and the kernel argument.
  std::vector<float> Dequantized() const { return DequantizedOf(*this); }
  TensorArg arg() const { return QuantizedArg(*this, DType::kI4); }
};

}  // namespace moegraph::testing
