// Optimised attention kernels: rotary embedding, paged causal attention
// (decode and prefill) with an online softmax over blocks of keys, and
// multi-head latent attention in the absorbed form.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ir/rope_freq.h"
#include "kernels/cpu/kv_access.h"
#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/simd_gemm.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::NumRealRows;
using ref_detail::NumRows;
using ref_detail::RowSize;
using ref_detail::SeqBlocksValid;

constexpr int64_t kMaxRopeHalf = 2048;       // head_dim <= 4096 (the op's limit)
constexpr int64_t kMaxHeadDim = 256;         // larger heads: reference attention
constexpr int64_t kMaxHeads = 4096;          // the attention op's num_heads limit
constexpr int64_t kKeyBlock = 64;            // keys per online-softmax block
constexpr int kHeadChunk = 4;                // query heads of one KV head processed together
constexpr int kMaxChunks = 4;                // head chunks of one token run in lockstep
constexpr int64_t kMaxRefHeadDimMla = 4096;  // mla_attention's kv_lora_rank limit

// ---- rope ---------------------------------------------------------------------------

// One row of heads rotated with per-row cos/sin tables over each head's first
// rotary_dim values (NeoX rotate-half, or GPT-J pairs when interleaved), the
// rest copied; y may alias x. The angles and tables are the reference's; the
// compiler may fuse the rotation's multiply-adds, so results agree to an ulp or so.
MG_AVX2 void RopeRow(const float* x, float* y, int64_t row_size, int64_t head_dim,
                     int64_t rotary_dim, bool interleaved, const float* cos, const float* sin) {
  const int64_t half = rotary_dim / 2;
  const int64_t half8 = half & ~int64_t{7};
  for (int64_t h = 0; h < row_size; h += head_dim) {
    if (interleaved) {
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = x[h + 2 * i];
        const float x2 = x[h + 2 * i + 1];
        y[h + 2 * i] = x1 * cos[i] - x2 * sin[i];
        y[h + 2 * i + 1] = x2 * cos[i] + x1 * sin[i];
      }
    } else {
      for (int64_t i = 0; i < half8; i += 8) {
        const __m256 x1 = _mm256_loadu_ps(x + h + i);
        const __m256 x2 = _mm256_loadu_ps(x + h + i + half);
        const __m256 c = _mm256_loadu_ps(cos + i);
        const __m256 s = _mm256_loadu_ps(sin + i);
        _mm256_storeu_ps(y + h + i, _mm256_sub_ps(_mm256_mul_ps(x1, c), _mm256_mul_ps(x2, s)));
        _mm256_storeu_ps(y + h + i + half,
                         _mm256_add_ps(_mm256_mul_ps(x2, c), _mm256_mul_ps(x1, s)));
      }
      for (int64_t i = half8; i < half; ++i) {
        const float x1 = x[h + i];
        const float x2 = x[h + i + half];
        y[h + i] = x1 * cos[i] - x2 * sin[i];
        y[h + i + half] = x2 * cos[i] + x1 * sin[i];
      }
    }
    if (rotary_dim < head_dim && y != x) {
      std::copy(x + h + rotary_dim, x + h + head_dim, y + h + rotary_dim);
    }
  }
}

// ---- attention ------------------------------------------------------------------------

struct AttentionProblem {
  const float* q = nullptr;  // [T, nh * hd]
  float* out = nullptr;      // [T, nh * hd]
  const ForwardMetaView* meta = nullptr;
  const KvCacheView* kv = nullptr;
  const KvLayerView* cache = nullptr;  // the layer's view (its ring, if any)
  // The layer's cache arrays, [num_blocks * block_size, nkv, hd] of kv_dtype.
  const std::byte* k_cache = nullptr;
  const std::byte* v_cache = nullptr;
  DType kv_dtype = DType::kF32;
  int64_t kv_elem_bytes = 4;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, group = 1;
  int64_t q_row = 0, kv_row = 0;
  float scale = 1.0f;
  // [num_heads] sink logits, or null: a head's running max and denominator
  // start at its sink (exp(sink - sink) = 1), so the sink joins both.
  const float* sinks = nullptr;
  int64_t window = 0;  // 0: every earlier position; > 0: positions (p - window, p]
  int64_t FirstPosition(int64_t position) const {
    return window > 0 && position >= window ? position - window + 1 : 0;
  }
};

MG_AVX2_INLINE void PrefetchL2(const std::byte* row, int64_t bytes) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < bytes; b += 64)
    _mm_prefetch(p + b, _MM_HINT_T1);
}

// The cache row of hd elements (hd % 8 == 0) at element `offset` of `base`,
// as f32: the row itself in an f32 cache; a 16-bit row is converted into
// `scratch` (hd floats, 32-byte aligned), so the f32 path reads in place.
MG_AVX2_INLINE const float* CacheRow(const AttentionProblem& p, const std::byte* base,
                                     int64_t offset, int64_t hd, float* scratch) {
  if (p.kv_dtype == DType::kF32) return reinterpret_cast<const float*>(base) + offset;
  const auto* src = reinterpret_cast<const uint16_t*>(base) + offset;
  if (p.kv_dtype == DType::kF16) {
    for (int64_t d = 0; d < hd; d += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + d));
      _mm256_store_ps(scratch + d, _mm256_cvtph_ps(h));
    }
  } else {  // bf16: the high half of an f32
    for (int64_t d = 0; d < hd; d += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + d));
      const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
      _mm256_store_ps(scratch + d, _mm256_castsi256_ps(w));
    }
  }
  return scratch;
}

// Four dot products of q (hd floats, hd % 8 == 0) with rows k0..k3.
MG_AVX2_INLINE __m128 Dot4(const float* q, const float* k0, const float* k1, const float* k2,
                           const float* k3, int64_t hd) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  for (int64_t d = 0; d < hd; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
    a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
    a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
    a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
  }
  return simd::Hsum4(a0, a1, a2, a3);
}

