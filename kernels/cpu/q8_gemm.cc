// The prefill rows of int8 / int4 matmuls whose inputs are rounded to int8 (simd_q8.h), by
// integer products: AVX512-VNNI's vpdpbusd (64 byte products an instruction, where the f32
// GEMM does 16 multiply-adds) or AVX2's vpmaddubsw + vpmaddwd.
//
// Panels of 32 output columns (16 gate + 16 up when fused) are packed per 8 blocks of 32
// inputs: for each block, its 8 groups of 4 inputs as [32 columns][4 bytes], the columns'
// block scales, and (VNNI, int8) 128 x each column's block sum of weights. A micro-kernel
// (VNNI: 6 rows x 32 columns in zmm; AVX2: 4 rows x 16 columns in ymm, twice) sums each (row,
// column, block) exactly in int32 lanes and adds it to its f32 output by one FMA times the
// weight's scale times the input's, block after block in order:
//   VNNI int8: the input + 128 (u8) x the weights (s8), 128 x the weights' sum taken out;
//   AVX2 int8: |w| (u8) x the input with w's sign (s8);
//   int4: the nibbles, each code + 8 (u8), x the input (s8), 8 x the input's sum taken out.
// The block sums are the same integers and the f32 operations the same, so both ISAs give
// the same bits, at any thread split; they differ from the reference (WeightMatrix::MatmulDot:
// the same block sums, scaled and added without the FMA) by f32 rounding only.

// GCC 12 warns "may be used uninitialized" inside AVX-512 intrinsics that pass
// _mm512_undefined_*() as their unused merge source once inlined (GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/simd_gemm.h"
#include "kernels/cpu/simd_q8.h"

// A superset of MG_AVX2's features, so MG_AVX2_INLINE helpers inline into these.
#define MG_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace moegraph::simd {
namespace {

constexpr int kCols = 32;        // output columns per panel: two zmm, four ymm
constexpr int kMaxRows = 6;      // input rows per micro-kernel call (VNNI 6, AVX2 4)
constexpr int kChunkBlocks = 8;  // blocks of 32 inputs per packed chunk

// One packed chunk of a panel: per block, its 8 groups of 4 inputs for the 32 columns,
// the columns' scales and (int8) 128 x their weight sums.
struct Chunk {
  alignas(64) uint8_t b[kChunkBlocks][8][kCols * 4];
  alignas(64) float scale[kChunkBlocks][kCols];
  alignas(64) int32_t corr[kChunkBlocks][kCols];
  int num_blocks = 0;
};

// Where input group g (0..7) of block b starts in a Q8Row (and in the weights' block order):
// int8 in input order; int4 in the pair layout (the low nibbles' 4 groups, then the high's).
int64_t GroupOffset(bool int4, int64_t b, int g) {
  if (!int4) return b * kQ8Block + 4 * g;
  return b / 2 * 64 + (g < 4 ? 0 : 32) + (b % 2) * 16 + 4 * (g % 4);
}

// The 32 bytes of block b of column `w` in group order: int8 its inputs; int4 the low
// nibbles of its 16 bytes (groups 0-3), then the high ones (groups 4-7).
MG_AVX2_INLINE __m256i BlockBytes(bool int4, const void* w, int64_t b) {
  if (!int4) {
    return _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const int8_t*>(w) + b * kQ8Block));
  }
  const __m128i v = _mm_loadu_si128(
      reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(w) + b * (kQ8Block / 2)));
  const __m128i nibble = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), nibble), _mm_and_si128(v, nibble));
}

// The next chunk's bytes and scales of every column into L1: 32 streams are more than the
// hardware prefetcher follows.
MG_AVX2_INLINE void PrefetchNextChunk(bool int4, const void* const* cols,
                                      const float* const* scale_rows, int64_t block_cols,
                                      int64_t b0, int64_t num_blocks) {
  if (b0 + kChunkBlocks >= num_blocks) return;
  const int64_t block_bytes = int4 ? kQ8Block / 2 : kQ8Block;
  for (int j = 0; j < kCols; ++j) {
    const char* next = static_cast<const char*>(cols[j]) + (b0 + kChunkBlocks) * block_bytes;
    for (int64_t line = 0; line < kChunkBlocks * block_bytes; line += 64)
      _mm_prefetch(next + line, _MM_HINT_T0);
    _mm_prefetch(
        reinterpret_cast<const char*>(scale_rows[j] + (b0 + kChunkBlocks) * kQ8Block / block_cols),
        _MM_HINT_T0);
  }
}

