// Matmul building blocks of the optimised CPU kernels (private to kernels/cpu):
// register-tiled dot products for few activation rows (decode GEMV, bandwidth
// bound) and a packed 4x24 GEMM micro-kernel for many rows (prefill, compute
// bound). Weights are rows of K values (f32, bf16, f16, or fp8 / mxfp4 with their block
// scales) widened in registers;
// activations are f32 rows; accumulation is f32.
//
// Determinism: a dot-product tile keeps one accumulator per (row, weight row),
// steps k by 8, reduces with Hsum's fixed order and adds the k tail in order,
// so a result never depends on the tile shape or the thread split. The GEMM
// sums each output over k in a fixed order (k blocks of kBlockK, each summed
// on its own and added to the previous blocks' sum), whatever the split.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/kernel_abi.h"

namespace moegraph::simd {

// The block scales of a quantized weight pair: scale matrices [ceil(n / block_rows),
// scale_cols] of the gate (or only) weight and of the up weight (or null), of elements of
// scale_bytes bytes: f32 for kFp8, kInt8 and kInt4, u8 e8m0 for kMxfp4 (blocks of 1 x 32). The
// optimised kernels take block_cols % 8 == 0 (a scale per 8-value vector); other blocks run the
// reference.
struct WeightScales {
  const std::byte* g = nullptr;
  const std::byte* u = nullptr;
  int64_t scale_bytes = 4;
  int64_t block_rows = 0, block_cols = 0, scale_cols = 0;

