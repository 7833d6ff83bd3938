// Optimised kernels of GPT-OSS's experts: the [in, out] (transformers' [E, K, N]) grouped and
// expert-batched GEMMs with their biases, and the clamped SwiGLU.
//
// A [K, N] weight is read row by row: each k broadcasts x[r, k] against a contiguous strip of
// w[k, c0 : c0 + 16], so a strip is streamed once per group of up to 4 activation rows and the
// accumulators stay in registers. Work units are (expert or slot, column strip) pairs.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::NumRows;
using ref_detail::RowSize;
using simd::Load1;
using simd::Load8;
using simd::WElem;
using simd::WType;

// Output columns per work unit, and activation rows per register tile.
constexpr int64_t kStripCols = 16;
constexpr int kTileRows = 4;

template <typename Fn>
void ForWType(WType wtype, Fn&& fn) {
  switch (wtype) {
    case WType::kF32:
      fn(std::integral_constant<WType, WType::kF32>{});
      break;
    case WType::kBF16:
      fn(std::integral_constant<WType, WType::kBF16>{});
      break;
    case WType::kF16:
      fn(std::integral_constant<WType, WType::kF16>{});
      break;
  }
}

// out[r][c0 : c0 + 8 V) = x[r] w[:, c0 : c0 + 8 V) for R rows (in k order, one FMA chain per
// element, as the reference sums).
template <WType W, int R, int V>
MG_AVX2 void KnTile(const float* const* x, const WElem<W>* w, int64_t k, int64_t n, int64_t c0,
                    float* const* out) {
  __m256 acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v)
      acc[r][v] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const WElem<W>* row = w + i * n + c0;
    __m256 wv[V];
    for (int v = 0; v < V; ++v)
      wv[v] = Load8<W>(row + 8 * v);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_set1_ps(x[r][i]);
      for (int v = 0; v < V; ++v)
        acc[r][v] = _mm256_fmadd_ps(xv, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v)
      _mm256_storeu_ps(out[r] + c0 + 8 * v, acc[r][v]);
}

template <WType W, int V>
MG_AVX2 void KnTileRows(const float* const* x, int rows, const WElem<W>* w, int64_t k, int64_t n,
                        int64_t c0, float* const* out) {
  switch (rows) {
    case 1:
      return KnTile<W, 1, V>(x, w, k, n, c0, out);
    case 2:
      return KnTile<W, 2, V>(x, w, k, n, c0, out);
    case 3:
      return KnTile<W, 3, V>(x, w, k, n, c0, out);
    default:
      return KnTile<W, 4, V>(x, w, k, n, c0, out);
  }
}

// Columns [c0, c1) of `rows` (<= kTileRows) activation rows times expert weight w [K, N], plus
// the bias row (null: none).
template <WType W>
MG_AVX2 void KnColumns(const float* const* x, int rows, const WElem<W>* w, int64_t k, int64_t n,
                       int64_t c0, int64_t c1, const void* bias, DType bias_dtype,
                       float* const* out) {
  int64_t c = c0;
  for (; c + 16 <= c1; c += 16)
    KnTileRows<W, 2>(x, rows, w, k, n, c, out);
  for (; c + 8 <= c1; c += 8)
    KnTileRows<W, 1>(x, rows, w, k, n, c, out);
  for (; c < c1; ++c) {
    for (int r = 0; r < rows; ++r) {
      float acc = 0.0f;
      for (int64_t i = 0; i < k; ++i)
        acc += x[r][i] * Load1<W>(w + i * n + c);
      out[r][c] = acc;
    }
  }
  if (bias == nullptr) return;
  for (int r = 0; r < rows; ++r)
    for (int64_t j = c0; j < c1; ++j)
      out[r][j] += ref_detail::LoadWeight(bias, bias_dtype, j);
}

