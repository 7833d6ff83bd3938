// The prefill GEMM of bf16 weights with AMX tiles (MatmulGemmAmx in simd_gemm.h).
//
// C^T = W . X^T: the tiles' A operand is 16 weight rows x 32 k, loaded straight from the
// weight as it lies in memory (row stride k * 2 bytes, no packing); the B operand is 16 pairs
// of k x 16 tokens, the activations transposed once per block of tokens into a buffer that
// every panel of the thread's columns reuses. One TDPBF16PS multiplies 16 x 16 x 32.
//
// f32 activations become three bf16 parts, x = hi + mid + lo exactly (hi keeps x's top 8
// significand bits, mid the next 8, lo the rest), and each tile step multiplies the weights
// by all three into the same f32 accumulators. A bf16 x bf16 product is exact in f32, so
// every product is exact and only the sums round, in the tiles' order: the results are
// within f32 rounding of the FMA GEMM's, not its bits, and the same bits at any thread split
// (one thread sums one output, over k in one order, whatever the row or column blocks). A
// non-finite activation gives NaN (inf - inf in the split).
//
// Tile registers: C[a][t] = tmm(2a + t) for weight tile a and token tile t, A = tmm4-5,
// B = tmm6-7; every tile is 16 rows x 64 bytes. A k tail (k % 32) and weight tiles that run
// past the last row are copied into zero-padded buffers: the tiles never read past the weight,
// and zeros (not whatever follows it) meet the B buffer's zero padding.

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

#define MG_AMX_TARGET "amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#define MG_AMX __attribute__((target(MG_AMX_TARGET)))
#define MG_AMX_INLINE __attribute__((target(MG_AMX_TARGET), always_inline)) inline

