// Reference RMS norms: RefRmsNorm and RefAddRmsNorm.
#include <cmath>

#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::LoadWeight;

// Normalises `row_size` values of x into y in groups of `w_size`; y may alias x.
void RmsNormRow(const float* x, const TensorArg& w, int64_t row_size, float eps, float* y) {
  const int64_t w_size = w.numel();
  for (int64_t g = 0; g < row_size; g += w_size) {
    float sum_sq = 0.0f;
    for (int64_t i = 0; i < w_size; ++i)
      sum_sq += x[g + i] * x[g + i];
    const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(w_size) + eps);
    for (int64_t i = 0; i < w_size; ++i) {
      y[g + i] = (x[g + i] * inv_rms) * LoadWeight(w.data, w.dtype, i);
    }
  }
}

void CheckNormWeight(const char* kernel, const TensorArg& x, const TensorArg& w) {
  const int64_t w_size = w.numel();
  MG_KERNEL_CONTRACT(
      ref_detail::IsWeightDType(w.dtype) && w_size > 0 && ref_detail::RowSize(x) % w_size == 0,
      kernel, "weight must be f32/bf16/f16 with a size dividing x's row");
}

}  // namespace

void RefRmsNorm(const KernelArgs& args) {
  const RmsNormParams& params = Params<RmsNormParams>(args);
  const TensorArg& x = args.in[0];
  const TensorArg& w = args.in[1];
  float* y = args.out[0].as<float>();
  const int64_t num_rows = ref_detail::NumRows(x);
  const int64_t row_size = ref_detail::RowSize(x);
  CheckNormWeight("rms_norm", x, w);
  const float eps = static_cast<float>(params.eps);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* y_row = y + r * row_size;
      RmsNormRow(x.as<const float>() + r * row_size, w, row_size, eps, y_row);
    }
  });
}

void RefAddRmsNorm(const KernelArgs& args) {
  const RmsNormParams& params = Params<RmsNormParams>(args);
  const TensorArg& x = args.in[0];
  const float* residual = args.in[1].as<const float>();
  const TensorArg& w = args.in[2];
  float* sum = args.out[0].as<float>();
  float* y = args.out[1].as<float>();
  const int64_t num_rows = ref_detail::NumRows(x);
  const int64_t row_size = ref_detail::RowSize(x);
  CheckNormWeight("add_rms_norm", x, w);
  const float eps = static_cast<float>(params.eps);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* sum_row = sum + r * row_size;
      float* y_row = y + r * row_size;
      const float* x_row = x.as<const float>() + r * row_size;
      const float* residual_row = residual + r * row_size;
      for (int64_t c = 0; c < row_size; ++c)
        sum_row[c] = x_row[c] + residual_row[c];
      RmsNormRow(sum_row, w, row_size, eps, y_row);
    }
  });
}

}  // namespace moegraph
