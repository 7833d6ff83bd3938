// Integer dot products of int8 / int4 weights with inputs rounded to int8 (simd_q8.h).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/simd_q8.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph::simd {

// ---- The dot products, once per instruction set ------------------------------------

namespace q8_avx2 {
#define MG_Q8_TARGET MG_AVX2
#define MG_Q8_INLINE MG_AVX2_INLINE
// vpmaddubsw sums pairs of byte products into int16 without saturating here: |w| <= 127
// and |x| <= 127 (2 * 127 * 127 < 32768), or nibbles <= 15 (two pairs: 4 * 15 * 127).
#define MG_Q8_DOT4(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
#define MG_Q8_DOT4X2(u, s, v, t)                                                              \
  _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(u, s), _mm256_maddubs_epi16(v, t)), \
                    _mm256_set1_epi16(1))
#include "kernels/cpu/q8_dot.inc"
#undef MG_Q8_DOT4X2
#undef MG_Q8_DOT4
#undef MG_Q8_INLINE
#undef MG_Q8_TARGET
}  // namespace q8_avx2

namespace q8_vnni {
#define MG_Q8_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))
#define MG_Q8_INLINE                                                                    \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c"), \
                 always_inline)) inline
#define MG_Q8_DOT4(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
#define MG_Q8_DOT4X2(u, s, v, t) _mm256_dpbusd_epi32(MG_Q8_DOT4(u, s), v, t)
#include "kernels/cpu/q8_dot.inc"
#undef MG_Q8_DOT4X2
#undef MG_Q8_DOT4
#undef MG_Q8_INLINE
#undef MG_Q8_TARGET
}  // namespace q8_vnni

namespace {

using DotInt8Fn = float (*)(const Q8Row&, const int8_t*, const float*, int64_t, int64_t,
                            const int8_t*);
using DotInt4Fn = float (*)(const Q8Row&, const uint8_t*, const float*, int64_t, int64_t,
                            const uint8_t*);

// How far ahead of the row it reads a dot product prefetches: about 4 KiB, so the lines
// arrive from DRAM before they are needed (one 1 KiB int4 row ahead is not enough).
constexpr int64_t kPrefetchBytes = 4096;

// x . row j of w (int8 or int4 codes, [n, k]) with scale row `s`, prefetching the row
// kPrefetchBytes ahead.
struct RowDot {
  WType wtype;
  bool vnni;
  int64_t k, n, block_cols;

  float operator()(const Q8Row& x, const void* w, int64_t j, const void* s) const {
    const auto* sf = static_cast<const float*>(s);
    const int64_t row_bytes = wtype == WType::kInt8 ? k : k / 2;
    const int64_t ahead = j + std::max<int64_t>(1, kPrefetchBytes / row_bytes);
    if (wtype == WType::kInt8) {
      const auto* rows = static_cast<const int8_t*>(w);
      const int8_t* next = ahead < n ? rows + ahead * k : nullptr;
      const DotInt8Fn fn = vnni ? &q8_vnni::DotRowInt8 : &q8_avx2::DotRowInt8;
      return fn(x, rows + j * k, sf, k, block_cols, next);
    }
    const auto* rows = static_cast<const uint8_t*>(w);
    const uint8_t* next = ahead < n ? rows + ahead * (k / 2) : nullptr;
    const DotInt4Fn fn = vnni ? &q8_vnni::DotRowInt4 : &q8_avx2::DotRowInt4;
    return fn(x, rows + j * (k / 2), sf, k, block_cols, next);
  }
};

}  // namespace

bool Q8DotUsesVnni() {
  return CpuIsaAtLeast(CpuIsa::kAvx512) && CpuHasAvx512Vnni();
}

// ---- Rounding the inputs ------------------------------------------------------------

