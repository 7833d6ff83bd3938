// The packed GEMM with AVX-512 (MatmulGemmAvx512 in simd_gemm.h): prefill rows of the dense
// and grouped MoE matmuls. Twice the FMA width of the AVX2 GEMM and 32 registers: an 8 x 48
// micro-kernel keeps 24 zmm accumulators, loads 3 panel vectors and broadcasts 8 activations
// per k, so it is bound by the FMA ports, not the loads.
//
// Bitwise MatmulGemm: each output is summed over the same k blocks of kBlockK, in the same
// order within a block (kBf16GroupOrder for bf16, whose AVX2 pack permutes k; here the pack
// keeps k in order and the micro-kernel walks it in the permuted order), every product by
// one FMA, and a block's sum added to the previous blocks' sum. Lane width and tile shape
// change which products run side by side, never the order in which one output is summed.
//
// Every function carries its own target attribute, so the library builds without -mavx512f
// and MatmulPanels calls this only when SelectedCpuIsa() includes kAvx512.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/simd_gemm.h"

#define MG_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#define MG_AVX512_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"), always_inline)) inline

namespace moegraph::simd {
namespace {

constexpr int kWideCols = 48;      // weight rows per wide panel: 3 zmm of outputs
constexpr int kWideMicroRows = 8;  // activation rows per micro-kernel call

// c[0, 48) = v0 v1 v2, or c += them when `accumulate`.
MG_AVX512_INLINE void StoreWideRow(__m512 v0, __m512 v1, __m512 v2, bool accumulate, float* c) {
  if (accumulate) {
    v0 = _mm512_add_ps(_mm512_loadu_ps(c), v0);
    v1 = _mm512_add_ps(_mm512_loadu_ps(c + 16), v1);
    v2 = _mm512_add_ps(_mm512_loadu_ps(c + 32), v2);
  }
  _mm512_storeu_ps(c, v0);
  _mm512_storeu_ps(c + 16, v1);
  _mm512_storeu_ps(c + 32, v2);
}

// c[m * 48 + j] (+)= sum over k < kc of a[m * lda + k] * pack[k * 48 + j], m < MR, k in
// kBf16GroupOrder within each 16 for k < kc_grouped and in order after (MicroKernel's
// order). Named accumulators, as MicroKernel.
template <int MR>
MG_AVX512 void WideMicroKernel(int64_t kc, int64_t kc_grouped, const float* a, int64_t lda,
                               const float* pack, float* c, bool accumulate) {
  static_assert(MR >= 1 && MR <= kWideMicroRows, "MR is 1..8");
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  __m512 c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00;
  __m512 c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
  const float* a0 = a;
  const float* a1 = a + (MR > 1 ? lda : 0);
  const float* a2 = a + (MR > 2 ? 2 * lda : 0);
  const float* a3 = a + (MR > 3 ? 3 * lda : 0);
  const float* a4 = a + (MR > 4 ? 4 * lda : 0);
  const float* a5 = a + (MR > 5 ? 5 * lda : 0);
  const float* a6 = a + (MR > 6 ? 6 * lda : 0);
  const float* a7 = a + (MR > 7 ? 7 * lda : 0);
#define MG_WIDE_ROW(m, k)                       \
  if constexpr (MR > m) {                       \
    const __m512 av = _mm512_set1_ps(a##m[k]);  \
    c##m##0 = _mm512_fmadd_ps(av, b0, c##m##0); \
    c##m##1 = _mm512_fmadd_ps(av, b1, c##m##1); \
    c##m##2 = _mm512_fmadd_ps(av, b2, c##m##2); \
  }
#define MG_WIDE_STEP(k)                       \
  {                                           \
    const float* b = pack + (k)*kWideCols;    \
    const __m512 b0 = _mm512_load_ps(b);      \
    const __m512 b1 = _mm512_load_ps(b + 16); \
    const __m512 b2 = _mm512_load_ps(b + 32); \
    MG_WIDE_ROW(0, k)                         \
    MG_WIDE_ROW(1, k)                         \
    MG_WIDE_ROW(2, k)                         \
    MG_WIDE_ROW(3, k)                         \
    MG_WIDE_ROW(4, k)                         \
    MG_WIDE_ROW(5, k)                         \
    MG_WIDE_ROW(6, k)                         \
    MG_WIDE_ROW(7, k)                         \
  }
  for (int64_t kk = 0; kk < kc_grouped; kk += 16) {
#pragma GCC unroll 16
    for (int u = 0; u < 16; ++u)
      MG_WIDE_STEP(kk + kBf16GroupOrder[u])
  }
#pragma GCC unroll 4
  for (int64_t kk = kc_grouped; kk < kc; ++kk)
    MG_WIDE_STEP(kk)
#undef MG_WIDE_STEP
#undef MG_WIDE_ROW
  if constexpr (MR > 0) StoreWideRow(c00, c01, c02, accumulate, c);
  if constexpr (MR > 1) StoreWideRow(c10, c11, c12, accumulate, c + kWideCols);
  if constexpr (MR > 2) StoreWideRow(c20, c21, c22, accumulate, c + 2 * kWideCols);
  if constexpr (MR > 3) StoreWideRow(c30, c31, c32, accumulate, c + 3 * kWideCols);
  if constexpr (MR > 4) StoreWideRow(c40, c41, c42, accumulate, c + 4 * kWideCols);
  if constexpr (MR > 5) StoreWideRow(c50, c51, c52, accumulate, c + 5 * kWideCols);
  if constexpr (MR > 6) StoreWideRow(c60, c61, c62, accumulate, c + 6 * kWideCols);
  if constexpr (MR > 7) StoreWideRow(c70, c71, c72, accumulate, c + 7 * kWideCols);
}

using WideMicroKernelFn = void (*)(int64_t, int64_t, const float*, int64_t, const float*, float*,
                                   bool);
constexpr WideMicroKernelFn kWideTails[kWideMicroRows] = {nullptr,
                                                          &WideMicroKernel<1>,
                                                          &WideMicroKernel<2>,
                                                          &WideMicroKernel<3>,
                                                          &WideMicroKernel<4>,
                                                          &WideMicroKernel<5>,
                                                          &WideMicroKernel<6>,
                                                          &WideMicroKernel<7>};

// c[m * 48 + j] = sum_k a[m * lda + k] * rows[j][k] for m < num_rows (<= kBlockRows),
// j < 48, as GemmPanel: `pack` holds kBlockK * 48 floats; `next_rows` (or null) is the
// panel to prefetch after this one.
template <WType W>
MG_AVX512 void GemmWidePanel(const float* a, int64_t lda, int64_t num_rows,
                             const WElem<W>* const* rows, const WElem<W>* const* next_rows,
                             int64_t k, float* pack, float* c, const void* const* scale_rows,
                             int64_t block_cols) {
  const int64_t num_calls = (num_rows + kWideMicroRows - 1) / kWideMicroRows;
  for (int64_t k0 = 0; k0 < k; k0 += kBlockK) {
    const int64_t kc = std::min(kBlockK, k - k0);
    // 48 columns in k order (the micro-kernel walks bf16 in kBf16GroupOrder itself).
    PackPanel<W, kWideCols, false>(rows, k0, kc, pack, scale_rows, block_cols);
    const int64_t next = k0 + kc;
    const WElem<W>* const* prefetch_rows = next < k ? rows : next_rows;
    const int64_t prefetch_k0 = next < k ? next : 0;
    const int64_t prefetch_bytes =
        ElemOffset<W>(std::min(kBlockK, k - prefetch_k0)) * static_cast<int64_t>(sizeof(WElem<W>));
    const int64_t kc_grouped = GroupsBy16<W>() ? kc & ~int64_t{15} : 0;
    const bool accumulate = k0 > 0;
    for (int64_t call = 0, m0 = 0; m0 < num_rows; m0 += kWideMicroRows, ++call) {
      if (prefetch_rows) {
        PrefetchRows<W>(prefetch_rows, static_cast<int>(kWideCols * call / num_calls),
                        static_cast<int>(kWideCols * (call + 1) / num_calls), prefetch_k0,
                        prefetch_bytes);
      }
      const float* a_rows = a + m0 * lda + k0;
      float* c_rows = c + m0 * kWideCols;
      const int64_t mr = std::min<int64_t>(kWideMicroRows, num_rows - m0);
      if (mr == kWideMicroRows) {
        WideMicroKernel<kWideMicroRows>(kc, kc_grouped, a_rows, lda, pack, c_rows, accumulate);
      } else {
        kWideTails[mr](kc, kc_grouped, a_rows, lda, pack, c_rows, accumulate);
      }
    }
  }
}

// The weight rows of the wide panel of columns [j0, j0 + panel_cols) of block b (48, or 24
// gate then 24 up rows when fused). Columns from `end` on repeat the last row before it:
// their results are never stored (they may be another thread's columns).
template <WType W>
void WidePanelRows(const MatmulBlock& b, int64_t j0, int64_t end, const WElem<W>** rows,
                   const void** scale_rows) {
  const auto* wg = static_cast<const WElem<W>*>(b.wg);
  const auto* wu = static_cast<const WElem<W>*>(b.wu);
  const int64_t panel_cols = b.wu ? kWideCols / 2 : kWideCols;
  const int64_t last = std::min(panel_cols, end - j0) - 1;
  for (int64_t i = 0; i < panel_cols; ++i) {
    const int64_t j = j0 + std::min(i, last);
    rows[i] = wg + ElemOffset<W>(j * b.k);
    if (wu) rows[panel_cols + i] = wu + ElemOffset<W>(j * b.k);
    if constexpr (Scaled<W>()) {
      scale_rows[i] = b.scales.GateScaleRow(j);
      if (wu) scale_rows[panel_cols + i] = b.scales.UpScaleRow(j);
    }
  }
}

// SiluMulRow12 as a call: GCC 12 refuses to inline this AVX2 always_inline function into an
// AVX-512 one ("target specific option mismatch"), and it runs once per 12 outputs.
MG_AVX2 void SiluMulRow12Avx2(const float* gate, const float* up, int64_t cols, float* out) {
  SiluMulRow12(gate, up, cols, out);
}

}  // namespace

template <WType W>
MG_AVX512 void MatmulGemmAvx512(const MatmulBlock& b, int64_t c0, int64_t c1,
                                const MatmulBlock* next) {
  alignas(64) float pack[kBlockK * kWideCols];
  alignas(64) float tile[kBlockRows * kWideCols];
  const int64_t panel_cols = b.wu ? kWideCols / 2 : kWideCols;
  const WElem<W>* rows[kWideCols];
  const WElem<W>* next_rows[kWideCols] = {};
  const void* scale_rows[kWideCols] = {};
  const void* next_scale_rows[kWideCols] = {};
  if (c0 >= c1) return;
  WidePanelRows<W>(b, c0, c1, rows, scale_rows);
  for (int64_t j0 = c0; j0 < c1; j0 += panel_cols) {
    const int64_t cols = std::min(panel_cols, c1 - j0);
    const bool has_next = j0 + panel_cols < c1 || next != nullptr;
    if (j0 + panel_cols < c1) {
      WidePanelRows<W>(b, j0 + panel_cols, c1, next_rows, next_scale_rows);
    } else if (next) {
      WidePanelRows<W>(*next, c0, c1, next_rows, next_scale_rows);
    }
    for (int64_t r0 = 0; r0 < b.num_rows; r0 += kBlockRows) {
      const int64_t mr = std::min(kBlockRows, b.num_rows - r0);
      GemmWidePanel<W>(b.x + r0 * b.k, b.k, mr, rows, has_next ? next_rows : nullptr, b.k, pack,
                       tile, scale_rows, b.scales.block_cols);
      for (int64_t m = 0; m < mr; ++m) {
        float* out_row = b.out + (r0 + m) * b.out_stride + j0;
        const float* t = tile + m * kWideCols;
        if (b.wu) {
          // Gate columns at t[0, 24), up at t[24, 48): two of MatmulGemm's fused rows.
          SiluMulRow12Avx2(t, t + panel_cols, std::min<int64_t>(cols, 12), out_row);
          if (cols > 12) SiluMulRow12Avx2(t + 12, t + panel_cols + 12, cols - 12, out_row + 12);
        } else {
          std::copy(t, t + cols, out_row);
        }
      }
    }
    std::copy(next_rows, next_rows + kWideCols, rows);
    std::copy(next_scale_rows, next_scale_rows + kWideCols, scale_rows);
  }
}

template void MatmulGemmAvx512<WType::kF32>(const MatmulBlock&, int64_t, int64_t,
                                            const MatmulBlock*);
template void MatmulGemmAvx512<WType::kBF16>(const MatmulBlock&, int64_t, int64_t,
                                             const MatmulBlock*);
template void MatmulGemmAvx512<WType::kF16>(const MatmulBlock&, int64_t, int64_t,
                                            const MatmulBlock*);
template void MatmulGemmAvx512<WType::kFp8>(const MatmulBlock&, int64_t, int64_t,
                                            const MatmulBlock*);
template void MatmulGemmAvx512<WType::kMxfp4>(const MatmulBlock&, int64_t, int64_t,
                                              const MatmulBlock*);
template void MatmulGemmAvx512<WType::kInt8>(const MatmulBlock&, int64_t, int64_t,
                                             const MatmulBlock*);
template void MatmulGemmAvx512<WType::kInt4>(const MatmulBlock&, int64_t, int64_t,
                                             const MatmulBlock*);

}  // namespace moegraph::simd