// o[g][0, hd) += sum_j p[g][j] * v[j][0, hd) for g < num_heads (1 or 2), j < nb.
MG_AVX2_INLINE void AccumulateValues(const float* const* v, int64_t nb, const float* p0,
                                     const float* p1, float* o0, float* o1, int64_t hd) {
  int64_t d = 0;
  for (; d + 32 <= hd; d += 32) {
    __m256 c0[4], c1[4];
    for (int i = 0; i < 4; ++i) {
      c0[i] = _mm256_loadu_ps(o0 + d + 8 * i);
      c1[i] = o1 ? _mm256_loadu_ps(o1 + d + 8 * i) : _mm256_setzero_ps();
    }
    for (int64_t j = 0; j < nb; ++j) {
      const __m256 w0 = _mm256_broadcast_ss(p0 + j);
      const __m256 w1 = _mm256_broadcast_ss(p1 + j);
      for (int i = 0; i < 4; ++i) {
        const __m256 vv = _mm256_loadu_ps(v[j] + d + 8 * i);
        c0[i] = _mm256_fmadd_ps(w0, vv, c0[i]);
        c1[i] = _mm256_fmadd_ps(w1, vv, c1[i]);
      }
    }
    for (int i = 0; i < 4; ++i) {
      _mm256_storeu_ps(o0 + d + 8 * i, c0[i]);
      if (o1) _mm256_storeu_ps(o1 + d + 8 * i, c1[i]);
    }
  }
  for (; d < hd; d += 8) {
    __m256 c0 = _mm256_loadu_ps(o0 + d);
    __m256 c1 = o1 ? _mm256_loadu_ps(o1 + d) : _mm256_setzero_ps();
    for (int64_t j = 0; j < nb; ++j) {
      const __m256 vv = _mm256_loadu_ps(v[j] + d);
      c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + j), vv, c0);
      c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p1 + j), vv, c1);
    }
    _mm256_storeu_ps(o0 + d, c0);
    if (o1) _mm256_storeu_ps(o1 + d, c1);
  }
}

// Chunks c < num_chunks of token t: heads [h0[c], h0[c] + count[c]) (all of
// one KV head) attend over cache positions 0..position with an online softmax;
// output normalised. The chunks run in lockstep over the key blocks, so the
// cache rows of several KV heads (adjacent in a row) are read together; each
// head's arithmetic is the same whichever chunks run with it.
MG_AVX2 void AttendHeads(const AttentionProblem& p, const KvBlockMap& table, int32_t position,
                         int64_t t, const int64_t* h0, const int* count, int num_chunks) {
  const int64_t hd = p.head_dim;
  const int64_t block_size = p.kv->block_size;
  alignas(32) float o_all[kMaxChunks][kHeadChunk][kMaxHeadDim];
  alignas(32) float probs[kHeadChunk][kKeyBlock];
  int64_t row_offset[kKeyBlock];
  const float* keys[kKeyBlock];
  const float* values[kKeyBlock];
  // 16-bit caches: this block's rows of one KV head, converted to f32.
  alignas(32) float key_rows[kKeyBlock][kMaxHeadDim];
  alignas(32) float value_rows[kKeyBlock][kMaxHeadDim];
  float max_all[kMaxChunks][kHeadChunk], sum_all[kMaxChunks][kHeadChunk];
  const float* q_all[kMaxChunks][kHeadChunk];
  for (int c = 0; c < num_chunks; ++c) {
    for (int g = 0; g < count[c]; ++g) {
      q_all[c][g] = p.q + t * p.q_row + (h0[c] + g) * hd;
      std::fill(o_all[c][g], o_all[c][g] + hd, 0.0f);
      max_all[c][g] =
          p.sinks != nullptr ? p.sinks[h0[c] + g] : -std::numeric_limits<float>::infinity();
      sum_all[c][g] = p.sinks != nullptr ? 1.0f : 0.0f;
    }
  }
  // The KV heads [kv_lo, kv_hi] of the chunks are adjacent in a cache row.
  const int64_t kv_lo = h0[0] / p.group;
  const int64_t kv_hi = h0[num_chunks - 1] / p.group;
  const int64_t span_bytes = (kv_hi - kv_lo + 1) * hd * p.kv_elem_bytes;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t j0 = p.FirstPosition(position); j0 <= position; j0 += kKeyBlock) {
    const int64_t nb = std::min<int64_t>(kKeyBlock, position + 1 - j0);
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t pos = j0 + j;
      const int64_t slot =
          static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
      row_offset[j] = slot * p.kv_row;
    }
    // A KV head's rows are kv_row apart in the cache: stream this block's
    // values and the next block's keys into L2 while the scores are computed.
    const int64_t next_nb = std::min<int64_t>(kKeyBlock, position + 1 - (j0 + kKeyBlock));
    for (int64_t j = 0; j < nb; ++j) {
      PrefetchL2(p.v_cache + (row_offset[j] + kv_lo * hd) * p.kv_elem_bytes, span_bytes);
      if (j < next_nb) {
        const int64_t pos = j0 + kKeyBlock + j;
        const int64_t slot =
            static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
        PrefetchL2(p.k_cache + (slot * p.kv_row + kv_lo * hd) * p.kv_elem_bytes, span_bytes);
      }
    }
    for (int c = 0; c < num_chunks; ++c) {
      const int num_heads = count[c];
      const int64_t kv_head = h0[c] / p.group;
      float(*o)[kMaxHeadDim] = o_all[c];
      float* running_max = max_all[c];
      float* running_sum = sum_all[c];
      const float* const* q = q_all[c];
      for (int64_t j = 0; j < nb; ++j) {
        keys[j] = CacheRow(p, p.k_cache, row_offset[j] + kv_head * hd, hd, key_rows[j]);
        values[j] = CacheRow(p, p.v_cache, row_offset[j] + kv_head * hd, hd, value_rows[j]);
      }
      for (int g = 0; g < num_heads; ++g) {
        float* s = probs[g];
        int64_t j = 0;
        for (; j + 4 <= nb; j += 4) {
          const __m128 d = Dot4(q[g], keys[j], keys[j + 1], keys[j + 2], keys[j + 3], hd);
          _mm_storeu_ps(s + j, _mm_mul_ps(d, _mm_set1_ps(p.scale)));
        }
        for (; j < nb; ++j) {
          const __m128 d = Dot4(q[g], keys[j], keys[j], keys[j], keys[j], hd);
          s[j] = _mm_cvtss_f32(d) * p.scale;
        }
        float block_max = neg_inf;
        for (j = 0; j < nb; ++j)
          block_max = std::max(block_max, s[j]);
        for (j = nb; j < kKeyBlock; ++j)
          s[j] = neg_inf;
        const float new_max = std::max(running_max[g], block_max);
        // All scores -inf (or NaN): keep the reference's NaN behaviour via exp.
        const float alpha = running_max[g] == neg_inf ? 0.0f : std::exp(running_max[g] - new_max);
        const __m256 m = _mm256_set1_ps(new_max);
        __m256 sum = _mm256_setzero_ps();
        for (j = 0; j < kKeyBlock; j += 8) {
          const __m256 e = simd::Exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), m));
          _mm256_storeu_ps(s + j, e);
          sum = _mm256_add_ps(sum, e);
        }
        running_sum[g] = running_sum[g] * alpha + simd::Hsum(sum);
        running_max[g] = new_max;
        if (alpha != 1.0f) {
          const __m256 a = _mm256_set1_ps(alpha);
          for (int64_t d = 0; d < hd; d += 8)
            _mm256_store_ps(o[g] + d, _mm256_mul_ps(_mm256_load_ps(o[g] + d), a));
        }
      }
      for (int g = 0; g < num_heads; g += 2) {
        const bool pair = g + 1 < num_heads;
        AccumulateValues(values, nb, probs[g], pair ? probs[g + 1] : probs[g], o[g],
                         pair ? o[g + 1] : nullptr, hd);
      }
    }
  }
  for (int c = 0; c < num_chunks; ++c) {
    for (int g = 0; g < count[c]; ++g) {
      const __m256 inv = _mm256_set1_ps(1.0f / sum_all[c][g]);
      float* dst = p.out + t * p.q_row + (h0[c] + g) * hd;
      for (int64_t d = 0; d < hd; d += 8)
        _mm256_storeu_ps(dst + d, _mm256_mul_ps(_mm256_load_ps(o_all[c][g] + d), inv));
    }
  }
}

