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

}  // namespace moegraph::testing