// Packs blocks [b0, b0 + count) of the panel's columns `cols` (weight rows, kCols of them;
// their scale rows `scale_rows`): per block and 16 columns, the 16 blocks' 8 groups of 4
// bytes transposed (an 8 x 8 dword transpose in each 256-bit half) into 8 vectors, and for
// int8 128 x each column's block sum.
MG_VNNI void PackChunkVnni(bool int4, const void* const* cols, const float* const* scale_rows,
                           int64_t block_cols, int64_t b0, int count, int64_t num_blocks,
                           Chunk* chunk) {
  chunk->num_blocks = count;
  PrefetchNextChunk(int4, cols, scale_rows, block_cols, b0, num_blocks);
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int i = 0; i < count; ++i) {
    const int64_t b = b0 + i;
    const int64_t scale_col = b * kQ8Block / block_cols;
    for (int j = 0; j < kCols; ++j)
      chunk->scale[i][j] = scale_rows[j][scale_col];
    for (int half = 0; half < 2; ++half) {
      const void* const* c = cols + 16 * half;
      __m512i z[8];
      for (int p = 0; p < 8; ++p) {
        z[p] = _mm512_inserti64x4(_mm512_castsi256_si512(BlockBytes(int4, c[p], b)),
                                  BlockBytes(int4, c[p + 8], b), 1);
      }
      __m512i t[8], u[8];
      for (int p = 0; p < 8; p += 2) {
        t[p] = _mm512_unpacklo_epi32(z[p], z[p + 1]);
        t[p + 1] = _mm512_unpackhi_epi32(z[p], z[p + 1]);
      }
      for (int q = 0; q < 8; q += 4) {
        u[q] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
        u[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
        u[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
        u[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
      }
      __m512i sum = _mm512_setzero_si512();
      for (int g = 0; g < 4; ++g) {
        const __m512i first = _mm512_permutex2var_epi64(u[g], lo, u[g + 4]);
        const __m512i second = _mm512_permutex2var_epi64(u[g], hi, u[g + 4]);
        _mm512_store_si512(chunk->b[i][g] + 64 * half, first);
        _mm512_store_si512(chunk->b[i][g + 4] + 64 * half, second);
        if (!int4) {  // 128 x the weights' sum, lane by lane (u8 128 x s8)
          sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(-128), first);
          sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(-128), second);
        }
      }
      _mm512_store_si512(chunk->corr[i] + 16 * half, sum);
    }
  }
}