  // The scale row of weight row j, as the tiles take it (ScaleAt reads it).
  const void* GateScaleRow(int64_t j) const {
    return g + (j / block_rows) * scale_cols * scale_bytes;
  }
  const void* UpScaleRow(int64_t j) const {
    return u + (j / block_rows) * scale_cols * scale_bytes;
  }
  // The f32 scale row of weight row j (kFp8).
  const float* GateRow(int64_t j) const { return static_cast<const float*>(GateScaleRow(j)); }
  // Points at one matrix's scales (one expert's) of the gate and up weights.
  void SetMatrices(const void* gate, const void* up) {
    g = static_cast<const std::byte*>(gate);
    u = static_cast<const std::byte*>(up);
  }
};

// Whether weights of W carry block scales the drivers multiply by.
template <WType W>
constexpr bool Scaled() {
  return W == WType::kFp8 || W == WType::kMxfp4 || W == WType::kInt8 || W == WType::kInt4;
}

// The scale of column block `block` of a scale row (GateScaleRow / UpScaleRow).
template <WType W>
MG_AVX2_INLINE float ScaleAt(const void* row, int64_t block) {
  if constexpr (W == WType::kMxfp4) {
    return E8M0Scale(static_cast<const uint8_t*>(row)[block]);
  } else {
    return static_cast<const float*>(row)[block];
  }
}

// The WType of matmul weight `w`: ToWType of its dtype, kFp8 / kInt8 for a block-scaled fp8 /
// int8 weight whose blocks the kernels take (block_cols % 8 == 0), kMxfp4 / kInt4 for an
// mxfp4 / int4 weight (K % 32 == 0, blocks of 1 x a multiple of 32); false: run the reference.
inline bool ToMatmulWType(const TensorArg& w, WType* out) {
  if (ByteBlockScheme(w.quant.scheme)) {
    if (w.dtype != QuantWeightDType(w.quant.scheme) || w.quant.block_rows <= 0 ||
        w.quant.block_cols <= 0 || w.quant.block_cols % 8 != 0) {
      return false;
    }
    *out = w.quant.scheme == QuantScheme::kInt8Block ? WType::kInt8 : WType::kFp8;
    return true;
  }
  if (w.quant.scheme == QuantScheme::kMxfp4 || w.quant.scheme == QuantScheme::kInt4Block) {
    const bool mxfp4 = w.quant.scheme == QuantScheme::kMxfp4;
    if (w.dtype != QuantWeightDType(w.quant.scheme) || w.quant.block_rows != 1 ||
        w.quant.block_cols % 32 != 0 || (mxfp4 && w.quant.block_cols != 32) || w.rank < 1 ||
        w.dim(-1) % 32 != 0) {
      return false;
    }
    *out = mxfp4 ? WType::kMxfp4 : WType::kInt4;
    return true;
  }
  return !w.quant.quantized() && ToWType(w.dtype, out);
}

// The scales of matrices of weight `w` (one [n, k] matrix, or one expert's) at `g` / `u`.
inline WeightScales ScalesOf(const TensorArg& w, const void* g, const void* u) {
  WeightScales s;
  if (!w.quant.quantized()) return s;
  s.scale_bytes = static_cast<int64_t>(DTypeBytes(QuantScaleDType(w.quant.scheme)));
  s.SetMatrices(g, u);
  s.block_rows = w.quant.block_rows;
  s.block_cols = w.quant.block_cols;
  s.scale_cols = w.quant.ScaleCols(w.dim(-1));
  return s;
}

// ---- Dot-product tiles (GEMV) -----------------------------------------------

// out[m * NR + n] = sum_k x[m][k] * w[n][k] for m < MR, n < NR.
// Registers: MR * NR accumulators + MR activations + 1 weight <= 16.
// `next` (or null; entries may be null): the next tile's NR weight rows,
// prefetched into L2 line by line as this tile's rows are read, so the rows
// of a GEMV stream in without waiting for the hardware prefetcher to learn
// them (into L1 instead, the prefetches compete with the loads for fill buffers).
// kFp8: s[n] is weight row n's scale row; each decoded vector of 8 is multiplied
// by its block's scale (s[n][i / block_cols]) before the product, as the reference.
template <WType W, int MR, int NR>
MG_AVX2 void DotTile(const float* const* x, const WElem<W>* const* w, int64_t k, float* out,
                     const WElem<W>* const* next, const void* const* s, int64_t block_cols) {
  static_assert(MR * NR <= 12 || (MR == 1 && NR <= 8), "tile exceeds the register file");
  constexpr int64_t kLineElems = Nibbles<W>() ? 128 : 64 / sizeof(WElem<W>);
  __m256 acc[MR][NR];
  for (int m = 0; m < MR; ++m) {
    for (int n = 0; n < NR; ++n)
      acc[m][n] = _mm256_setzero_ps();
  }
  const int64_t k8 = k & ~int64_t{7};
  // Scaled weights go block by block (block_cols % 8 == 0): each row's scale is read once per
  // block into `scale`, and each vector of 8 multiplies by a broadcast of it from there.
  const int64_t step = Scaled<W>() ? block_cols : std::max<int64_t>(k8, 1);
  for (int64_t i0 = 0; i0 < k8; i0 += step) {
    [[maybe_unused]] float scale[NR];
    if constexpr (Scaled<W>()) {
      for (int n = 0; n < NR; ++n)
        scale[n] = ScaleAt<W>(s[n], i0 / block_cols);
    }
    const int64_t i1 = std::min(k8, i0 + step);
    for (int64_t i = i0; i < i1; i += 8) {
      if (next && i % kLineElems == 0) {
        for (int n = 0; n < NR; ++n) {
          if (next[n]) {
            _mm_prefetch(reinterpret_cast<const char*>(next[n] + ElemOffset<W>(i)), _MM_HINT_T1);
          }
        }
      }
      __m256 xv[MR];
      for (int m = 0; m < MR; ++m)
        xv[m] = _mm256_loadu_ps(x[m] + i);
      for (int n = 0; n < NR; ++n) {
        __m256 wv = Load8<W>(w[n] + ElemOffset<W>(i));
        if constexpr (Scaled<W>()) wv = _mm256_mul_ps(wv, _mm256_broadcast_ss(&scale[n]));
        for (int m = 0; m < MR; ++m)
          acc[m][n] = _mm256_fmadd_ps(xv[m], wv, acc[m][n]);
      }
    }
  }
  for (int m = 0; m < MR; ++m) {
    int n = 0;
    for (; n + 4 <= NR; n += 4) {
      _mm_storeu_ps(out + m * NR + n,
                    Hsum4(acc[m][n], acc[m][n + 1], acc[m][n + 2], acc[m][n + 3]));
    }
    for (; n < NR; ++n)
      out[m * NR + n] = Hsum(acc[m][n]);
  }
  if constexpr (!Nibbles<W>()) {  // mxfp4 / int4 rows are a multiple of 32: no tail
    for (int64_t i = k8; i < k; ++i) {
      for (int m = 0; m < MR; ++m) {
        for (int n = 0; n < NR; ++n) {
          if constexpr (Scaled<W>()) {
            out[m * NR + n] += x[m][i] * (Load1<W>(w[n] + i) * ScaleAt<W>(s[n], i / block_cols));
          } else {
            out[m * NR + n] += x[m][i] * Load1<W>(w[n] + i);
          }
        }
      }
    }
  }
}

template <WType W>
using DotTileFn = void (*)(const float* const*, const WElem<W>* const*, int64_t, float*,
                           const WElem<W>* const*, const void* const*, int64_t);

// Largest weight-row count per tile for `mr` activation rows.
constexpr int MaxDotRows(int mr) {
  return mr == 1 ? 8 : mr == 2 ? 6 : mr == 3 ? 4 : 3;
}
constexpr int kMaxDotActRows = 4;

template <WType W, int MR, int... NRs>
DotTileFn<W> PickDotTileNr(int nr, std::integer_sequence<int, NRs...>) {
  DotTileFn<W> fn = nullptr;
  ((nr == NRs + 1 ? (fn = &DotTile<W, MR, NRs + 1>, 0) : 0), ...);
  return fn;
}

// The DotTile for mr (1..4) activation rows and nr (1..MaxDotRows(mr)) weight rows.
template <WType W>
DotTileFn<W> PickDotTile(int mr, int nr) {
  switch (mr) {
    case 1:
      return PickDotTileNr<W, 1>(nr, std::make_integer_sequence<int, MaxDotRows(1)>{});
    case 2:
      return PickDotTileNr<W, 2>(nr, std::make_integer_sequence<int, MaxDotRows(2)>{});
    case 3:
      return PickDotTileNr<W, 3>(nr, std::make_integer_sequence<int, MaxDotRows(3)>{});
    default:
      return PickDotTileNr<W, 4>(nr, std::make_integer_sequence<int, MaxDotRows(4)>{});
  }
}

// ---- Packed GEMM ---------------------------------------------------------------

constexpr int kPanelCols = 24;       // weight rows per packed panel (output columns)
constexpr int kMicroRows = 4;        // activation rows per micro-kernel call
constexpr int64_t kBlockK = 256;     // k values per packed panel (24 KiB: stays in L1)
constexpr int64_t kBlockRows = 128;  // activation rows per C tile

// bf16 panels are packed 16 k at a time with one unpack per 8 values (the
// bf16 bits into the high half of a zeroed f32 lane) instead of a widen and a
// shift; within each 16-k group the pack then holds k in this order, and the
// micro-kernel reads the activations in the same order.
constexpr int kBf16GroupOrder[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};

// Whether a panel of `W` over kc values uses the bf16 16-k grouping for its
// first kc & ~15 values.
template <WType W>
constexpr bool GroupsBy16() {
  return W == WType::kBF16;
}

// Stores v[0..8) transposed: dst[i * stride + j] = v[j][i] (dst and stride 8-float aligned).
MG_AVX2_INLINE void StoreTransposed8x8(const __m256* v, float* dst, int64_t stride = kPanelCols) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_store_ps(dst + 0 * stride, _mm256_permute2f128_ps(s0, s4, 0x20));
  _mm256_store_ps(dst + 1 * stride, _mm256_permute2f128_ps(s1, s5, 0x20));
  _mm256_store_ps(dst + 2 * stride, _mm256_permute2f128_ps(s2, s6, 0x20));
  _mm256_store_ps(dst + 3 * stride, _mm256_permute2f128_ps(s3, s7, 0x20));
  _mm256_store_ps(dst + 4 * stride, _mm256_permute2f128_ps(s0, s4, 0x31));
  _mm256_store_ps(dst + 5 * stride, _mm256_permute2f128_ps(s1, s5, 0x31));
  _mm256_store_ps(dst + 6 * stride, _mm256_permute2f128_ps(s2, s6, 0x31));
  _mm256_store_ps(dst + 7 * stride, _mm256_permute2f128_ps(s3, s7, 0x31));
}

