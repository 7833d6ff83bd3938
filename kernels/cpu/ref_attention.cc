// Reference attention kernels: rotary embedding, paged causal attention with
// its KV-cache write (GQA and multi-head latent), and the last-token gather
// before the LM head.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ir/rope_freq.h"
#include "kernels/cpu/kv_access.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::DotF32;
using ref_detail::NumRealRows;
using ref_detail::NumRows;
using ref_detail::RowSize;
using ref_detail::SeqBlocksValid;

constexpr int64_t kMaxRefHeadDim = 4096;  // the attention op's head_dim limit
constexpr int64_t kMaxRefHeads = 4096;    // and its num_heads limit

// Out of line on purpose: inlined, the compiler may unswitch the attention loop
// on the dtype and read an f32 cache in place, summing its dot products in
// another order than a widened 16-bit row's; a 16-bit cache must give exactly
// the results of an f32 cache holding its values.
[[gnu::noinline]] void LoadCacheRow(DType dtype, const void* base, int64_t offset, float* dst,
                                    int64_t n) {
  kv_access::LoadRow(dtype, base, offset, dst, n);
}

}  // namespace

void RefRope(const KernelArgs& args) {
  const RopeParams& params = Params<RopeParams>(args);
  const float* x = args.in[0].as<const float>();
  float* y = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t row_size = RowSize(args.out[0]);
  const int64_t head_dim = params.head_dim;
  const int64_t rotary_dim = params.RotaryDim();
  const bool interleaved = params.interleaved != 0;
  const double theta = params.theta;
  const auto attention_factor = static_cast<float>(params.attention_factor);
  MG_KERNEL_CONTRACT(args.meta != nullptr && head_dim > 0 && head_dim % 2 == 0 && rotary_dim >= 2 &&
                         rotary_dim % 2 == 0 && rotary_dim <= head_dim &&
                         (params.interleaved == 0 || params.interleaved == 1) &&
                         row_size % head_dim == 0 && RowSize(args.in[0]) == row_size &&
                         NumRows(args.in[0]) == num_rows,
                     "rope",
                     "needs meta, an even head_dim dividing the row, an even rotary_dim in [2, "
                     "head_dim], interleaved 0 or 1, x shaped like out");
  const int64_t num_real = NumRealRows(args, num_rows);
  const int64_t half = rotary_dim / 2;
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* y_row = y + t * row_size;
      if (t >= num_real) {
        std::fill(y_row, y_row + row_size, 0.0f);
        continue;
      }
      const float* x_row = x + t * row_size;
      const float position = static_cast<float>(args.meta->positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const auto inv_freq =
            static_cast<float>(RopeInvFreq(theta, rotary_dim, i, params.scaling, params.factor,
                                           params.ramp_low, params.ramp_high));
        const float angle = position * inv_freq;
        const float cos = std::cos(angle) * attention_factor;
        const float sin = std::sin(angle) * attention_factor;
        // Pair i: (i, i + half) rotate-half, or (2i, 2i + 1) interleaved.
        const int64_t a = interleaved ? 2 * i : i;
        const int64_t b = interleaved ? 2 * i + 1 : i + half;
        for (int64_t h = 0; h < row_size; h += head_dim) {
          // Read both values before writing: y may alias x.
          const float x1 = x_row[h + a];
          const float x2 = x_row[h + b];
          y_row[h + a] = x1 * cos - x2 * sin;
          y_row[h + b] = x2 * cos + x1 * sin;
        }
      }
      // The values past rotary_dim pass through (nothing to do in place).
      if (rotary_dim < head_dim && y_row != x_row) {
        for (int64_t h = 0; h < row_size; h += head_dim) {
          std::copy(x_row + h + rotary_dim, x_row + h + head_dim, y_row + h + rotary_dim);
        }
      }
    }
  });
}