// One expert's rows (pointers) times its weight over columns [c0, c1), tiles of kTileRows.
template <WType W>
void KnRows(const float* const* x_rows, float* const* out_rows, int64_t num_rows, const WElem<W>* w,
            int64_t k, int64_t n, int64_t c0, int64_t c1, const void* bias, DType bias_dtype) {
  for (int64_t r = 0; r < num_rows; r += kTileRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kTileRows, num_rows - r));
    KnColumns<W>(x_rows + r, rows, w, k, n, c0, c1, bias, bias_dtype, out_rows + r);
  }
}

bool StackedKnOk(const TensorArg& w, int64_t e, int64_t k, int64_t n) {
  return w.expert_data != nullptr && w.rank == 3 && w.shape[0] == e && w.shape[1] == k &&
         w.shape[2] == n;
}

// The optional bias in[index] [E, N]: ok when absent or well-formed.
bool BiasOk(const KernelArgs& args, int index, int64_t e, int64_t n) {
  if (args.num_in <= index) return true;
  const TensorArg& b = args.in[index];
  return ref_detail::IsWeightDType(b.dtype) && b.data != nullptr && b.numel() == e * n;
}

const void* BiasRow(const KernelArgs& args, int index, int64_t e, int64_t n) {
  if (args.num_in <= index) return nullptr;
  const TensorArg& b = args.in[index];
  return static_cast<const std::byte*>(b.data) + e * n * static_cast<int64_t>(DTypeBytes(b.dtype));
}

// Accepted expert ranges in the reference's ExpertOfRow rule: expert e covers
// rows [first[e], last[e]) or nothing (first = last = 0).
void AcceptedRanges(const int32_t* offsets, int64_t num_experts, int64_t num_rows, int64_t* first,
                    int64_t* last) {
  int64_t covered = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t begin = offsets[e], end = offsets[e + 1];
    first[e] = last[e] = 0;
    if (begin < covered || end < begin || end > num_rows) continue;
    first[e] = begin;
    last[e] = end;
    covered = end;
  }
}

}  // namespace

void OptGroupedMatmulKn(const KernelArgs& args) {
  const TensorArg& offsets_arg = args.in[1];
  const TensorArg& w = args.in[2];
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t k = RowSize(args.in[0]);
  const int64_t num_experts = w.dim(0);
  WType wtype;
  if (!simd::ToWType(w.dtype, &wtype) || offsets_arg.numel() < num_experts + 1 ||
      NumRows(args.in[0]) != num_rows || !StackedKnOk(w, num_experts, k, n) ||
      !BiasOk(args, 3, num_experts, n)) {
    return RefGroupedMatmulKn(args);
  }
  const float* x = args.in[0].as<const float>();
  float* out = args.out[0].as<float>();
  const DType bias_dtype = args.num_in > 3 ? args.in[3].dtype : DType::kF32;
  std::vector<int64_t> first(static_cast<size_t>(num_experts)),
      last(static_cast<size_t>(num_experts));
  AcceptedRanges(offsets_arg.as<const int32_t>(), num_experts, num_rows, first.data(), last.data());
  // Rows no accepted range covers are zeros: clear everything, then compute.
  ParallelFor(args.num_threads, num_rows * n,
              [&](int64_t begin, int64_t end) { std::fill(out + begin, out + end, 0.0f); });
  const int64_t strips = (n + kStripCols - 1) / kStripCols;
  ParallelFor(args.num_threads, num_experts * strips, [&](int64_t begin, int64_t end) {
    std::vector<const float*> x_rows;
    std::vector<float*> out_rows;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t e = u / strips, c0 = (u % strips) * kStripCols;
      const int64_t r0 = first[static_cast<size_t>(e)], r1 = last[static_cast<size_t>(e)];
      if (r1 <= r0) continue;
      x_rows.clear();
      out_rows.clear();
      for (int64_t r = r0; r < r1; ++r) {
        x_rows.push_back(x + r * k);
        out_rows.push_back(out + r * n);
      }
      ForWType(wtype, [&](auto wt) {
        constexpr WType W = decltype(wt)::value;
        KnRows<W>(x_rows.data(), out_rows.data(), r1 - r0,
                  static_cast<const WElem<W>*>(w.expert(e)), k, n, c0, std::min(n, c0 + kStripCols),
                  BiasRow(args, 3, e, n), bias_dtype);
      });
    }
  });
}