// ---- query-blocked attention (several tokens of one sequence) -------------------------

constexpr int kBlockRows = 24;  // query rows (token x head) per query block: three vectors
constexpr int kKeyStep = 4;     // keys per score tile (4 keys x 3 row vectors)

// Tokens [t0, t0 + nq) of one sequence (all valid), all heads of KV head
// kv_head, attend causally (within the window, if any) over their cache
// positions with an online softmax.
// Rows r = token * group + head live in the lanes of kBlockRows / 8 vectors, so the
// softmax of a key block is vectorised over rows; scores are computed as
// key-broadcast x transposed-query tiles and values accumulated as
// probability-broadcast x value-row tiles. A row's arithmetic does not depend
// on the other rows of its block (fully masked key blocks add exact zeros,
// also before the row's window starts, while its running max is still -inf).
MG_AVX2 void AttendQueryBlock(const AttentionProblem& p, const KvBlockMap& table, int64_t t0,
                              int64_t nq, int64_t kv_head) {
  constexpr int kNv = kBlockRows / 8;  // row vectors
  const int64_t hd = p.head_dim;
  const int64_t block_size = p.kv->block_size;
  const int64_t group = p.group;
  const int64_t rows = nq * group;
  const int64_t rows4 = (rows + 3) & ~int64_t{3};
  const int64_t h_begin = kv_head * group;
  alignas(32) float qt[kMaxHeadDim][kBlockRows];
  alignas(32) float o[kBlockRows][kMaxHeadDim];
  alignas(32) float st[kKeyBlock + kKeyStep][kBlockRows];
  alignas(32) int32_t limit[kBlockRows];
  alignas(32) int32_t first[kBlockRows];  // the row's first key position (its window)
  alignas(32) float alpha_row[kBlockRows];
  alignas(32) float max_row[kBlockRows];  // the running max and sum start at the sink
  alignas(32) float sum_row[kBlockRows];
  const float* keys[kKeyBlock + kKeyStep];
  const float* values[kKeyBlock];
  // 16-bit caches: the key block's rows, converted to f32.
  alignas(32) float key_rows[kKeyBlock][kMaxHeadDim];
  alignas(32) float value_rows[kKeyBlock][kMaxHeadDim];
  int32_t max_limit = 0, min_limit = std::numeric_limits<int32_t>::max();
  int32_t min_first = std::numeric_limits<int32_t>::max(), max_first = 0;
  for (int64_t r = 0; r < kBlockRows; ++r) {
    const int64_t rr = r < rows ? r : 0;  // padding rows repeat row 0
    const int64_t t = t0 + rr / group;
    const float* q = p.q + t * p.q_row + (h_begin + rr % group) * hd;
    for (int64_t d = 0; d < hd; ++d)
      qt[d][r] = q[d];
    limit[r] = p.meta->positions[t];
    first[r] = static_cast<int32_t>(p.FirstPosition(limit[r]));
    min_first = std::min(min_first, first[r]);
    max_first = std::max(max_first, first[r]);
    const bool sink = p.sinks != nullptr;
    max_row[r] = sink ? p.sinks[h_begin + rr % group] : -std::numeric_limits<float>::infinity();
    sum_row[r] = sink ? 1.0f : 0.0f;
    max_limit = std::max(max_limit, limit[r]);
    min_limit = std::min(min_limit, limit[r]);
    std::fill(o[r], o[r] + hd, 0.0f);
  }
  __m256i lim[kNv], lo[kNv];
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __m256 vneg_inf = _mm256_set1_ps(neg_inf);
  const __m256 vscale = _mm256_set1_ps(p.scale);
  __m256 run_m[kNv], run_l[kNv];
  for (int v = 0; v < kNv; ++v) {
    lim[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(limit + 8 * v));
    lo[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(first + 8 * v));
    run_m[v] = _mm256_load_ps(max_row + 8 * v);
    run_l[v] = _mm256_load_ps(sum_row + 8 * v);
  }
  for (int64_t j0 = min_first; j0 <= max_limit; j0 += kKeyBlock) {
    const int64_t nb = std::min<int64_t>(kKeyBlock, max_limit + 1 - j0);
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t pos = j0 + j;
      const int64_t slot =
          static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
      const int64_t offset = slot * p.kv_row + kv_head * hd;
      keys[j] = CacheRow(p, p.k_cache, offset, hd, key_rows[j]);
      values[j] = CacheRow(p, p.v_cache, offset, hd, value_rows[j]);
    }
    const int64_t nbs = (nb + kKeyStep - 1) / kKeyStep * kKeyStep;
    for (int64_t j = nb; j < nbs; ++j)
      keys[j] = keys[nb - 1];
    // Scores: st[j][r] = scale * q_r . k_j, kKeyStep keys x all rows at a time.
    for (int64_t j = 0; j < nbs; j += kKeyStep) {
      __m256 acc[kKeyStep][kNv];
      for (int i = 0; i < kKeyStep; ++i)
        for (int v = 0; v < kNv; ++v)
          acc[i][v] = _mm256_setzero_ps();
      for (int64_t d = 0; d < hd; ++d) {
        __m256 qv[kNv];
        for (int v = 0; v < kNv; ++v)
          qv[v] = _mm256_load_ps(qt[d] + 8 * v);
        for (int i = 0; i < kKeyStep; ++i) {
          const __m256 kb = _mm256_broadcast_ss(keys[j + i] + d);
          for (int v = 0; v < kNv; ++v)
            acc[i][v] = _mm256_fmadd_ps(kb, qv[v], acc[i][v]);
        }
      }
      for (int i = 0; i < kKeyStep; ++i)
        for (int v = 0; v < kNv; ++v)
          _mm256_store_ps(st[j + i] + 8 * v, _mm256_mul_ps(acc[i][v], vscale));
    }
    // Causal mask: keys past a row's position score -inf.
    if (j0 + nb - 1 > min_limit) {
      for (int64_t j = std::max<int64_t>(0, min_limit + 1 - j0); j < nb; ++j) {
        const __m256i pos = _mm256_set1_epi32(static_cast<int32_t>(j0 + j));
        for (int v = 0; v < kNv; ++v) {
          const __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(pos, lim[v]));
          _mm256_store_ps(st[j] + 8 * v,
                          _mm256_blendv_ps(_mm256_load_ps(st[j] + 8 * v), vneg_inf, m));
        }
      }
    }
    // Window mask: keys before a row's first position score -inf.
    if (j0 < max_first) {
      const int64_t j_end = std::min<int64_t>(nb, max_first - j0);
      for (int64_t j = 0; j < j_end; ++j) {
        const __m256i pos = _mm256_set1_epi32(static_cast<int32_t>(j0 + j));
        for (int v = 0; v < kNv; ++v) {
          const __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lo[v], pos));
          _mm256_store_ps(st[j] + 8 * v,
                          _mm256_blendv_ps(_mm256_load_ps(st[j] + 8 * v), vneg_inf, m));
        }
      }
    }
    // Online softmax, vectorised over the rows.
    for (int v = 0; v < kNv; ++v) {
      __m256 bm = vneg_inf;
      for (int64_t j = 0; j < nb; ++j)
        bm = _mm256_max_ps(bm, _mm256_load_ps(st[j] + 8 * v));
      const __m256 nm = _mm256_max_ps(run_m[v], bm);
      // alpha = exp(old - new), 0 while nothing was seen yet.
      const __m256 al = _mm256_andnot_ps(_mm256_cmp_ps(run_m[v], vneg_inf, _CMP_EQ_OQ),
                                         simd::Exp8(_mm256_sub_ps(run_m[v], nm)));
      // A row that has seen nothing yet (its window starts later) keeps max
      // -inf: subtract 0 there, so its masked scores give exp(-inf) = 0, not NaN.
      const __m256 nm_sub = _mm256_andnot_ps(_mm256_cmp_ps(nm, vneg_inf, _CMP_EQ_OQ), nm);
      __m256 sum = _mm256_setzero_ps();
      for (int64_t j = 0; j < nb; ++j) {
        const __m256 e = simd::Exp8(_mm256_sub_ps(_mm256_load_ps(st[j] + 8 * v), nm_sub));
        _mm256_store_ps(st[j] + 8 * v, e);
        sum = _mm256_add_ps(sum, e);
      }
      run_l[v] = _mm256_add_ps(_mm256_mul_ps(run_l[v], al), sum);
      run_m[v] = nm;
      _mm256_store_ps(alpha_row + 8 * v, al);
    }
    for (int64_t r = 0; r < rows4; ++r) {
      if (alpha_row[r] == 1.0f) continue;
      const __m256 a = _mm256_set1_ps(alpha_row[r]);
      for (int64_t d = 0; d < hd; d += 8)
        _mm256_store_ps(o[r] + d, _mm256_mul_ps(_mm256_load_ps(o[r] + d), a));
    }
    // o[r] += sum_j st[j][r] * v_j: four rows x 16 dims at a time. Dims
    // outer, rows inner: a dim slice of the block's values stays in L1.
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16) {
      for (int64_t r0 = 0; r0 < rows4; r0 += 4) {
        __m256 c[4][2];
        for (int i = 0; i < 4; ++i) {
          c[i][0] = _mm256_load_ps(o[r0 + i] + d);
          c[i][1] = _mm256_load_ps(o[r0 + i] + d + 8);
        }
        for (int64_t j = 0; j < nb; ++j) {
          const __m256 v0 = _mm256_loadu_ps(values[j] + d);
          const __m256 v1 = _mm256_loadu_ps(values[j] + d + 8);
          for (int i = 0; i < 4; ++i) {
            const __m256 w = _mm256_broadcast_ss(st[j] + r0 + i);
            c[i][0] = _mm256_fmadd_ps(w, v0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(w, v1, c[i][1]);
          }
        }
        for (int i = 0; i < 4; ++i) {
          _mm256_store_ps(o[r0 + i] + d, c[i][0]);
          _mm256_store_ps(o[r0 + i] + d + 8, c[i][1]);
        }
      }
    }
    if (d < hd) {
      for (int64_t r0 = 0; r0 < rows4; r0 += 4) {
        __m256 c[4];
        for (int i = 0; i < 4; ++i)
          c[i] = _mm256_load_ps(o[r0 + i] + d);
        for (int64_t j = 0; j < nb; ++j) {
          const __m256 v0 = _mm256_loadu_ps(values[j] + d);
          for (int i = 0; i < 4; ++i)
            c[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(st[j] + r0 + i), v0, c[i]);
        }
        for (int i = 0; i < 4; ++i)
          _mm256_store_ps(o[r0 + i] + d, c[i]);
      }
    }
  }
  for (int v = 0; v < kNv; ++v)
    _mm256_store_ps(sum_row + 8 * v, run_l[v]);
  for (int64_t r = 0; r < rows; ++r) {
    const __m256 inv = _mm256_set1_ps(1.0f / sum_row[r]);
    float* dst = p.out + (t0 + r / group) * p.q_row + (h_begin + r % group) * hd;
    for (int64_t d = 0; d < hd; d += 8)
      _mm256_storeu_ps(dst + d, _mm256_mul_ps(_mm256_load_ps(o[r] + d), inv));
  }
}

