// Optimised dense matmuls: linear and linear_silu_mul (GEMV tiles for decode
// rows and the LM head, integer dot products for their int8 / int4 weights, packed GEMM for
// prefill rows).

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/simd_gemm.h"
#include "kernels/cpu/simd_q8.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using simd::MatmulBlock;
using simd::WType;

template <WType W>
void DenseWorker(const MatmulBlock& b, int64_t num_rows, int t, int num_threads) {
  const int64_t panel_cols = simd::PanelCols(b);
  int64_t q0, q1, c0, c1;
  simd::SplitRange((b.n + panel_cols - 1) / panel_cols, t, num_threads, &q0, &q1);
  simd::MatmulPanels<W>(b, q0, q1);
  simd::PanelColumns(b, q0, q1, &c0, &c1);
  for (int64_t r = b.num_rows; r < num_rows; ++r) {
    std::fill(b.out + r * b.n + c0, b.out + r * b.n + c1, 0.0f);
  }
}

// Rows [0, b.num_rows) computed, rows up to num_rows zeroed, columns split
// over the threads by packed panel.
void RunDense(const MatmulBlock& b, int64_t num_rows, WType wtype, int num_threads) {
  ParallelShares(num_threads, [&](int t, int nt) {
    switch (wtype) {
      case WType::kF32:
        DenseWorker<WType::kF32>(b, num_rows, t, nt);
        break;
      case WType::kBF16:
        DenseWorker<WType::kBF16>(b, num_rows, t, nt);
        break;
      case WType::kF16:
        DenseWorker<WType::kF16>(b, num_rows, t, nt);
        break;
      case WType::kFp8:
        DenseWorker<WType::kFp8>(b, num_rows, t, nt);
        break;
      case WType::kMxfp4:
        DenseWorker<WType::kMxfp4>(b, num_rows, t, nt);
        break;
      case WType::kInt8:
        DenseWorker<WType::kInt8>(b, num_rows, t, nt);
        break;
      case WType::kInt4:
        DenseWorker<WType::kInt4>(b, num_rows, t, nt);
        break;
    }
  });
}

bool WeightOk(const TensorArg& w, int64_t n, int64_t k) {
  return w.data != nullptr && w.rank == 2 && w.shape[0] == n && w.shape[1] == k &&
         (!w.quant.quantized() || w.scales != nullptr);
}

// Runs linear (num_weights 1) or linear_silu_mul (2); false when the
// reference must run instead.
bool RunLinear(const KernelArgs& args, int num_weights) {
  const TensorArg& wg = args.in[1];
  MatmulBlock b;
  b.n = b.out_stride = ref_detail::RowSize(args.out[0]);
  b.k = ref_detail::RowSize(args.in[0]);
  WType wtype;
  if (!simd::ToMatmulWType(wg, &wtype) || !WeightOk(wg, b.n, b.k)) return false;
  b.scales = simd::ScalesOf(wg, wg.scales, nullptr);
  if (num_weights == 2) {
    const TensorArg& wu = args.in[2];
    if (wu.dtype != wg.dtype || wu.quant != wg.quant || !WeightOk(wu, b.n, b.k)) return false;
    b.wu = wu.data;
    b.scales.SetMatrices(wg.scales, wu.scales);
  }
  b.x = args.in[0].as<const float>();
  b.wg = wg.data;
  b.out = args.out[0].as<float>();
  const int64_t num_rows = ref_detail::NumRows(args.out[0]);
  b.num_rows = num_rows;  // linear has no ForwardMeta: every row is real
  b.q8 = simd::RoundedInputs(wg.quant, wtype, b.x, num_rows, b.k, args.num_threads);
  RunDense(b, num_rows, wtype, args.num_threads);
  return true;
}

}  // namespace

void OptLinear(const KernelArgs& args) {
  if (!RunLinear(args, 1)) RefLinear(args);
}

void OptLinearSiluMul(const KernelArgs& args) {
  if (!RunLinear(args, 2)) RefLinearSiluMul(args);
}

}  // namespace moegraph