void RefAttention(const KernelArgs& args) {
  const AttentionParams& params = Params<AttentionParams>(args);
  const float* q = args.in[0].as<const float>();
  const float* k = args.in[1].as<const float>();
  const float* v = args.in[2].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t layer = params.layer;
  const int64_t num_heads = params.num_heads;
  const int64_t num_kv_heads = params.num_kv_heads;
  const int64_t head_dim = params.head_dim;
  const float scale = static_cast<float>(params.scale);
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t q_row = num_heads * head_dim;
  const int64_t kv_row = num_kv_heads * head_dim;

  const ForwardMetaView* meta = args.meta;
  const KvCacheView* kv = args.kv;
  MG_KERNEL_CONTRACT(
      meta != nullptr && num_heads > 0 && num_kv_heads > 0 && head_dim > 0 &&
          head_dim <= kMaxRefHeadDim && num_heads % num_kv_heads == 0 &&
          kv_access::IsKeyValueLayer(kv, layer, num_kv_heads, head_dim) &&
          RowSize(args.out[0]) == q_row && RowSize(args.in[0]) == q_row &&
          RowSize(args.in[1]) == kv_row && RowSize(args.in[2]) == kv_row &&
          NumRows(args.in[0]) == num_rows && NumRows(args.in[1]) == num_rows &&
          NumRows(args.in[2]) == num_rows,
      "attention", "q/k/v/out rows and heads must match the op and the KV cache layer's geometry");
  float sink_values[kMaxRefHeads];
  const float* sinks =
      ref_detail::LoadAttentionSinks(args, num_heads, sink_values) ? sink_values : nullptr;
  const int64_t num_real = NumRealRows(args, num_rows);
  const KvLayerView& cache = *kv->layer(layer);

  // Step 1: write this step's keys and values, rounded to the cache dtype.
  // slot = block * block_size + offset is also the slot's row index in the
  // layer's [num_blocks * block_size, nkv, hd] (a ring layer: its ring slot).
  ParallelFor(args.num_threads, num_real, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = KvWriteSlot(*meta, *kv, cache, t);
      if (slot < 0) continue;
      kv_access::StoreRow(cache.dtype, cache.k, slot * kv_row, k + t * kv_row, kv_row);
      kv_access::StoreRow(cache.dtype, cache.v, slot * kv_row, v + t * kv_row, kv_row);
    }
  });

  // Step 2: causal attention over the cache (positions FirstPosition(p)..p:
  // all of them, or the sliding window), one (token, head) per iteration.
  // Two passes over the keys (max, then exp-sum) so no score buffer is needed;
  // the output head accumulates the unnormalised weighted sum of values. Cache
  // rows are read as f32 (converted from the cache dtype).
  const int64_t group = num_heads / num_kv_heads;
  ParallelFor(args.num_threads, (num_rows) * (num_heads), [&](int64_t begin, int64_t end) {
    for (int64_t i_flat = begin; i_flat < end; ++i_flat) {
      const int64_t t = i_flat / (num_heads), h = i_flat % (num_heads);
      {
        float* o = out + t * q_row + h * head_dim;
        std::fill(o, o + head_dim, 0.0f);
        if (t >= num_real) continue;
        const int32_t seq = meta->batch_id_per_token[t];
        const int32_t position = meta->positions[t];
        if (!SeqBlocksValid(*meta, *kv, seq, position) || !KvRingValid(*meta, *kv, cache, seq)) {
          continue;
        }
        const KvBlockMap table = KvBlocksOf(*meta, *kv, cache, seq);
        const int64_t kv_head = h / group;
        auto cache_offset = [&](int64_t j) {
          const int64_t slot =
              static_cast<int64_t>(table[j / kv->block_size]) * kv->block_size + j % kv->block_size;
          return slot * kv_row + kv_head * head_dim;
        };
        const float* q_head = q + t * q_row + h * head_dim;
        float row[kMaxRefHeadDim];
        auto score = [&](int64_t offset) {
          LoadCacheRow(cache.dtype, cache.k, offset, row, head_dim);
          return scale * DotF32(q_head, row, head_dim);
        };

        // A sink is one more logit in the softmax, with no value: it joins the
        // max and the denominator.
        float max_score = sinks != nullptr ? sinks[h] : -std::numeric_limits<float>::infinity();
        const int64_t first = params.FirstPosition(position);
        for (int64_t j = first; j <= position; ++j)
          max_score = std::max(max_score, score(cache_offset(j)));
        float sum = sinks != nullptr ? std::exp(sinks[h] - max_score) : 0.0f;
        for (int64_t j = first; j <= position; ++j) {
          const int64_t offset = cache_offset(j);
          const float e = std::exp(score(offset) - max_score);
          sum += e;
          LoadCacheRow(cache.dtype, cache.v, offset, row, head_dim);
          for (int64_t d = 0; d < head_dim; ++d)
            o[d] += e * row[d];
        }
        const float inv_sum = 1.0f / sum;
        for (int64_t d = 0; d < head_dim; ++d)
          o[d] *= inv_sum;
      }
    }
  });
}