// Token t, all heads of KV heads [kv_begin, kv_begin + kv_count): zeros
// unless its sequence's blocks are valid.
void AttendItem(const AttentionProblem& p, int64_t t, int64_t kv_begin, int64_t kv_count,
                bool real) {
  const int64_t h_begin = kv_begin * p.group;
  float* out_heads = p.out + t * p.q_row + h_begin * p.head_dim;
  const ForwardMetaView& meta = *p.meta;
  const int32_t seq = real ? meta.batch_id_per_token[t] : -1;
  const int32_t position = real ? meta.positions[t] : -1;
  if (!real || !SeqBlocksValid(meta, *p.kv, seq, position) ||
      !KvRingValid(meta, *p.kv, *p.cache, seq)) {
    std::fill(out_heads, out_heads + kv_count * p.group * p.head_dim, 0.0f);
    return;
  }
  const KvBlockMap table = KvBlocksOf(meta, *p.kv, *p.cache, seq);
  int64_t h0[kMaxChunks];
  int count[kMaxChunks];
  int num_chunks = 0;
  for (int64_t kvh = kv_begin; kvh < kv_begin + kv_count; ++kvh) {
    for (int64_t g = 0; g < p.group; g += kHeadChunk) {
      h0[num_chunks] = kvh * p.group + g;
      count[num_chunks] = static_cast<int>(std::min<int64_t>(kHeadChunk, p.group - g));
      if (++num_chunks == kMaxChunks) {
        AttendHeads(p, table, position, t, h0, count, num_chunks);
        num_chunks = 0;
      }
    }
  }
  if (num_chunks > 0) AttendHeads(p, table, position, t, h0, count, num_chunks);
}

}  // namespace

