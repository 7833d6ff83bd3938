// Optimised kernels of GPT-OSS's experts: the [in, out] (transformers' [E, K, N]) grouped and
// expert-batched GEMMs with their biases, and the clamped SwiGLU.
//
// A [K, N] weight is read row by row: each k broadcasts x[r, k] against a long contiguous run
// w[k, c0 : c1) for up to 4 activation rows at once, accumulating in the output rows. Work
// units are (expert or slot, column chunk) pairs, chunks as wide as the thread count allows.

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

// Activation rows per pass over a weight row.
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
    case WType::kFp8:  // the callers leave quantized [in, out] weights to the reference
    case WType::kMxfp4:
    case WType::kInt8:
    case WType::kInt4:
      break;
  }
}

// out[r][c0, c1) = x[r] w[:, c0, c1) (+ bias) for `rows` (<= kTileRows) activation rows: each
// weight row's run w[i, c0, c1) is read once, contiguously, and FMA'd into the output rows (k
// in order per element, as the reference sums). Long runs keep the hardware prefetcher and the
// TLB on one page at a time; a narrow column strip walking down the rows was 3-4x slower.
template <WType W>
MG_AVX2 void KnColumns(const float* const* x, int rows, const WElem<W>* w, int64_t k, int64_t n,
                       int64_t c0, int64_t c1, const void* bias, DType bias_dtype,
                       float* const* out) {
  for (int r = 0; r < rows; ++r)
    std::fill(out[r] + c0, out[r] + c1, 0.0f);
  const int64_t vec_end = c0 + (c1 - c0) / 8 * 8;
  // Four weight rows per pass over the outputs: a quarter of the output traffic and four
  // sequential streams for the prefetcher; each element still sums in ascending k.
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    const WElem<W>* w0 = w + i * n;
    const WElem<W>* w1 = w0 + n;
    const WElem<W>* w2 = w1 + n;
    const WElem<W>* w3 = w2 + n;
    __m256 xv[kTileRows][4];
    for (int r = 0; r < rows; ++r)
      for (int q = 0; q < 4; ++q)
        xv[r][q] = _mm256_set1_ps(x[r][i + q]);
    for (int64_t c = c0; c < vec_end; c += 8) {
      const __m256 a = Load8<W>(w0 + c), b = Load8<W>(w1 + c), d = Load8<W>(w2 + c),
                   e = Load8<W>(w3 + c);
      for (int r = 0; r < rows; ++r) {
        __m256 v = _mm256_loadu_ps(out[r] + c);
        v = _mm256_fmadd_ps(xv[r][0], a, v);
        v = _mm256_fmadd_ps(xv[r][1], b, v);
        v = _mm256_fmadd_ps(xv[r][2], d, v);
        v = _mm256_fmadd_ps(xv[r][3], e, v);
        _mm256_storeu_ps(out[r] + c, v);
      }
    }
    for (int64_t c = vec_end; c < c1; ++c) {
      for (int r = 0; r < rows; ++r) {
        float v = out[r][c];
        for (int q = 0; q < 4; ++q)
          v += x[r][i + q] * Load1<W>(w + (i + q) * n + c);
        out[r][c] = v;
      }
    }
  }
  for (; i < k; ++i) {
    const WElem<W>* row = w + i * n;
    __m256 xv[kTileRows];
    for (int r = 0; r < rows; ++r)
      xv[r] = _mm256_set1_ps(x[r][i]);
    for (int64_t c = c0; c < vec_end; c += 8) {
      const __m256 wv = Load8<W>(row + c);
      for (int r = 0; r < rows; ++r)
        _mm256_storeu_ps(out[r] + c, _mm256_fmadd_ps(xv[r], wv, _mm256_loadu_ps(out[r] + c)));
    }
    for (int64_t c = vec_end; c < c1; ++c) {
      const float wc = Load1<W>(row + c);
      for (int r = 0; r < rows; ++r)
        out[r][c] += x[r][i] * wc;
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

// Column chunk width: whole rows when the groups alone give every thread work, else the rows
// split so groups x chunks >= threads (multiples of 8 columns).
int64_t ChunkCols(int64_t n, int64_t num_groups, int num_threads) {
  const int64_t per_group = std::max<int64_t>(1, (num_threads + num_groups - 1) / num_groups);
  const int64_t cols = (n + per_group - 1) / per_group;
  return std::max<int64_t>(8, (cols + 7) / 8 * 8);
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
  if (!simd::ToWType(w.dtype, &wtype) || wtype == WType::kFp8 ||
      offsets_arg.numel() < num_experts + 1 || NumRows(args.in[0]) != num_rows ||
      !StackedKnOk(w, num_experts, k, n) || !BiasOk(args, 3, num_experts, n)) {
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
  int64_t used = 0;
  for (int64_t e = 0; e < num_experts; ++e)
    used += last[static_cast<size_t>(e)] > first[static_cast<size_t>(e)] ? 1 : 0;
  const int64_t chunk = ChunkCols(n, std::max<int64_t>(used, 1), args.num_threads);
  const int64_t strips = (n + chunk - 1) / chunk;
  ParallelFor(args.num_threads, num_experts * strips, [&](int64_t begin, int64_t end) {
    std::vector<const float*> x_rows;
    std::vector<float*> out_rows;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t e = u / strips, c0 = (u % strips) * chunk;
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
                  static_cast<const WElem<W>*>(w.expert(e)), k, n, c0, std::min(n, c0 + chunk),
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
  if (top_k <= 0 || !simd::ToWType(w.dtype, &wtype) || wtype == WType::kFp8 ||
      !StackedKnOk(w, num_experts, k, n) || !BiasOk(args, 4, num_experts, n) ||
      args.in[1].numel() != NumRows(args.in[2])) {
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
  int64_t used = 0;
  for (int64_t s = 0; s < num_slots; ++s)
    used += batch_experts[s] >= 0 && batch_experts[s] < num_experts ? 1 : 0;
  const int64_t chunk = ChunkCols(n, std::max<int64_t>(used, 1), args.num_threads);
  const int64_t strips = (n + chunk - 1) / chunk;
  ParallelFor(args.num_threads, num_slots * strips, [&](int64_t begin, int64_t end) {
    std::vector<const float*> x_rows;
    std::vector<float*> out_rows;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t s = u / strips, c0 = (u % strips) * chunk;
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
                  static_cast<const WElem<W>*>(w.expert(e)), k, n, c0, std::min(n, c0 + chunk),
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