namespace moegraph::simd {
namespace {

constexpr int kTile = 16;                  // tile rows; tokens per B / C tile
constexpr int kStepK = 32;                 // k per tile product: a 64-byte row of bf16
constexpr int kParts = 3;                  // bf16 parts of an f32 activation
constexpr int kTileWords = kTile * kTile;  // dwords in a 1 KiB tile
// Token tiles transposed per block: up to 4 (64 tokens), fewer when k is long, so the block's
// buffer stays in L2 next to the weight panel.
constexpr int kMaxTokenTiles = 4;
constexpr int64_t kBufferBudget = int64_t{1} << 20;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// Transposes 16 x 16 dwords in place: r[i] lane j becomes r[j] lane i.
MG_AMX_INLINE void Transpose16x16(__m512i* r) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: (a0 b0 a1 b1), (a2 b2 a3 b3)
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + j] lane L: rows i..i+3 at column 4L + j
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int j = 0; j < 4; ++j) {  // the 4 x 4 transpose of 128-bit lanes of u[j], u[4 + j], ...
    const __m512i p0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
    const __m512i p1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
    const __m512i p2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i p3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_i32x4(p0, p2, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(p1, p3, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(p0, p2, 0xDD);
    r[12 + j] = _mm512_shuffle_i32x4(p1, p3, 0xDD);
  }
}

// The high 16 bits of a's 16 dwords then b's: 32 bf16 in order, as 16 dwords of k pairs.
MG_AMX_INLINE __m512i HighHalves(__m512i a, __m512i b) {
  alignas(64) static constexpr uint16_t kOdd[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21,
                                                    23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43,
                                                    45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
  return _mm512_permutex2var_epi16(a, _mm512_load_si512(kOdd), b);
}

// The three bf16 parts of 32 activations (k order) as rows of 16 k pairs: part[0] = hi,
// part[1] = mid, part[2] = lo, hi + mid + lo == x (each a truncation of the remainder).
MG_AMX_INLINE void SplitRow(__m512 x0, __m512 x1, __m512i* part) {
  const __m512i top = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  __m512i h[2][kParts];
  const __m512 x[2] = {x0, x1};
  for (int v = 0; v < 2; ++v) {
    const __m512i hi = _mm512_and_si512(_mm512_castps_si512(x[v]), top);
    const __m512 r1 = _mm512_sub_ps(x[v], _mm512_castsi512_ps(hi));
    const __m512i mid = _mm512_and_si512(_mm512_castps_si512(r1), top);
    const __m512 r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(mid));
    h[v][0] = hi;
    h[v][1] = mid;
    h[v][2] = _mm512_castps_si512(r2);  // at most 8 significand bits: its high half is exact
  }
  for (int p = 0; p < kParts; ++p)
    part[p] = HighHalves(h[0][p], h[1][p]);
}

// Where tile (token tile t, k step s, part p) of a block's B buffer starts, in dwords.
inline int64_t BTile(int64_t t, int64_t s, int p, int64_t steps) {
  return ((t * steps + s) * kParts + p) * kTileWords;
}

// Token tiles [0, token_tiles) of rows [r0, r0 + 16 * token_tiles) of x (rows past num_rows
// and k past `k` are zeros) into `buf`: per tile, step and part, 16 rows of k pairs by 16
// tokens. Each token's row is read once, in order, and its parts stored as the tile's rows;
// then each tile is transposed in place (from L2).
MG_AMX void TransposeTokens(const float* x, int64_t k, int64_t r0, int64_t num_rows,
                            int64_t token_tiles, int64_t steps, uint32_t* buf) {
  for (int64_t t = 0; t < token_tiles; ++t) {
    for (int m = 0; m < kTile; ++m) {
      const int64_t row = r0 + t * kTile + m;
      for (int64_t s = 0; s < steps; ++s) {
        __m512i part[kParts] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                                _mm512_setzero_si512()};
        if (row < num_rows) {
          const int64_t k0 = s * kStepK;
          const int64_t left = std::min<int64_t>(kStepK, k - k0);
          const auto m0 = static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
          const auto m1 = static_cast<__mmask16>(left >= 32   ? 0xFFFF
                                                 : left <= 16 ? 0
                                                              : (1u << (left - 16)) - 1);
          const float* src = x + row * k + k0;
          SplitRow(_mm512_maskz_loadu_ps(m0, src), _mm512_maskz_loadu_ps(m1, src + 16), part);
        }
        for (int p = 0; p < kParts; ++p)
          _mm512_storeu_si512(buf + BTile(t, s, p, steps) + m * kTile, part[p]);
      }
    }
    for (int64_t s = 0; s < steps; ++s) {
      for (int p = 0; p < kParts; ++p) {
        uint32_t* tile = buf + BTile(t, s, p, steps);
        __m512i r[kTile];
        for (int i = 0; i < kTile; ++i)
          r[i] = _mm512_loadu_si512(tile + i * kTile);
        Transpose16x16(r);
        for (int i = 0; i < kTile; ++i)
          _mm512_storeu_si512(tile + i * kTile, r[i]);
      }
    }
  }
}

// Where one weight tile's rows come from: `direct` k steps straight from the weight (rows
// `stride` bytes apart), the rest (a k tail) from `tail`, 16 rows x 32 zero-padded.
struct WeightTile {
  const uint16_t* rows = nullptr;
  int64_t stride = 0;
  int64_t direct = 0;
  const uint16_t* tail = nullptr;
};