namespace {

// RoundToQ8Block with AVX2, bit for bit: |x| and its maximum are exact, the division and
// the round to nearest even are the scalar ones, lane by lane.
MG_AVX2 float RoundToQ8BlockAvx2(const float* x, int8_t* q) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 max_finite = _mm256_set1_ps(3.4028234663852886e38f);
  __m256 v[4], amax = _mm256_setzero_ps();
  int finite = 0xff;
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    const __m256 a = _mm256_andnot_ps(sign, v[i]);
    finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, max_finite, _CMP_LE_OQ));
    amax = _mm256_max_ps(amax, a);
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  const float block_max = _mm_cvtss_f32(m);
  if (finite != 0xff || block_max == 0.0f) {
    std::memset(q, 0, kQ8Block);
    return finite == 0xff ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float d = block_max / 127.0f;
  const __m256 dv = _mm256_set1_ps(d);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  __m256i n[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 r =
        _mm256_round_ps(_mm256_div_ps(v[i], dv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    n[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
  }
  // The packs interleave 128-bit lanes; the permute puts the 32 bytes back in order.
  const __m256i bytes =
      _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
  _mm256_storeu_si256(
      reinterpret_cast<__m256i*>(q),
      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return d;
}

}  // namespace

void Q8Rows::Round(WType wtype, const float* x, int64_t num_rows, int64_t k, int num_threads) {
  const bool int4 = wtype == WType::kInt4;
  const int64_t num_blocks = k / kQ8Block;
  const int64_t num_pairs = (num_blocks + 1) / 2;
  q_stride_ = int4 ? num_pairs * 64 : k;
  d_stride_ = (num_blocks + 7) / 8 * 8;
  corr_stride_ = int4 ? num_pairs * 8 : 0;
  q_.assign(static_cast<size_t>(num_rows * q_stride_), 0);
  d_.assign(static_cast<size_t>(num_rows * d_stride_), 0.0f);
  corr_.assign(static_cast<size_t>(num_rows * corr_stride_), 0);
  block_corr_.assign(int4 ? static_cast<size_t>(num_rows * d_stride_) : 0, 0);
  const bool avx2 = SelectedCpuIsa() != CpuIsa::kReference;
  ParallelFor(
      num_threads, num_rows,
      [&](int64_t r0, int64_t r1) {
        int8_t q[kQ8Block];
        for (int64_t r = r0; r < r1; ++r) {
          int8_t* q_row = q_.data() + r * q_stride_;
          for (int64_t b = 0; b < num_blocks; ++b) {
            const float* xb = x + r * k + b * kQ8Block;
            const float d = avx2 ? RoundToQ8BlockAvx2(xb, q) : RoundToQ8Block(xb, q);
            d_[r * d_stride_ + b] = d;
            if (!int4) {
              std::memcpy(q_row + b * kQ8Block, q, kQ8Block);
              continue;
            }
            // Block b is half (b % 2) of pair b / 2: its even inputs at [16 * half, +16) of the
            // pair's first 32 bytes, its odd ones at the same place in the second 32.
            int8_t* even = q_row + b / 2 * 64 + (b % 2) * 16;
            int32_t* corr = corr_.data() + r * corr_stride_ + b / 2 * 8 + (b % 2) * 4;
            for (int64_t t = 0; t < 16; ++t) {
              even[t] = q[2 * t];
              even[32 + t] = q[2 * t + 1];
            }
            // Lane l of the half multiplies inputs [8l, 8l + 8) of the block.
            int32_t block_sum = 0;
            for (int64_t l = 0; l < 4; ++l) {
              int32_t sum = 0;
              for (int64_t i = 8 * l; i < 8 * l + 8; ++i)
                sum += q[i];
              corr[l] = 8 * sum;
              block_sum += sum;
            }
            block_corr_[r * d_stride_ + b] = 8 * block_sum;
          }
        }
      },
      /*min_rows=*/4);
}

Q8Rows& ThreadQ8Rows() {
  static thread_local Q8Rows rows;
  return rows;
}

const Q8Rows* RoundedInputs(const WeightQuant& quant, WType wtype, const float* x, int64_t num_rows,
                            int64_t k, int num_threads) {
  if (!RoundsInputToInt8(quant, k)) return nullptr;
  Q8Rows& rows = ThreadQ8Rows();
  rows.Round(wtype, x, num_rows, k, num_threads);
  return &rows;
}

// ---- Drivers --------------------------------------------------------------------------

void GemvColumnsQ8(const Q8Row* x_rows, float* const* out_rows, int mr, WType wtype, const void* wg,
                   const void* wu, int64_t k, int64_t n, int64_t c0, int64_t c1,
                   const WeightScales& scales) {
  const RowDot dot{wtype, Q8DotUsesVnni(), k, n, scales.block_cols};
  for (int64_t j = c0; j < c1; ++j) {
    // Each weight row is read from memory once; the other input rows find it in L1.
    for (int m = 0; m < mr; ++m) {
      const float g = dot(x_rows[m], wg, j, scales.GateScaleRow(j));
      out_rows[m][j] = wu ? Silu(g) * dot(x_rows[m], wu, j, scales.UpScaleRow(j)) : g;
    }
  }
}

void MatmulGemvQ8(const MatmulBlock& b, int64_t c0, int64_t c1, WType wtype) {
  const int mr = static_cast<int>(b.num_rows);
  Q8Row x_rows[kMaxDotActRows];
  float* out_rows[kMaxDotActRows];
  for (int m = 0; m < mr; ++m) {
    x_rows[m] = b.q8->Row(b.q8_row0 + m);
    out_rows[m] = b.out + m * b.out_stride;
  }
  GemvColumnsQ8(x_rows, out_rows, mr, wtype, b.wg, b.wu, b.k, b.n, c0, c1, b.scales);
}

}  // namespace moegraph::simd