// Prefetches into L2 `bytes` of rows [j0, j1) from element k0 on.
template <WType W>
MG_AVX2_INLINE void PrefetchRows(const WElem<W>* const* rows, int j0, int j1, int64_t k0,
                                 int64_t bytes) {
  for (int j = j0; j < j1; ++j) {
    const char* p = reinterpret_cast<const char*>(rows[j] + ElemOffset<W>(k0));
    for (int64_t b = 0; b < bytes; b += 64)
      _mm_prefetch(p + b, _MM_HINT_T1);
  }
}

// pack[kk * Cols + j] = rows[j][k0 + kk] widened, kk < kc, j < Cols (a multiple of 8; with
// Group, bf16 only: k order permuted within 16-k groups, see kBf16GroupOrder). `pack` is
// 32-byte aligned. The AVX-512 GEMM packs 48 columns in k order.
// kFp8: each value times its block's scale (s[j][(k0 + kk) / block_cols]; k0 and block_cols
// are multiples of 8).
template <WType W, int Cols = kPanelCols, bool Group = GroupsBy16<W>()>
MG_AVX2 void PackPanel(const WElem<W>* const* rows, int64_t k0, int64_t kc, float* pack,
                       const void* const* s, int64_t block_cols) {
  const int64_t kc_grouped = Group ? kc & ~int64_t{15} : 0;
  const int64_t kc8 = kc & ~int64_t{7};
  for (int g = 0; g < Cols / 8; ++g) {
    const WElem<W>* const* r = rows + 8 * g;
    int64_t kk = 0;
    if constexpr (Group) {
      const __m256i zero = _mm256_setzero_si256();
      for (; kk < kc_grouped; kk += 16) {
        __m256 lo[8], hi[8];
        for (int j = 0; j < 8; ++j) {
          const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[j] + k0 + kk));
          lo[j] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, h));
          hi[j] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, h));
        }
        StoreTransposed8x8(lo, pack + kk * Cols + 8 * g, Cols);
        StoreTransposed8x8(hi, pack + (kk + 8) * Cols + 8 * g, Cols);
      }
    } else {
      for (; kk < kc8; kk += 8) {
        __m256 v[8];
        for (int j = 0; j < 8; ++j) {
          v[j] = Load8<W>(r[j] + ElemOffset<W>(k0 + kk));
          if constexpr (Scaled<W>()) {
            v[j] = _mm256_mul_ps(v[j],
                                 _mm256_set1_ps(ScaleAt<W>(s[8 * g + j], (k0 + kk) / block_cols)));
          }
        }
        StoreTransposed8x8(v, pack + kk * Cols + 8 * g, Cols);
      }
    }
    if constexpr (!Nibbles<W>()) {  // mxfp4 / int4: kc is a multiple of 32
      for (; kk < kc; ++kk) {
        for (int j = 0; j < 8; ++j) {
          float v = Load1<W>(r[j] + k0 + kk);
          if constexpr (Scaled<W>()) v *= ScaleAt<W>(s[8 * g + j], (k0 + kk) / block_cols);
          pack[kk * Cols + 8 * g + j] = v;
        }
      }
    }
  }
}