void OptRope(const KernelArgs& args) {
  const RopeParams& params = Params<RopeParams>(args);
  const float* x = args.in[0].as<const float>();
  float* y = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t row_size = RowSize(args.out[0]);
  const int64_t head_dim = params.head_dim;
  const int64_t rotary_dim = params.RotaryDim();
  const double theta = params.theta;
  const bool ok = args.meta != nullptr && head_dim > 0 && head_dim % 2 == 0 && rotary_dim >= 2 &&
                  rotary_dim % 2 == 0 && rotary_dim <= head_dim &&
                  (params.interleaved == 0 || params.interleaved == 1) &&
                  head_dim / 2 <= kMaxRopeHalf && row_size % head_dim == 0 &&
                  RowSize(args.in[0]) == row_size;
  if (!ok) return RefRope(args);
  const int64_t num_real = NumRealRows(args, std::min(num_rows, NumRows(args.in[0])));
  const int64_t half = rotary_dim / 2;
  // The reference's inverse frequencies, computed once instead of per row.
  float inv_freq[kMaxRopeHalf];
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] = static_cast<float>(RopeInvFreq(theta, rotary_dim, i, params.scaling,
                                                 params.factor, params.ramp_low, params.ramp_high));
  }
  const auto attention_factor = static_cast<float>(params.attention_factor);
  ParallelFor(num_rows > 1 ? args.num_threads : 1, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* y_row = y + t * row_size;
      if (t >= num_real) {
        std::fill(y_row, y_row + row_size, 0.0f);
        continue;
      }
      const float position = static_cast<float>(args.meta->positions[t]);
      float cos[kMaxRopeHalf], sin[kMaxRopeHalf];
      for (int64_t i = 0; i < half; ++i) {
        const float angle = position * inv_freq[i];
        cos[i] = std::cos(angle) * attention_factor;
        sin[i] = std::sin(angle) * attention_factor;
      }
      RopeRow(x + t * row_size, y_row, row_size, head_dim, rotary_dim, params.interleaved != 0, cos,
              sin);
    }
  });
}