// Weight tile of rows [j, j + 16) of w ([n, k] bf16): straight from w when they exist, else
// from `padded` ([16, steps * 32], the rows past n and k zeros); a k tail from `tail`.
WeightTile MakeWeightTile(const uint16_t* w, int64_t j, int64_t n, int64_t k, int64_t steps,
                          std::vector<uint16_t>* padded, uint16_t* tail) {
  WeightTile tile;
  if (j + kTile <= n) {
    tile.rows = w + j * k;
    tile.stride = k * 2;
    tile.direct = k / kStepK;
    if (tile.direct < steps) {
      const int64_t k0 = tile.direct * kStepK;
      std::fill(tail, tail + kTile * kStepK, uint16_t{0});
      for (int i = 0; i < kTile; ++i)
        std::memcpy(tail + i * kStepK, tile.rows + i * k + k0, static_cast<size_t>(k - k0) * 2);
      tile.tail = tail;
    }
    return tile;
  }
  const int64_t width = steps * kStepK;
  padded->assign(static_cast<size_t>(kTile * width), 0);
  for (int64_t i = 0; i < std::max<int64_t>(0, n - j); ++i)
    std::memcpy(padded->data() + i * width, w + (j + i) * k, static_cast<size_t>(k) * 2);
  tile.rows = padded->data();
  tile.stride = width * 2;
  tile.direct = steps;
  return tile;
}

MG_AMX_INLINE void LoadWeightTiles(const WeightTile& a0, const WeightTile& a1, int64_t s) {
  if (s < a0.direct) {
    _tile_loadd(4, a0.rows + s * kStepK, a0.stride);
  } else {
    _tile_loadd(4, a0.tail, kStepK * 2);
  }
  if (s < a1.direct) {
    _tile_loadd(5, a1.rows + s * kStepK, a1.stride);
  } else {
    _tile_loadd(5, a1.tail, kStepK * 2);
  }
}

