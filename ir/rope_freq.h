// The one formula for RoPE's inverse frequencies, shared by the frontends
// (ComputeRopeFrequencies, checked against transformers by the rope goldens)
// and every backend's rope kernel (host and CUDA device code), so the scaled
// variants cannot drift apart.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MG_ROPE_FN __host__ __device__ inline
#else
#define MG_ROPE_FN inline
#endif

namespace moegraph {

// rope's `scaling` attribute. Every variant but dynamic NTK (which depends on
// the sequence length, so it is not one table) blends each pair's unscaled
// frequency b_i = theta^(-2i / rotary_dim) between interpolation (b_i / factor)
// and extrapolation (b_i) with a weight w_i in [0, 1]:
//   inv_freq_i = b_i * (w_i + (1 - w_i) / factor).
enum RopeScaling : int64_t {
  kRopeUnscaled = 0,  // w_i = 1
  kRopeLinear = 1,    // w_i = 0 (position interpolation)
  // YaRN's NTK-by-parts: w_i = 1 - clamp((i - ramp_low) / (ramp_high - ramp_low)),
  // the ramp bounds being its correction dims (beta_fast, beta_slow; truncated).
  kRopeYarn = 2,
  // Llama 3.1: w_i = clamp((b_i - ramp_low) / (ramp_high - ramp_low)), the bounds
  // being 2 pi low_freq_factor / original_max and 2 pi high_freq_factor / original_max.
  kRopeLlama3 = 3,
};
inline constexpr int64_t kLastRopeScaling = kRopeLlama3;

MG_ROPE_FN double RopeClamp01(double x) {
  return x < 0 ? 0.0 : (x > 1 ? 1.0 : x);
}

// inv_freq of pair i < rotary_dim / 2.
MG_ROPE_FN double RopeInvFreq(double theta, int64_t rotary_dim, int64_t i, int64_t scaling,
                              double factor, double ramp_low, double ramp_high) {
  const double base =
      1.0 / pow(theta, static_cast<double>(2 * i) / static_cast<double>(rotary_dim));
  double w = 1.0;
  switch (scaling) {
    case kRopeLinear:
      w = 0.0;
      break;
    case kRopeYarn:
      w = 1.0 - RopeClamp01((static_cast<double>(i) - ramp_low) / (ramp_high - ramp_low));
      break;
    case kRopeLlama3:
      w = RopeClamp01((base - ramp_low) / (ramp_high - ramp_low));
      break;
    default:
      return base;
  }
  return base * (w + (1.0 - w) / factor);
}

}  // namespace moegraph