void OptAttention(const KernelArgs& args) {
  const AttentionParams& params = Params<AttentionParams>(args);
  AttentionProblem p;
  const int64_t layer = params.layer;
  p.num_heads = params.num_heads;
  p.num_kv_heads = params.num_kv_heads;
  p.head_dim = params.head_dim;
  p.scale = static_cast<float>(params.scale);
  p.q_row = p.num_heads * p.head_dim;
  p.kv_row = p.num_kv_heads * p.head_dim;
  p.meta = args.meta;
  p.kv = args.kv;
  const KvCacheView* kv = args.kv;
  const bool ok = p.meta != nullptr && p.num_heads > 0 && p.num_kv_heads > 0 && p.head_dim > 0 &&
                  p.head_dim % 8 == 0 && p.head_dim <= kMaxHeadDim &&
                  p.num_heads % p.num_kv_heads == 0 &&
                  kv_access::IsKeyValueLayer(kv, layer, p.num_kv_heads, p.head_dim) &&
                  RowSize(args.out[0]) == p.q_row && RowSize(args.in[0]) == p.q_row &&
                  RowSize(args.in[1]) == p.kv_row && RowSize(args.in[2]) == p.kv_row;
  if (!ok) return RefAttention(args);
  p.q = args.in[0].as<const float>();
  p.out = args.out[0].as<float>();
  p.group = p.num_heads / p.num_kv_heads;
  const KvLayerView& cache = *kv->layer(layer);
  p.cache = &cache;
  p.k_cache = static_cast<const std::byte*>(cache.k);
  p.v_cache = static_cast<const std::byte*>(cache.v);
  p.kv_dtype = cache.dtype;
  p.kv_elem_bytes = static_cast<int64_t>(DTypeBytes(cache.dtype));
  p.window = params.window;
  float sinks[kMaxHeads];
  if (ref_detail::LoadAttentionSinks(args, p.num_heads, sinks)) p.sinks = sinks;
  const float* k = args.in[1].as<const float>();
  const float* v = args.in[2].as<const float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t num_input_rows =
      std::min({NumRows(args.in[0]), NumRows(args.in[1]), NumRows(args.in[2]), num_rows});
  const int64_t num_real = NumRealRows(args, num_input_rows);
  // Query blocks: runs of up to q_tokens consecutive valid tokens of one
  // sequence (fixed by the tokens alone, not the thread count); a block of one
  // token, or an invalid or padding row, goes through AttendItem.
  const int64_t q_tokens = std::max<int64_t>(1, kBlockRows / p.group);
  const ForwardMetaView& meta = *p.meta;
  auto token_valid = [&](int64_t t) {
    return t < num_real &&
           SeqBlocksValid(meta, *kv, meta.batch_id_per_token[t], meta.positions[t]) &&
           KvRingValid(meta, *kv, cache, meta.batch_id_per_token[t]);
  };
  // Calls fn(t0, nq, valid, cost) for each query block in token order. An
  // item's cost grows with the keys it reads: split items by cost, so the
  // long rows at the end of a prefill do not all land on one thread.
  auto for_each_block = [&](auto&& fn) {
    for (int64_t t = 0; t < num_rows;) {
      const bool valid = token_valid(t);
      int64_t nq = 1;
      // The keys a token reads: its position + 1, or its window.
      auto keys = [&](int64_t u) {
        const int64_t position = std::max<int64_t>(0, meta.positions[u]);
        return position + 1 - p.FirstPosition(position);
      };
      int64_t cost = valid ? keys(t) + 7 : 1;
      if (valid) {
        const int32_t seq = meta.batch_id_per_token[t];
        while (nq < q_tokens && t + nq < num_real && meta.batch_id_per_token[t + nq] == seq &&
               token_valid(t + nq)) {
          cost += keys(t + nq) + 7;
          ++nq;
        }
      }
      fn(t, nq, valid, cost);
      t += nq;
    }
  };
  // Single tokens run up to kMaxChunks head chunks (several KV heads) in
  // lockstep, fewer when that would leave threads idle. Only which heads run
  // together depends on the thread count, never a head's arithmetic.
  const int64_t chunks_per_kv = (p.group + kHeadChunk - 1) / kHeadChunk;
  int64_t kv_span =
      std::max<int64_t>(1, std::min<int64_t>(kMaxChunks / chunks_per_kv, p.num_kv_heads));
  while (kv_span > 1 && num_rows * ((p.num_kv_heads + kv_span - 1) / kv_span) < args.num_threads)
    kv_span = (kv_span + 1) / 2;
  // Step 1: this step's keys and values into the cache (rounded to its
  // dtype), before anyone reads.
  ParallelFor(args.num_threads, num_real, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = KvWriteSlot(*p.meta, *kv, cache, t);
      if (slot < 0) continue;
      kv_access::StoreRow(cache.dtype, cache.k, slot * p.kv_row, k + t * p.kv_row, p.kv_row);
      kv_access::StoreRow(cache.dtype, cache.v, slot * p.kv_row, v + t * p.kv_row, p.kv_row);
    }
  });
  // Step 2: attention, items (query block, KV head) in order, split by cost.
  int64_t total = 0;
  for_each_block([&](int64_t, int64_t, bool, int64_t cost) { total += cost * p.num_kv_heads; });
  ParallelShares(args.num_threads, [&](int share, int num_shares) {
    int64_t lo, hi;
    simd::SplitRange(total, share, num_shares, &lo, &hi);
    int64_t pos = 0;
    for_each_block([&](int64_t t0, int64_t nq, bool valid, int64_t cost) {
      const int64_t step = nq > 1 ? 1 : kv_span;
      for (int64_t h = 0; h < p.num_kv_heads; h += step) {
        const int64_t n = std::min(step, p.num_kv_heads - h);
        if (pos >= lo && pos < hi) {
          if (nq > 1) {
            AttendQueryBlock(p, KvBlocksOf(meta, *kv, cache, meta.batch_id_per_token[t0]), t0, nq,
                             h);
          } else {
            AttendItem(p, t0, h, n, valid);
          }
        }
        pos += cost * n;
      }
    });
  });
}