// c[m][0, 32) += the chunk's blocks for rows x[m], m < MR (c: rows kCols apart). int8: `a`
// rows are the inputs + 128 (u8) in input order; int4: the Q8Row bytes, `corr8` the rows'
// Q8Row::block_corr (8 x each block's input sum).
template <int MR, bool kInt4>
MG_VNNI void MicroKernelVnni(const Chunk& chunk, const uint8_t* const* a, const float* const* d,
                             const int32_t* const* corr8, int64_t b0, float* c) {
  __m512 acc[MR][2];
  for (int m = 0; m < MR; ++m) {
    acc[m][0] = _mm512_loadu_ps(c + m * kCols);
    acc[m][1] = _mm512_loadu_ps(c + m * kCols + 16);
  }
  for (int i = 0; i < chunk.num_blocks; ++i) {
    const int64_t b = b0 + i;
    __m512i isum[MR][2];
    for (int m = 0; m < MR; ++m)
      isum[m][0] = isum[m][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m512i w0 = _mm512_load_si512(chunk.b[i][g]);
      const __m512i w1 = _mm512_load_si512(chunk.b[i][g] + 64);
      const int64_t offset = GroupOffset(kInt4, b, g);
      for (int m = 0; m < MR; ++m) {
        int32_t quad;
        std::memcpy(&quad, a[m] + offset, 4);
        const __m512i x = _mm512_set1_epi32(quad);
        if constexpr (kInt4) {  // nibbles (u8) x inputs (s8)
          isum[m][0] = _mm512_dpbusd_epi32(isum[m][0], w0, x);
          isum[m][1] = _mm512_dpbusd_epi32(isum[m][1], w1, x);
        } else {  // inputs + 128 (u8) x weights (s8)
          isum[m][0] = _mm512_dpbusd_epi32(isum[m][0], x, w0);
          isum[m][1] = _mm512_dpbusd_epi32(isum[m][1], x, w1);
        }
      }
    }
    const __m512 s0 = _mm512_load_ps(chunk.scale[i]);
    const __m512 s1 = _mm512_load_ps(chunk.scale[i] + 16);
    const __m512i k0 = _mm512_load_si512(chunk.corr[i]);
    const __m512i k1 = _mm512_load_si512(chunk.corr[i] + 16);
    for (int m = 0; m < MR; ++m) {
      __m512i c0 = k0, c1 = k1;
      if constexpr (kInt4) c0 = c1 = _mm512_set1_epi32(corr8[m][b]);
      const __m512 dx = _mm512_set1_ps(d[m][b]);
      acc[m][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(isum[m][0], c0)),
                                  _mm512_mul_ps(s0, dx), acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(isum[m][1], c1)),
                                  _mm512_mul_ps(s1, dx), acc[m][1]);
    }
  }
  for (int m = 0; m < MR; ++m) {
    _mm512_storeu_ps(c + m * kCols, acc[m][0]);
    _mm512_storeu_ps(c + m * kCols + 16, acc[m][1]);
  }
}

// AVX2: the same pack, by 8 x 8 dword transposes of 8 columns' blocks; no weight sums (the
// AVX2 products take the weights' sign instead).
MG_AVX2 void PackChunkAvx2(bool int4, const void* const* cols, const float* const* scale_rows,
                           int64_t block_cols, int64_t b0, int count, int64_t num_blocks,
                           Chunk* chunk) {
  chunk->num_blocks = count;
  PrefetchNextChunk(int4, cols, scale_rows, block_cols, b0, num_blocks);
  for (int i = 0; i < count; ++i) {
    const int64_t b = b0 + i;
    const int64_t scale_col = b * kQ8Block / block_cols;
    for (int j = 0; j < kCols; ++j)
      chunk->scale[i][j] = scale_rows[j][scale_col];
    for (int group = 0; group < kCols / 8; ++group) {
      __m256 v[8];
      for (int j = 0; j < 8; ++j)
        v[j] = _mm256_castsi256_ps(BlockBytes(int4, cols[8 * group + j], b));
      // chunk->b[i][g] as 32 dwords (one a column): dword 8 * group + j is column j's group g.
      StoreTransposed8x8(v, reinterpret_cast<float*>(chunk->b[i][0]) + 8 * group, kCols);
    }
  }
}