void OptExpertBatchedMatmulKn(const KernelArgs& args) {
  const TopKParams& params = Params<TopKParams>(args);
  const TensorArg& w = args.in[3];
  const int64_t top_k = params.top_k;
  const int64_t num_pairs = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t num_x_rows = NumRows(args.in[0]);
  const int64_t k = RowSize(args.in[0]);
  const int64_t num_experts = w.dim(0);
  WType wtype;
  if (top_k <= 0 || !simd::ToWType(w.dtype, &wtype) || !StackedKnOk(w, num_experts, k, n) ||
      !BiasOk(args, 4, num_experts, n) || args.in[1].numel() != NumRows(args.in[2])) {
    return RefExpertBatchedMatmulKn(args);
  }
  const float* x = args.in[0].as<const float>();
  const int32_t* batch_experts = args.in[1].as<const int32_t>();
  const int32_t* batch_pairs = args.in[2].as<const int32_t>();
  const int64_t pairs_per_slot = RowSize(args.in[2]);
  const int64_t num_slots = args.in[1].numel();
  const DType bias_dtype = args.num_in > 4 ? args.in[4].dtype : DType::kF32;
  float* y = args.out[0].as<float>();
  ParallelFor(args.num_threads, num_pairs * n,
              [&](int64_t begin, int64_t end) { std::fill(y + begin, y + end, 0.0f); });
  const int64_t strips = (n + kStripCols - 1) / kStripCols;
  ParallelFor(args.num_threads, num_slots * strips, [&](int64_t begin, int64_t end) {
    std::vector<const float*> x_rows;
    std::vector<float*> out_rows;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t s = u / strips, c0 = (u % strips) * kStripCols;
      const int64_t e = batch_experts[s];
      if (e < 0 || e >= num_experts) continue;
      x_rows.clear();
      out_rows.clear();
      for (int64_t c = 0; c < pairs_per_slot; ++c) {
        const int64_t p = batch_pairs[s * pairs_per_slot + c];
        if (p < 0 || p >= num_pairs || p / top_k >= num_x_rows) continue;
        x_rows.push_back(x + (p / top_k) * k);
        out_rows.push_back(y + p * n);
      }
      if (x_rows.empty()) continue;
      ForWType(wtype, [&](auto wt) {
        constexpr WType W = decltype(wt)::value;
        KnRows<W>(x_rows.data(), out_rows.data(), static_cast<int64_t>(x_rows.size()),
                  static_cast<const WElem<W>*>(w.expert(e)), k, n, c0, std::min(n, c0 + kStripCols),
                  BiasRow(args, 4, e, n), bias_dtype);
      });
    }
  });
}

void OptClampedSwiglu(const KernelArgs& args) {
  const ClampedSwigluParams& params = Params<ClampedSwigluParams>(args);
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t inter = RowSize(args.out[0]);
  if (RowSize(args.in[0]) != 2 * inter || NumRows(args.in[0]) != num_rows) {
    return RefClampedSwiglu(args);
  }
  const float* x = args.in[0].as<const float>();
  float* out = args.out[0].as<float>();
  const float alpha = static_cast<float>(params.alpha);
  const float limit = static_cast<float>(params.limit);
  // Elementwise and cheap next to the GEMMs around it: the reference's scalar math (same
  // results), split over the pool.
  ParallelFor(args.num_threads, num_rows * inter, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = ref_detail::ClampedSwiglu(x[2 * i], x[2 * i + 1], alpha, limit);
  });
}

}  // namespace moegraph