// ---- mla_attention ------------------------------------------------------------------

namespace {

constexpr int64_t kMaxMlaRow = 8192;  // kv_lora_rank + qk_rope_head_dim <= 2 * 4096

struct MlaProblem {
  MlaAttentionParams params;
  const float* q_nope = nullptr;
  const float* q_pe = nullptr;
  const void* kv_b = nullptr;
  simd::WeightScales kv_b_scales;  // WType::kFp8 only
  float* out = nullptr;
  const ForwardMetaView* meta = nullptr;
  const KvCacheView* kv = nullptr;
  const KvLayerView* cache = nullptr;
  int64_t num_real = 0;
};

MG_AVX2_INLINE float DotF32Avx(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float sum = simd::Hsum(acc);
  for (; i < n; ++i)
    sum += a[i] * b[i];
  return sum;
}

// y[0, n) = y * scale + alpha * x.
MG_AVX2_INLINE void ScaleAxpy(float* y, float scale, float alpha, const float* x, int64_t n) {
  const __m256 s = _mm256_set1_ps(scale), a = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i),
                                            _mm256_mul_ps(s, _mm256_loadu_ps(y + i))));
  for (; i < n; ++i)
    y[i] = y[i] * scale + alpha * x[i];
}

// kv_b row `row`'s 8 values at column c widened to f32 (kFp8, kInt8: decoded and times the
// block's scale; block_cols is a multiple of 8, so a vector never straddles two blocks),
// and its single value.
template <simd::WType W>
MG_AVX2_INLINE __m256 KvBLoad8(const simd::WeightScales& s, const simd::WElem<W>* wr, int64_t row,
                               int64_t c) {
  __m256 v = simd::Load8<W>(wr + c);
  if constexpr (simd::Scaled<W>()) {
    v = _mm256_mul_ps(v, _mm256_broadcast_ss(s.GateRow(row) + c / s.block_cols));
  }
  return v;
}
template <simd::WType W>
MG_AVX2_INLINE float KvBLoad1(const simd::WeightScales& s, const simd::WElem<W>* wr, int64_t row,
                              int64_t c) {
  float v = simd::Load1<W>(wr + c);
  if constexpr (simd::Scaled<W>()) v *= s.GateRow(row)[c / s.block_cols];
  return v;
}

// One (token, head): q_lat through the key rows, one pass over the cache with an
// online softmax (rescaling o_lat when the running max grows), the value rows.
template <simd::WType W>
MG_AVX2 void MlaHead(const MlaProblem& p, int64_t t, int64_t h) {
  const MlaAttentionParams& q = p.params;
  const int64_t rank = q.kv_lora_rank, rope = q.qk_rope_head_dim, nope = q.qk_nope_head_dim;
  const int64_t v_dim = q.v_head_dim, row = q.CacheRow(), head_rows = nope + v_dim;
  float* o = p.out + (t * q.num_heads + h) * v_dim;
  const ForwardMetaView& meta = *p.meta;
  const KvCacheView& kv = *p.kv;
  if (t >= p.num_real || !SeqBlocksValid(meta, kv, meta.batch_id_per_token[t], meta.positions[t])) {
    std::fill(o, o + v_dim, 0.0f);
    return;
  }
  using E = simd::WElem<W>;
  const E* w = static_cast<const E*>(p.kv_b) + h * head_rows * rank;
  alignas(32) float q_lat[kMaxRefHeadDimMla];
  alignas(32) float o_lat[kMaxRefHeadDimMla];
  alignas(32) float widened[kMaxMlaRow];
  const int64_t first_row = h * head_rows;
  const float* qn = p.q_nope + (t * q.num_heads + h) * nope;
  std::fill(q_lat, q_lat + rank, 0.0f);
  for (int64_t d = 0; d < nope; ++d) {
    const E* wr = w + d * rank;
    const __m256 a = _mm256_set1_ps(qn[d]);
    int64_t c = 0;
    for (; c + 8 <= rank; c += 8)
      _mm256_storeu_ps(q_lat + c,
                       _mm256_fmadd_ps(a, KvBLoad8<W>(p.kv_b_scales, wr, first_row + d, c),
                                       _mm256_loadu_ps(q_lat + c)));
    for (; c < rank; ++c)
      q_lat[c] += qn[d] * KvBLoad1<W>(p.kv_b_scales, wr, first_row + d, c);
  }
  const float* qp = p.q_pe + (t * q.num_heads + h) * rope;
  const float scale = static_cast<float>(q.scale);
  const int32_t seq = meta.batch_id_per_token[t];
  const int32_t position = meta.positions[t];
  const int32_t* table = meta.block_tables + static_cast<int64_t>(seq) * meta.max_blocks_per_seq;
  const KvLayerView& cache = *p.cache;
  std::fill(o_lat, o_lat + rank, 0.0f);
  float max_score = -std::numeric_limits<float>::infinity(), sum = 0.0f;
  for (int64_t j = 0; j <= position; ++j) {
    const int64_t slot =
        static_cast<int64_t>(table[j / kv.block_size]) * kv.block_size + j % kv.block_size;
    const float* r;
    if (cache.dtype == DType::kF32) {
      r = static_cast<const float*>(cache.k) + slot * row;
    } else {
      kv_access::LoadRow(cache.dtype, cache.k, slot * row, widened, row);
      r = widened;
    }
    const float s = scale * (DotF32Avx(q_lat, r, rank) + DotF32Avx(qp, r + rank, rope));
    if (s > max_score) {
      const float correction = std::exp(max_score - s);  // 0 on the first key
      sum *= correction;
      ScaleAxpy(o_lat, correction, 1.0f, r, rank);
      sum += 1.0f;
      max_score = s;
    } else {
      const float e = std::exp(s - max_score);
      sum += e;
      ScaleAxpy(o_lat, 1.0f, e, r, rank);
    }
  }
  const float inv_sum = 1.0f / sum;
  for (int64_t e = 0; e < v_dim; ++e) {
    const E* wr = w + (nope + e) * rank;
    __m256 acc = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= rank; c += 8)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(o_lat + c),
                            KvBLoad8<W>(p.kv_b_scales, wr, first_row + nope + e, c), acc);
    float dot = simd::Hsum(acc);
    for (; c < rank; ++c)
      dot += o_lat[c] * KvBLoad1<W>(p.kv_b_scales, wr, first_row + nope + e, c);
    o[e] = dot * inv_sum;
  }
}