void RefMlaAttention(const KernelArgs& args) {
  const MlaAttentionParams& params = Params<MlaAttentionParams>(args);
  const float* q_nope = args.in[0].as<const float>();
  const float* q_pe = args.in[1].as<const float>();
  const float* latent = args.in[2].as<const float>();
  const float* k_pe = args.in[3].as<const float>();
  const TensorArg& kv_b = args.in[4];
  const ref_detail::WeightMatrix kv_b_w = ref_detail::MatrixOf(kv_b);  // fp8: dequantized
  float* out = args.out[0].as<float>();
  const int64_t layer = params.layer, num_heads = params.num_heads;
  const int64_t rank = params.kv_lora_rank, nope = params.qk_nope_head_dim;
  const int64_t rope = params.qk_rope_head_dim, v_dim = params.v_head_dim;
  const int64_t row = params.CacheRow();
  const float scale = static_cast<float>(params.scale);
  const int64_t num_rows = NumRows(args.out[0]);
  const ForwardMetaView* meta = args.meta;
  const KvCacheView* kv = args.kv;
  MG_KERNEL_CONTRACT(
      meta != nullptr && rank <= kMaxRefHeadDim && rope <= kMaxRefHeadDim &&
          kv_access::IsLatentLayer(kv, layer, row) && ref_detail::IsMatmulWeight(kv_b) &&
          kv_b.rank == 2 && kv_b.shape[0] == num_heads * (nope + v_dim) && kv_b.shape[1] == rank &&
          RowSize(args.out[0]) == num_heads * v_dim && RowSize(args.in[0]) == num_heads * nope &&
          RowSize(args.in[1]) == num_heads * rope && RowSize(args.in[2]) == rank &&
          RowSize(args.in[3]) == rope && NumRows(args.in[0]) == num_rows &&
          NumRows(args.in[1]) == num_rows && NumRows(args.in[2]) == num_rows &&
          NumRows(args.in[3]) == num_rows,
      "mla_attention",
      "q_nope/q_pe/latent/k_pe/kv_b/out must match the op and the latent KV cache layer");
  const int64_t num_real = NumRealRows(args, num_rows);
  const KvLayerView& cache = *kv->layer(layer);
  const int64_t num_slots = static_cast<int64_t>(kv->num_blocks) * kv->block_size;

  // Step 1: write this step's latent and rope key rows, rounded to the cache dtype.
  ParallelFor(args.num_threads, num_real, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = meta->slot_mapping[t];
      if (slot < 0 || slot >= num_slots) continue;
      kv_access::StoreRow(cache.dtype, cache.k, slot * row, latent + t * rank, rank);
      kv_access::StoreRow(cache.dtype, cache.k, slot * row + rank, k_pe + t * rope, rope);
    }
  });

  // Step 2: per (token, head), attention in the latent space; two passes over
  // the cache (max, then exp-sum) as RefAttention.
  const int64_t head_rows = nope + v_dim;
  ParallelFor(args.num_threads, num_rows * num_heads, [&](int64_t begin, int64_t end) {
    float q_lat[kMaxRefHeadDim], o_lat[kMaxRefHeadDim], cached[2 * kMaxRefHeadDim];
    for (int64_t i_flat = begin; i_flat < end; ++i_flat) {
      const int64_t t = i_flat / num_heads, h = i_flat % num_heads;
      float* o = out + t * num_heads * v_dim + h * v_dim;
      std::fill(o, o + v_dim, 0.0f);
      if (t >= num_real) continue;
      const int32_t seq = meta->batch_id_per_token[t];
      const int32_t position = meta->positions[t];
      if (!SeqBlocksValid(*meta, *kv, seq, position)) continue;
      const int32_t* table =
          meta->block_tables + static_cast<int64_t>(seq) * meta->max_blocks_per_seq;
      auto cache_offset = [&](int64_t j) {
        const int64_t slot =
            static_cast<int64_t>(table[j / kv->block_size]) * kv->block_size + j % kv->block_size;
        return slot * row;
      };
      // q_lat = q_nope[t, h] @ Wk_h: the key half's rows weighted by q_nope.
      const float* qn = q_nope + t * num_heads * nope + h * nope;
      std::fill(q_lat, q_lat + rank, 0.0f);
      for (int64_t d = 0; d < nope; ++d) {
        const int64_t w_row = h * head_rows + d;
        for (int64_t c = 0; c < rank; ++c)
          q_lat[c] += qn[d] * kv_b_w.At(w_row, c);
      }
      const float* qp = q_pe + t * num_heads * rope + h * rope;
      auto score = [&](int64_t offset) {
        kv_access::LoadRow(cache.dtype, cache.k, offset, cached, row);
        return scale * (DotF32(q_lat, cached, rank) + DotF32(qp, cached + rank, rope));
      };
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j <= position; ++j)
        max_score = std::max(max_score, score(cache_offset(j)));
      std::fill(o_lat, o_lat + rank, 0.0f);
      float sum = 0.0f;
      for (int64_t j = 0; j <= position; ++j) {
        const float e = std::exp(score(cache_offset(j)) - max_score);
        sum += e;
        for (int64_t c = 0; c < rank; ++c)
          o_lat[c] += e * cached[c];
      }
      const float inv_sum = 1.0f / sum;
      for (int64_t c = 0; c < rank; ++c)
        o_lat[c] *= inv_sum;
      // out[t, h] = Wv_h @ o_lat.
      for (int64_t e = 0; e < v_dim; ++e)
        o[e] = kv_b_w.Dot(o_lat, h * head_rows + nope + e, 0, rank);
    }
  });
}

void RefGatherLast(const KernelArgs& args) {
  const float* x = args.in[0].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t num_out = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  MG_KERNEL_CONTRACT(args.meta != nullptr && RowSize(args.in[0]) == hidden, "gather_last",
                     "needs meta and x [T, H] for out [B, H]");
  const int64_t num_seqs = std::min<int64_t>(args.meta->num_seqs, num_out);
  const int64_t num_real = NumRealRows(args, NumRows(args.in[0]));
  for (int64_t s = 0; s < num_out; ++s) {
    float* row = out + s * hidden;
    int64_t last = -1;
    if (s < num_seqs) {
      const int64_t begin = args.meta->cu_seqlens_q[s];
      const int64_t end = args.meta->cu_seqlens_q[s + 1];
      if (end > begin && end - 1 >= 0 && end - 1 < num_real) last = end - 1;
    }
    if (last < 0) {
      std::fill(row, row + hidden, 0.0f);
    } else {
      std::copy(x + last * hidden, x + (last + 1) * hidden, row);
    }
  }
}

}  // namespace moegraph