// c[0, 24) = v0 v1 v2, or c += them when `accumulate`.
MG_AVX2_INLINE void StoreRow(__m256 v0, __m256 v1, __m256 v2, bool accumulate, float* c) {
  if (accumulate) {
    v0 = _mm256_add_ps(_mm256_loadu_ps(c), v0);
    v1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), v1);
    v2 = _mm256_add_ps(_mm256_loadu_ps(c + 16), v2);
  }
  _mm256_storeu_ps(c, v0);
  _mm256_storeu_ps(c + 8, v1);
  _mm256_storeu_ps(c + 16, v2);
}

// c[m * 24 + j] (+)= sum_{kk < kc} a[m * lda + k(kk)] * pack[kk * 24 + j], m < MR,
// where k(kk) follows kBf16GroupOrder for kk < kc_grouped and is kk after.
// The accumulators are named variables: GCC keeps an array of them in memory.
template <int MR>
MG_AVX2 void MicroKernel(int64_t kc, int64_t kc_grouped, const float* a, int64_t lda,
                         const float* pack, float* c, bool accumulate) {
  static_assert(MR >= 1 && MR <= kMicroRows, "MR is 1..4");
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  const float* a0 = a;
  const float* a1 = a + (MR > 1 ? lda : 0);
  const float* a2 = a + (MR > 2 ? 2 * lda : 0);
  const float* a3 = a + (MR > 3 ? 3 * lda : 0);
#define MG_MICRO_ROW(m, k_offset)                             \
  if constexpr (MR > m) {                                     \
    const __m256 av = _mm256_broadcast_ss(a##m + (k_offset)); \
    c##m##0 = _mm256_fmadd_ps(av, b0, c##m##0);               \
    c##m##1 = _mm256_fmadd_ps(av, b1, c##m##1);               \
    c##m##2 = _mm256_fmadd_ps(av, b2, c##m##2);               \
  }
#define MG_MICRO_STEP(kk, k_offset)           \
  {                                           \
    const float* b = pack + (kk)*kPanelCols;  \
    const __m256 b0 = _mm256_load_ps(b);      \
    const __m256 b1 = _mm256_load_ps(b + 8);  \
    const __m256 b2 = _mm256_load_ps(b + 16); \
    MG_MICRO_ROW(0, k_offset)                 \
    MG_MICRO_ROW(1, k_offset)                 \
    MG_MICRO_ROW(2, k_offset)                 \
    MG_MICRO_ROW(3, k_offset)                 \
  }
  for (int64_t kk = 0; kk < kc_grouped; kk += 16) {
#pragma GCC unroll 16
    for (int u = 0; u < 16; ++u)
      MG_MICRO_STEP(kk + u, kk + kBf16GroupOrder[u])
  }
#pragma GCC unroll 4
  for (int64_t kk = kc_grouped; kk < kc; ++kk)
    MG_MICRO_STEP(kk, kk)
#undef MG_MICRO_STEP
#undef MG_MICRO_ROW
  if constexpr (MR > 0) StoreRow(c00, c01, c02, accumulate, c);
  if constexpr (MR > 1) StoreRow(c10, c11, c12, accumulate, c + kPanelCols);
  if constexpr (MR > 2) StoreRow(c20, c21, c22, accumulate, c + 2 * kPanelCols);
  if constexpr (MR > 3) StoreRow(c30, c31, c32, accumulate, c + 3 * kPanelCols);
}

// c[m * 24 + j] = sum_k a[m * lda + k] * rows[j][k] for m < num_rows (<= kBlockRows),
// j < 24. `pack` holds kBlockK * 24 floats; `next_rows` (or null) is the
// panel to prefetch after this one.
template <WType W>
MG_AVX2 void GemmPanel(const float* a, int64_t lda, int64_t num_rows, const WElem<W>* const* rows,
                       const WElem<W>* const* next_rows, int64_t k, float* pack, float* c,
                       const void* const* scale_rows = nullptr, int64_t block_cols = 0) {
  const int64_t num_calls = (num_rows + kMicroRows - 1) / kMicroRows;
  for (int64_t k0 = 0; k0 < k; k0 += kBlockK) {
    const int64_t kc = std::min(kBlockK, k - k0);
    PackPanel<W>(rows, k0, kc, pack, scale_rows, block_cols);
    // The next block (the rest of these rows, or after the last block the
    // first block of the next panel) streams into L2 while this one is
    // computed, its prefetches spread over the micro-kernel calls.
    const int64_t next = k0 + kc;
    const WElem<W>* const* prefetch_rows = next < k ? rows : next_rows;
    const int64_t prefetch_k0 = next < k ? next : 0;
    const int64_t prefetch_bytes =
        ElemOffset<W>(std::min(kBlockK, k - prefetch_k0)) * static_cast<int64_t>(sizeof(WElem<W>));
    const int64_t kc_grouped = GroupsBy16<W>() ? kc & ~int64_t{15} : 0;
    const bool accumulate = k0 > 0;
    int64_t m0 = 0;
    for (int64_t call = 0; m0 + kMicroRows <= num_rows; m0 += kMicroRows, ++call) {
      if (prefetch_rows) {
        PrefetchRows<W>(prefetch_rows, static_cast<int>(kPanelCols * call / num_calls),
                        static_cast<int>(kPanelCols * (call + 1) / num_calls), prefetch_k0,
                        prefetch_bytes);
      }
      MicroKernel<kMicroRows>(kc, kc_grouped, a + m0 * lda + k0, lda, pack, c + m0 * kPanelCols,
                              accumulate);
    }
    if (prefetch_rows && m0 < num_rows) {
      PrefetchRows<W>(prefetch_rows, static_cast<int>(kPanelCols * (num_calls - 1) / num_calls),
                      kPanelCols, prefetch_k0, prefetch_bytes);
    }
    const float* a_tail = a + m0 * lda + k0;
    float* c_tail = c + m0 * kPanelCols;
    switch (num_rows - m0) {
      case 1:
        MicroKernel<1>(kc, kc_grouped, a_tail, lda, pack, c_tail, accumulate);
        break;
      case 2:
        MicroKernel<2>(kc, kc_grouped, a_tail, lda, pack, c_tail, accumulate);
        break;
      case 3:
        MicroKernel<3>(kc, kc_grouped, a_tail, lda, pack, c_tail, accumulate);
        break;
      default:
        break;
    }
  }
}

// ---- Row-block drivers -------------------------------------------------------------

// Rows up to this many use dot-product tiles; more use the packed GEMM.
constexpr int64_t kMaxGemvRows = kMaxDotActRows;

class Q8Rows;  // simd_q8.h

// out[r * out_stride + j] = x[r] . wg[j], or silu(x[r] . wg[j]) * (x[r] . wu[j])
// when wu is set, for r < num_rows, with x rows k apart.
struct MatmulBlock {
  const float* x = nullptr;  // [num_rows, k]
  const void* wg = nullptr;  // [n, k]
  const void* wu = nullptr;  // [n, k] or null
  float* out = nullptr;      // [num_rows, out_stride]
  int64_t k = 0, n = 0, out_stride = 0, num_rows = 0;
  WeightScales scales;  // Scaled<W>() only
  // Weights that round their input to int8 (RoundsInputToInt8): x's rows rounded, row r of
  // this block at q8->Row(q8_row0 + r), for the integer dot products and GEMM (x is then not
  // read). Null: x as it is.
  const Q8Rows* q8 = nullptr;
  int64_t q8_row0 = 0;
};

// Output columns per packed panel: 24 weight rows, or 12 gate + 12 up rows.
inline int64_t PanelCols(const MatmulBlock& b) {
  return b.wu ? kPanelCols / 2 : kPanelCols;
}

inline float Silu(float a) {
  return a / (1.0f + std::exp(-a));
}

// Columns [c0, c1) of out_rows[m][j] = x_rows[m] . wg[j] (or silu(x_rows[m] .
// wg[j]) * (x_rows[m] . wu[j]) when wu is set) for m < mr <= kMaxDotActRows,
// with weights [n, k], by dot tiles.
template <WType W>
MG_AVX2 void GemvColumns(const float* const* x_rows, float* const* out_rows, int mr,
                         const WElem<W>* wg, const WElem<W>* wu, int64_t k, int64_t n, int64_t c0,
                         int64_t c1, const WeightScales& scales = {}) {
  // Fused: weight rows alternate gate, up, so one tile reads both in one pass.
  const int rows_per_col = wu ? 2 : 1;
  const int max_cols = MaxDotRows(mr) / rows_per_col;
  float result[kMaxDotActRows * 8];
  const WElem<W>* w_rows[8];
  const WElem<W>* next_rows[8];
  const void* s_rows[8] = {};
  for (int64_t j = c0; j < c1; j += max_cols) {
    const int cols = static_cast<int>(std::min<int64_t>(max_cols, c1 - j));
    const int nr = cols * rows_per_col;
    for (int c = 0; c < max_cols; ++c) {
      // The next tile's rows may lie past c1 (another thread's or another
      // call's): prefetching them is harmless as long as they exist.
      const bool exists = j + max_cols + c < n;
      if (c < cols) {
        w_rows[c * rows_per_col] = wg + ElemOffset<W>((j + c) * k);
        if (wu) w_rows[c * rows_per_col + 1] = wu + ElemOffset<W>((j + c) * k);
        if constexpr (Scaled<W>()) {
          s_rows[c * rows_per_col] = scales.GateScaleRow(j + c);
          if (wu) s_rows[c * rows_per_col + 1] = scales.UpScaleRow(j + c);
        }
      }
      const int64_t next_offset = ElemOffset<W>((j + max_cols + c) * k);
      next_rows[c * rows_per_col] = exists ? wg + next_offset : nullptr;
      if (wu) next_rows[c * rows_per_col + 1] = exists ? wu + next_offset : nullptr;
    }
    PickDotTile<W>(mr, nr)(x_rows, w_rows, k, result, next_rows, s_rows, scales.block_cols);
    for (int m = 0; m < mr; ++m) {
      float* out_row = out_rows[m] + j;
      const float* r = result + m * nr;
      for (int c = 0; c < cols; ++c)
        out_row[c] = wu ? Silu(r[2 * c]) * r[2 * c + 1] : r[c];
    }
  }
}

// Columns [c0, c1) of a block of at most kMaxDotActRows rows, with dot tiles.
template <WType W>
void MatmulGemv(const MatmulBlock& b, int64_t c0, int64_t c1) {
  const int mr = static_cast<int>(b.num_rows);
  const float* x_rows[kMaxDotActRows];
  float* out_rows[kMaxDotActRows];
  for (int m = 0; m < mr; ++m) {
    x_rows[m] = b.x + m * b.k;
    out_rows[m] = b.out + m * b.out_stride;
  }
  GemvColumns<W>(x_rows, out_rows, mr, static_cast<const WElem<W>*>(b.wg),
                 static_cast<const WElem<W>*>(b.wu), b.k, b.n, c0, c1, b.scales);
}

// out[0, cols) = silu(gate[0, cols)) * up[0, cols) for cols <= 12 (a fused panel's row).
MG_AVX2_INLINE void SiluMulRow12(const float* gate, const float* up, int64_t cols, float* out) {
  alignas(32) float result[16];
  _mm256_store_ps(result, SiluMul8(_mm256_loadu_ps(gate), _mm256_loadu_ps(up)));
  const __m256 gate_hi = _mm256_castps128_ps256(_mm_loadu_ps(gate + 8));
  const __m256 up_hi = _mm256_castps128_ps256(_mm_loadu_ps(up + 8));
  _mm_store_ps(result + 8, _mm256_castps256_ps128(SiluMul8(gate_hi, up_hi)));
  if (cols == 12) {
    _mm256_storeu_ps(out, _mm256_load_ps(result));
    _mm_storeu_ps(out + 8, _mm_load_ps(result + 8));
  } else {
    for (int64_t c = 0; c < cols; ++c)
      out[c] = result[c];
  }
}

// The weight rows of panel q. Columns past n repeat the last row: their
// results are never stored, and the pack needs no null checks.
template <WType W>
void PanelRows(const MatmulBlock& b, int64_t q, const WElem<W>** rows,
               const void** scale_rows = nullptr) {
  const auto* wg = static_cast<const WElem<W>*>(b.wg);
  const auto* wu = static_cast<const WElem<W>*>(b.wu);
  const int64_t panel_cols = PanelCols(b);
  const int64_t j0 = q * panel_cols;
  const int64_t last = std::min(panel_cols, b.n - j0) - 1;
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

// Panels [panel_begin, panel_end) (PanelCols columns each) of a block of any
// number of rows, with the packed GEMM. `next` (or null): the block whose
// panel panel_begin comes next, to prefetch after the last panel.
template <WType W>
MG_AVX2 void MatmulGemm(const MatmulBlock& b, int64_t panel_begin, int64_t panel_end,
                        const MatmulBlock* next = nullptr) {
  alignas(32) float pack[kBlockK * kPanelCols];
  alignas(32) float tile[kBlockRows * kPanelCols];
  const int64_t panel_cols = PanelCols(b);
  const WElem<W>* rows[kPanelCols];
  const WElem<W>* next_rows[kPanelCols] = {};
  const void* scale_rows[kPanelCols] = {};
  const void* next_scale_rows[kPanelCols] = {};
  PanelRows<W>(b, panel_begin, rows, scale_rows);
  for (int64_t q = panel_begin; q < panel_end; ++q) {
    const int64_t j0 = q * panel_cols;
    const int64_t cols = std::min(panel_cols, b.n - j0);
    const bool has_next = q + 1 < panel_end || next != nullptr;
    if (q + 1 < panel_end) {
      PanelRows<W>(b, q + 1, next_rows, next_scale_rows);
    } else if (next) {
      PanelRows<W>(*next, panel_begin, next_rows, next_scale_rows);
    }
    for (int64_t r0 = 0; r0 < b.num_rows; r0 += kBlockRows) {
      const int64_t mr = std::min(kBlockRows, b.num_rows - r0);
      GemmPanel<W>(b.x + r0 * b.k, b.k, mr, rows, has_next ? next_rows : nullptr, b.k, pack, tile,
                   scale_rows, b.scales.block_cols);
      for (int64_t m = 0; m < mr; ++m) {
        float* out_row = b.out + (r0 + m) * b.out_stride + j0;
        const float* t = tile + m * kPanelCols;
        if (b.wu) {
          SiluMulRow12(t, t + panel_cols, cols, out_row);
        } else {
          for (int64_t c = 0; c < cols; ++c)
            out_row[c] = t[c];
        }
      }
    }
    std::copy(next_rows, next_rows + kPanelCols, rows);
    std::copy(next_scale_rows, next_scale_rows + kPanelCols, scale_rows);
  }
}

// The columns of panels [panel_begin, panel_end), clamped to n.
inline void PanelColumns(const MatmulBlock& b, int64_t panel_begin, int64_t panel_end, int64_t* c0,
                         int64_t* c1) {
  *c0 = std::min(b.n, panel_begin * PanelCols(b));
  *c1 = std::min(b.n, panel_end * PanelCols(b));
}

// MatmulGemm with AVX-512 (simd_gemm512.cc, explicitly instantiated for every WType):
// columns [c0, c1) of a block, by 48-column panels (24 gate + 24 up rows when fused) and an
// 8 x 48 micro-kernel. It sums every output over k in MatmulGemm's order (the same k blocks,
// the same bf16 16-k grouping), so its results are bit for bit MatmulGemm's. `next` (or null):
// the block whose columns c0.. come next, to prefetch.
template <WType W>
void MatmulGemmAvx512(const MatmulBlock& b, int64_t c0, int64_t c1, const MatmulBlock* next);

// Columns [c0, c1) of a block of bf16 weights with AMX tiles (amx_gemm.cc; only when
// SelectedCpuIsa() is kAmx): the weights multiply as they lie in memory, the activations
// split exactly into three bf16 parts, so every product is exact and only the f32 sums round
// (in the tiles' order: results within f32 rounding of MatmulGemmAvx512's, not its bits; the
// same bits at any thread split).
void MatmulGemmAmx(const MatmulBlock& b, int64_t c0, int64_t c1);

// Columns [c0, c1) of a block of at most kMaxDotActRows rows with b.q8 set, by integer dot
// products (q8_gemv.cc).
void MatmulGemvQ8(const MatmulBlock& b, int64_t c0, int64_t c1, WType wtype);

// Whether the integer products use AVX512-VNNI (SelectedCpuIsa() includes kAvx512 and the CPU has
// it; else AVX2's vpmaddubsw + vpmaddwd).
bool Q8DotUsesVnni();

// Columns [c0, c1) of a block of any number of rows with b.q8 set, by the integer GEMM
// (q8_gemm.cc): the same bits with AVX512-VNNI and AVX2.
void MatmulGemmQ8(const MatmulBlock& b, int64_t c0, int64_t c1, WType wtype);

// Panels [panel_begin, panel_end) of a block, by dot tiles or the GEMM (the AMX one for bf16
// weights when SelectedCpuIsa() is kAmx, the AVX-512 one when it includes kAvx512), or with
// b.q8 their integer forms. `next` (or null): the block
// computed after this one, for prefetching.
template <WType W>
void MatmulPanels(const MatmulBlock& b, int64_t panel_begin, int64_t panel_end,
                  const MatmulBlock* next = nullptr) {
  if (b.num_rows <= 0 || panel_begin >= panel_end) return;
  int64_t c0, c1;
  PanelColumns(b, panel_begin, panel_end, &c0, &c1);
  if (b.q8) {
    if (b.num_rows <= kMaxGemvRows) {
      MatmulGemvQ8(b, c0, c1, W);
    } else {
      MatmulGemmQ8(b, c0, c1, W);
    }
  } else if (b.num_rows <= kMaxGemvRows) {
    MatmulGemv<W>(b, c0, c1);
  } else if (W == WType::kBF16 && SelectedCpuIsa() == CpuIsa::kAmx) {
    MatmulGemmAmx(b, c0, c1);
  } else if (CpuIsaAtLeast(CpuIsa::kAvx512)) {
    MatmulGemmAvx512<W>(b, c0, c1, next);
  } else {
    MatmulGemm<W>(b, panel_begin, panel_end, next);
  }
}

}  // namespace moegraph::simd