template <simd::WType W>
void MlaItems(const MlaProblem& p, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i)
    MlaHead<W>(p, i / p.params.num_heads, i % p.params.num_heads);
}

}  // namespace

void OptMlaAttention(const KernelArgs& args) {
  MlaProblem p;
  p.params = Params<MlaAttentionParams>(args);
  const MlaAttentionParams& q = p.params;
  const TensorArg& kv_b = args.in[4];
  const int64_t num_rows = NumRows(args.out[0]);
  simd::WType wtype;
  const bool ok =
      args.meta != nullptr && q.kv_lora_rank <= kMaxRefHeadDimMla && q.CacheRow() <= kMaxMlaRow &&
      kv_access::IsLatentLayer(args.kv, q.layer, q.CacheRow()) &&
      simd::ToMatmulWType(kv_b, &wtype) && wtype != simd::WType::kMxfp4 &&
      wtype != simd::WType::kInt4 &&
      (wtype == simd::WType::kF32 || wtype == simd::WType::kBF16 || wtype == simd::WType::kF16 ||
       kv_b.scales) &&
      kv_b.rank == 2 && kv_b.shape[0] == q.num_heads * (q.qk_nope_head_dim + q.v_head_dim) &&
      kv_b.shape[1] == q.kv_lora_rank && RowSize(args.out[0]) == q.num_heads * q.v_head_dim &&
      RowSize(args.in[0]) == q.num_heads * q.qk_nope_head_dim &&
      RowSize(args.in[1]) == q.num_heads * q.qk_rope_head_dim &&
      RowSize(args.in[2]) == q.kv_lora_rank && RowSize(args.in[3]) == q.qk_rope_head_dim &&
      NumRows(args.in[0]) == num_rows && NumRows(args.in[1]) == num_rows &&
      NumRows(args.in[2]) == num_rows && NumRows(args.in[3]) == num_rows;
  if (!ok) return RefMlaAttention(args);
  p.q_nope = args.in[0].as<const float>();
  p.q_pe = args.in[1].as<const float>();
  p.kv_b = kv_b.data;
  p.kv_b_scales = simd::ScalesOf(kv_b, kv_b.scales, nullptr);
  p.out = args.out[0].as<float>();
  p.meta = args.meta;
  p.kv = args.kv;
  p.cache = args.kv->layer(q.layer);
  p.num_real = NumRealRows(args, num_rows);
  const float* latent = args.in[2].as<const float>();
  const float* k_pe = args.in[3].as<const float>();
  const int64_t row = q.CacheRow();
  const int64_t num_slots = static_cast<int64_t>(p.kv->num_blocks) * p.kv->block_size;
  // Step 1: this step's [latent, k_pe] rows into the cache, before anyone reads.
  ParallelFor(args.num_threads, p.num_real, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = p.meta->slot_mapping[t];
      if (slot < 0 || slot >= num_slots) continue;
      kv_access::StoreRow(p.cache->dtype, p.cache->k, slot * row, latent + t * q.kv_lora_rank,
                          q.kv_lora_rank);
      kv_access::StoreRow(p.cache->dtype, p.cache->k, slot * row + q.kv_lora_rank,
                          k_pe + t * q.qk_rope_head_dim, q.qk_rope_head_dim);
    }
  });
  // Step 2: (token, head) items, each computed by one thread in a fixed order.
  ParallelFor(args.num_threads, num_rows * q.num_heads, [&](int64_t begin, int64_t end) {
    switch (wtype) {
      case simd::WType::kF32:
        return MlaItems<simd::WType::kF32>(p, begin, end);
      case simd::WType::kBF16:
        return MlaItems<simd::WType::kBF16>(p, begin, end);
      case simd::WType::kF16:
        return MlaItems<simd::WType::kF16>(p, begin, end);
      case simd::WType::kFp8:
        return MlaItems<simd::WType::kFp8>(p, begin, end);
      case simd::WType::kInt8:
        return MlaItems<simd::WType::kInt8>(p, begin, end);
      case simd::WType::kMxfp4:  // refused above: the reference reads an mxfp4 / int4 kv_b
      case simd::WType::kInt4:
        return;
    }
  });
}

}  // namespace moegraph