// c[m][0, 32) += the chunk's blocks for rows m < MR <= 4, 16 columns at a time, by
// vpmaddubsw + vpmaddwd (exact: |u| <= 127 or <= 15, |s| <= 128). `a`: the Q8Row bytes;
// `corr8` (int4): the rows' Q8Row::block_corr.
template <int MR, bool kInt4>
MG_AVX2 void MicroKernelAvx2(const Chunk& chunk, const uint8_t* const* a, const float* const* d,
                             const int32_t* const* corr8, int64_t b0, float* c) {
  static_assert(MR >= 1 && MR <= 4, "MR is 1..4");
  const __m256i ones = _mm256_set1_epi16(1);
  for (int half = 0; half < 2; ++half) {
    for (int i = 0; i < chunk.num_blocks; ++i) {
      const int64_t b = b0 + i;
      __m256i isum[MR][2];
      for (int m = 0; m < MR; ++m)
        isum[m][0] = isum[m][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {
        const uint8_t* packed = chunk.b[i][g] + 64 * half;
        const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(packed));
        const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(packed + 32));
        const __m256i u0 = kInt4 ? w0 : _mm256_abs_epi8(w0);
        const __m256i u1 = kInt4 ? w1 : _mm256_abs_epi8(w1);
        const int64_t offset = GroupOffset(kInt4, b, g);
        for (int m = 0; m < MR; ++m) {
          int32_t quad;
          std::memcpy(&quad, a[m] + offset, 4);
          const __m256i x = _mm256_set1_epi32(quad);
          const __m256i s0 = kInt4 ? x : _mm256_sign_epi8(x, w0);
          const __m256i s1 = kInt4 ? x : _mm256_sign_epi8(x, w1);
          isum[m][0] =
              _mm256_add_epi32(isum[m][0], _mm256_madd_epi16(_mm256_maddubs_epi16(u0, s0), ones));
          isum[m][1] =
              _mm256_add_epi32(isum[m][1], _mm256_madd_epi16(_mm256_maddubs_epi16(u1, s1), ones));
        }
      }
      const __m256 sc0 = _mm256_load_ps(chunk.scale[i] + 16 * half);
      const __m256 sc1 = _mm256_load_ps(chunk.scale[i] + 16 * half + 8);
      for (int m = 0; m < MR; ++m) {
        const __m256i k = kInt4 ? _mm256_set1_epi32(corr8[m][b]) : _mm256_setzero_si256();
        const __m256 dx = _mm256_set1_ps(d[m][b]);
        float* out = c + m * kCols + 16 * half;
        _mm256_storeu_ps(out, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[m][0], k)),
                                              _mm256_mul_ps(sc0, dx), _mm256_loadu_ps(out)));
        _mm256_storeu_ps(out + 8,
                         _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[m][1], k)),
                                         _mm256_mul_ps(sc1, dx), _mm256_loadu_ps(out + 8)));
      }
    }
  }
}

// out[i] = q[i] + 128 as u8 (q ^ 0x80), i < k (a multiple of 32).
MG_AVX2 void Plus128(const int8_t* q, int64_t k, uint8_t* out) {
  for (int64_t i = 0; i < k; i += kQ8Block) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_xor_si256(v, _mm256_set1_epi8(-128)));
  }
}

using PackFn = void (*)(bool, const void* const*, const float* const*, int64_t, int64_t, int,
                        int64_t, Chunk*);
using MicroFn = void (*)(const Chunk&, const uint8_t* const*, const float* const*,
                         const int32_t* const*, int64_t, float*);

// One ISA's kernels: its pack, its micro-kernels by row count, and whether its int8 products
// take the inputs + 128.
struct Q8GemmKernels {
  PackFn pack;
  int rows;
  MicroFn int8[kMaxRows + 1];
  MicroFn int4[kMaxRows + 1];
  bool int8_inputs_plus_128;
};

constexpr Q8GemmKernels kVnni = {
    &PackChunkVnni,
    6,
    {nullptr, &MicroKernelVnni<1, false>, &MicroKernelVnni<2, false>, &MicroKernelVnni<3, false>,
     &MicroKernelVnni<4, false>, &MicroKernelVnni<5, false>, &MicroKernelVnni<6, false>},
    {nullptr, &MicroKernelVnni<1, true>, &MicroKernelVnni<2, true>, &MicroKernelVnni<3, true>,
     &MicroKernelVnni<4, true>, &MicroKernelVnni<5, true>, &MicroKernelVnni<6, true>},
    true};
constexpr Q8GemmKernels kAvx2 = {
    &PackChunkAvx2,
    4,
    {nullptr, &MicroKernelAvx2<1, false>, &MicroKernelAvx2<2, false>, &MicroKernelAvx2<3, false>,
     &MicroKernelAvx2<4, false>, nullptr, nullptr},
    {nullptr, &MicroKernelAvx2<1, true>, &MicroKernelAvx2<2, true>, &MicroKernelAvx2<3, true>,
     &MicroKernelAvx2<4, true>, nullptr, nullptr},
    false};