// c[(2a + t) * 256 + i * 16 + m] = sum over k of weight tile a's row i times token m of
// token tile t, for t < kTokenTiles (1 or 2), over all steps of the B buffer `b` (at its
// first token tile; `steps` apart per tile). The weights stream in by the hardware
// prefetchers: software prefetches of the next lines or the next panel measured no faster.
template <int kTokenTiles>
MG_AMX void MultiplyPanel(const WeightTile& a0, const WeightTile& a1, const uint32_t* b,
                          int64_t steps, float* c) {
  static_assert(kTokenTiles == 1 || kTokenTiles == 2, "one or two token tiles");
  _tile_zero(0);
  _tile_zero(2);
  if constexpr (kTokenTiles == 2) {
    _tile_zero(1);
    _tile_zero(3);
  }
  for (int64_t s = 0; s < steps; ++s) {
    LoadWeightTiles(a0, a1, s);
    for (int p = 0; p < kParts; ++p) {
      _tile_loadd(6, b + BTile(0, s, p, steps), 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (kTokenTiles == 2) {
        _tile_loadd(7, b + BTile(1, s, p, steps), 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
  _tile_stored(0, c, 64);
  _tile_stored(2, c + 2 * kTileWords, 64);
  if constexpr (kTokenTiles == 2) {
    _tile_stored(1, c + kTileWords, 64);
    _tile_stored(3, c + 3 * kTileWords, 64);
  }
}

// tile (16 weight rows x 16 tokens, f32) transposed into dst[m * 16 + i].
MG_AMX void TransposeTile(const float* tile, float* dst) {
  __m512i r[kTile];
  for (int i = 0; i < kTile; ++i)
    r[i] = _mm512_castps_si512(_mm512_loadu_ps(tile + i * kTile));
  Transpose16x16(r);
  for (int i = 0; i < kTile; ++i)
    _mm512_storeu_ps(dst + i * kTile, _mm512_castsi512_ps(r[i]));
}

// out[m * stride + c] = silu(g[m * 16 + c]) * u[m * 16 + c] for m < rows, c < cols (<= 16).
MG_AVX2 void SiluMulRows(const float* g, const float* u, int64_t rows, int64_t cols, float* out,
                         int64_t stride) {
  for (int64_t m = 0; m < rows; ++m) {
    alignas(32) float result[kTile];
    _mm256_store_ps(result,
                    SiluMul8(_mm256_loadu_ps(g + m * kTile), _mm256_loadu_ps(u + m * kTile)));
    _mm256_store_ps(result + 8, SiluMul8(_mm256_loadu_ps(g + m * kTile + 8),
                                         _mm256_loadu_ps(u + m * kTile + 8)));
    std::copy(result, result + cols, out + m * stride);
  }
}

}  // namespace

MG_AMX void MatmulGemmAmx(const MatmulBlock& b, int64_t c0, int64_t c1) {
  if (c0 >= c1 || b.num_rows <= 0) return;
  const TileConfig config;
  _tile_loadconfig(&config);
  const int64_t k = b.k, steps = (k + kStepK - 1) / kStepK;
  const int64_t panel_cols = b.wu ? kTile : 2 * kTile;  // 16 gate + 16 up rows, or 32 rows
  const int64_t all_tiles = (b.num_rows + kTile - 1) / kTile;
  const int64_t block_tiles =
      std::clamp<int64_t>(kBufferBudget / (steps * kParts * kTileWords * 4), 2, kMaxTokenTiles);
  // The B buffer, 64-byte aligned: its rows are whole cache lines.
  static thread_local std::vector<uint32_t> storage;
  static thread_local std::vector<uint16_t> padded[2];
  alignas(64) uint16_t tail[2][kTile * kStepK];
  alignas(64) float c[4 * kTileWords];
  alignas(64) float ct[2][kTileWords];
  const auto* wg = static_cast<const uint16_t*>(b.wg);
  const auto* wu = static_cast<const uint16_t*>(b.wu);
  for (int64_t t0 = 0; t0 < all_tiles; t0 += block_tiles) {
    const int64_t tiles = std::min(block_tiles, all_tiles - t0);
    storage.resize(static_cast<size_t>(tiles * steps * kParts * kTileWords + kTile));
    const uintptr_t misalign = reinterpret_cast<uintptr_t>(storage.data()) % 64;
    uint32_t* buf = storage.data() + (misalign ? (64 - misalign) / 4 : 0);
    TransposeTokens(b.x, k, t0 * kTile, b.num_rows, tiles, steps, buf);
    for (int64_t j0 = c0; j0 < c1; j0 += panel_cols) {
      const WeightTile a0 = MakeWeightTile(wg, j0, b.n, k, steps, &padded[0], tail[0]);
      const WeightTile a1 = wu ? MakeWeightTile(wu, j0, b.n, k, steps, &padded[1], tail[1])
                               : MakeWeightTile(wg, j0 + kTile, b.n, k, steps, &padded[1], tail[1]);
      for (int64_t t = 0; t < tiles; t += 2) {
        const uint32_t* bt = buf + BTile(t, 0, 0, steps);
        const int pair = tiles - t >= 2 ? 2 : 1;
        if (pair == 2) {
          MultiplyPanel<2>(a0, a1, bt, steps, c);
        } else {
          MultiplyPanel<1>(a0, a1, bt, steps, c);
        }
        for (int q = 0; q < pair; ++q) {
          const int64_t row0 = (t0 + t + q) * kTile;
          const int64_t rows = std::min<int64_t>(kTile, b.num_rows - row0);
          float* out = b.out + row0 * b.out_stride;
          for (int a = 0; a < 2; ++a)
            TransposeTile(c + (2 * a + q) * kTileWords, ct[a]);
          if (wu) {
            SiluMulRows(ct[0], ct[1], rows, std::min<int64_t>(kTile, c1 - j0), out + j0,
                        b.out_stride);
            continue;
          }
          for (int a = 0; a < 2; ++a) {
            const int64_t col0 = j0 + a * kTile;
            const int64_t cols = std::min<int64_t>(kTile, c1 - col0);
            for (int64_t m = 0; m < rows && cols > 0; ++m)
              std::copy(ct[a] + m * kTile, ct[a] + m * kTile + cols, out + m * b.out_stride + col0);
          }
        }
      }
    }
  }
  _tile_release();
}

}  // namespace moegraph::simd
