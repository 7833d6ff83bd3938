// Optimised RMS norms: rms_norm and add_rms_norm (vectorised sum of squares).
#include <cmath>
#include <cstdint>

#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using simd::WElem;
using simd::WType;

// Below this many elements a norm runs on one thread (fork/join costs more).
constexpr int64_t kMinParallelElements = 1 << 14;

// y = x / sqrt(mean(x^2) + eps) * w over groups of w_size; y may alias x.
// With `residual`, x + residual is written to `sum` first and normalised.
template <WType W>
MG_AVX2 void NormRow(const float* x, const float* residual, float* sum, const WElem<W>* w,
                     int64_t row_size, int64_t w_size, float eps, float* y) {
  if (residual) {
    int64_t c = 0;
    for (; c + 8 <= row_size; c += 8) {
      _mm256_storeu_ps(sum + c,
                       _mm256_add_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(residual + c)));
    }
    for (; c < row_size; ++c)
      sum[c] = x[c] + residual[c];
    x = sum;
  }
  const int64_t w8 = w_size & ~int64_t{7};
  for (int64_t g = 0; g < row_size; g += w_size) {
    const float* xg = x + g;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= w8; i += 16) {
      const __m256 a = _mm256_loadu_ps(xg + i), b = _mm256_loadu_ps(xg + i + 8);
      acc0 = _mm256_fmadd_ps(a, a, acc0);
      acc1 = _mm256_fmadd_ps(b, b, acc1);
    }
    for (; i < w8; i += 8) {
      const __m256 a = _mm256_loadu_ps(xg + i);
      acc0 = _mm256_fmadd_ps(a, a, acc0);
    }
    float sum_sq = simd::Hsum(_mm256_add_ps(acc0, acc1));
    for (; i < w_size; ++i)
      sum_sq += xg[i] * xg[i];
    const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(w_size) + eps);
    const __m256 inv = _mm256_set1_ps(inv_rms);
    float* yg = y + g;
    for (i = 0; i < w8; i += 8) {
      const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xg + i), inv);
      _mm256_storeu_ps(yg + i, _mm256_mul_ps(v, simd::Load8<W>(w + i)));
    }
    for (; i < w_size; ++i)
      yg[i] = (xg[i] * inv_rms) * simd::Load1<W>(w + i);
  }
}

// Rows of in[0] (plus in[1] when `with_residual`) normalised by the weight
// in[last]; false when the reference must run instead.
bool RunNorm(const KernelArgs& args, bool with_residual) {
  const RmsNormParams& params = Params<RmsNormParams>(args);
  const TensorArg& x = args.in[0];
  const TensorArg& w = args.in[with_residual ? 2 : 1];
  const int64_t num_rows = ref_detail::NumRows(x);
  const int64_t row_size = ref_detail::RowSize(x);
  const int64_t w_size = w.numel();
  WType wtype;
  if (!simd::ToWType(w.dtype, &wtype) || w_size <= 0 || row_size % w_size != 0) return false;
  const float eps = static_cast<float>(params.eps);
  const float* residual = with_residual ? args.in[1].as<const float>() : nullptr;
  float* sum = with_residual ? args.out[0].as<float>() : nullptr;
  float* y = args.out[with_residual ? 1 : 0].as<float>();
  const bool parallel = num_rows * row_size >= kMinParallelElements;
  ParallelFor(parallel ? args.num_threads : 1, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t offset = r * row_size;
      const float* x_row = x.as<const float>() + offset;
      const float* res_row = residual ? residual + offset : nullptr;
      float* sum_row = sum ? sum + offset : nullptr;
      switch (wtype) {
        case WType::kF32:
          NormRow<WType::kF32>(x_row, res_row, sum_row, static_cast<const float*>(w.data), row_size,
                               w_size, eps, y + offset);
          break;
        case WType::kBF16:
          NormRow<WType::kBF16>(x_row, res_row, sum_row, static_cast<const uint16_t*>(w.data),
                                row_size, w_size, eps, y + offset);
          break;
        case WType::kF16:
          NormRow<WType::kF16>(x_row, res_row, sum_row, static_cast<const uint16_t*>(w.data),
                               row_size, w_size, eps, y + offset);
          break;
        case WType::kFp8:  // ToWType never gives these: norm weights are not quantized
        case WType::kMxfp4:
        case WType::kInt8:
        case WType::kInt4:
          break;
      }
    }
  });
  return true;
}

}  // namespace

void OptRmsNorm(const KernelArgs& args) {
  if (!RunNorm(args, /*with_residual=*/false)) RefRmsNorm(args);
}

void OptAddRmsNorm(const KernelArgs& args) {
  if (!RunNorm(args, /*with_residual=*/true)) RefAddRmsNorm(args);
}

}  // namespace moegraph