void Gemm(const MatmulBlock& b, int64_t c0, int64_t c1, bool int4, const Q8GemmKernels& isa) {
  const int64_t k = b.k, num_blocks = k / kQ8Block;
  const int64_t panel_cols = b.wu ? kCols / 2 : kCols;
  const int64_t row_bytes = int4 ? k / 2 : k;
  const int64_t num_rows = b.num_rows;
  // VNNI int8: the inputs + 128 (x ^ 0x80), rows k apart.
  static thread_local std::vector<uint8_t> plus_128;
  const bool shift = !int4 && isa.int8_inputs_plus_128;
  if (shift) {
    plus_128.resize(static_cast<size_t>(num_rows * k));
    for (int64_t r = 0; r < num_rows; ++r)
      Plus128(b.q8->Row(b.q8_row0 + r).q, k, plus_128.data() + r * k);
  }
  static thread_local std::vector<float> tile;  // [num_rows, kCols]: the panel's sums
  tile.resize(static_cast<size_t>(num_rows * kCols));
  Chunk chunk;
  const MicroFn* micro = int4 ? isa.int4 : isa.int8;
  const void* cols[kCols];
  const float* scale_rows[kCols];
  const uint8_t* a[kMaxRows];
  const float* d[kMaxRows];
  const int32_t* corr[kMaxRows];
  for (int64_t j0 = c0; j0 < c1; j0 += panel_cols) {
    const int64_t width = std::min(panel_cols, c1 - j0);
    // Columns past the panel's width repeat its last one (results never stored).
    for (int64_t i = 0; i < panel_cols; ++i) {
      const int64_t j = j0 + std::min(i, width - 1);
      cols[i] = static_cast<const uint8_t*>(b.wg) + j * row_bytes;
      scale_rows[i] = static_cast<const float*>(b.scales.GateScaleRow(j));
      if (b.wu) {
        cols[panel_cols + i] = static_cast<const uint8_t*>(b.wu) + j * row_bytes;
        scale_rows[panel_cols + i] = static_cast<const float*>(b.scales.UpScaleRow(j));
      }
    }
    std::fill(tile.begin(), tile.end(), 0.0f);
    for (int64_t blk = 0; blk < num_blocks; blk += kChunkBlocks) {
      // Packed once for every row: the chunk (10 KiB) stays in L1 for the micro-kernels.
      const int count = static_cast<int>(std::min<int64_t>(kChunkBlocks, num_blocks - blk));
      isa.pack(int4, cols, scale_rows, b.scales.block_cols, blk, count, num_blocks, &chunk);
      for (int64_t r0 = 0; r0 < num_rows; r0 += isa.rows) {
        const int mr = static_cast<int>(std::min<int64_t>(isa.rows, num_rows - r0));
        for (int m = 0; m < mr; ++m) {
          const Q8Row row = b.q8->Row(b.q8_row0 + r0 + m);
          a[m] = shift ? plus_128.data() + (r0 + m) * k : reinterpret_cast<const uint8_t*>(row.q);
          d[m] = row.d;
          corr[m] = row.block_corr;
        }
        micro[mr](chunk, a, d, corr, blk, tile.data() + r0 * kCols);
      }
    }
    for (int64_t m = 0; m < num_rows; ++m) {
      float* out = b.out + m * b.out_stride + j0;
      const float* t = tile.data() + m * kCols;
      for (int64_t c = 0; c < width; ++c)
        out[c] = b.wu ? Silu(t[c]) * t[panel_cols + c] : t[c];
    }
  }
}

}  // namespace

void MatmulGemmQ8(const MatmulBlock& b, int64_t c0, int64_t c1, WType wtype) {
  if (c0 >= c1 || b.num_rows <= 0) return;
  Gemm(b, c0, c1, wtype == WType::kInt4, Q8DotUsesVnni() ? kVnni : kAvx2);
}

}  // namespace moegraph::simd
