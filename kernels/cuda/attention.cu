// CUDA attention kernels (see attention.cuh), mirroring ref_attention.cc.
#include <cuda_fp16.h>

#include <cmath>

#include "ir/rope_freq.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_util.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kRopeThreads = 128;
constexpr int kCopyThreads = 128;
constexpr int kAttnThreads = 128;

// KV-cache element access by storage type: float, __half, or Bf16Bits.
struct Bf16Bits {
  uint16_t bits;
};
__device__ __forceinline__ float ToF32(float x) {
  return x;
}
__device__ __forceinline__ float ToF32(__half x) {
  return __half2float(x);
}
__device__ __forceinline__ float ToF32(Bf16Bits x) {
  return __uint_as_float(static_cast<uint32_t>(x.bits) << 16);
}
template <typename T>
__device__ __forceinline__ T FromF32(float x);
template <>
__device__ __forceinline__ float FromF32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half FromF32<__half>(float x) {
  return __float2half_rn(x);
}
// Round to nearest even, NaN stays NaN: support/half.h's F32ToBf16.
template <>
__device__ __forceinline__ Bf16Bits FromF32<Bf16Bits>(float x) {
  const uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return Bf16Bits{static_cast<uint16_t>((bits >> 16) | 0x40)};
  return Bf16Bits{static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16)};
}

// One block per row; thread i owns pair i of every head: (i, i + half), or (2i,
// 2i + 1) when interleaved, over the first rotary_dim values; the threads then
// copy the values past rotary_dim (in place there is nothing to copy).
__global__ void RopeKernel(const float* x, float* y, int64_t row_size, int64_t head_dim,
                           int64_t rotary_dim, bool interleaved, double theta,
                           RopeScalingArgs scaling, int64_t row_limit,
                           const ForwardMetaView* meta) {
  const int64_t t = blockIdx.x;
  float* y_row = y + t * row_size;
  if (meta == nullptr || t >= NumRealRows(meta, row_limit)) {
    for (int64_t c = threadIdx.x; c < row_size; c += blockDim.x)
      y_row[c] = 0.0f;
    return;
  }
  const float* x_row = x + t * row_size;
  const float position = static_cast<float>(meta->positions[t]);
  const int64_t half = rotary_dim / 2;
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    // As the reference: the frequency in double (ir/rope_freq.h), rounded to float once.
    const auto inv_freq =
        static_cast<float>(RopeInvFreq(theta, rotary_dim, i, scaling.scaling, scaling.factor,
                                       scaling.ramp_low, scaling.ramp_high));
    const float angle = position * inv_freq;
    const float cos_a = cosf(angle) * scaling.attention_factor;
    const float sin_a = sinf(angle) * scaling.attention_factor;
    const int64_t a = interleaved ? 2 * i : i;
    const int64_t b = interleaved ? 2 * i + 1 : i + half;
    for (int64_t h = 0; h < row_size; h += head_dim) {
      const float x1 = x_row[h + a];
      const float x2 = x_row[h + b];
      y_row[h + a] = x1 * cos_a - x2 * sin_a;
      y_row[h + b] = x2 * cos_a + x1 * sin_a;
    }
  }
  const int64_t pass = head_dim - rotary_dim;
  if (pass > 0 && y_row != x_row) {
    for (int64_t c = threadIdx.x; c < (row_size / head_dim) * pass; c += blockDim.x) {
      const int64_t col = (c / pass) * head_dim + rotary_dim + c % pass;
      y_row[col] = x_row[col];
    }
  }
}

// The kernel ABI's views of one layer, for KvWriteSlot / KvBlocksOf.
__device__ inline KvCacheView CacheViewOf(const KvLayer& layer) {
  KvCacheView kv;
  kv.num_blocks = layer.num_blocks;
  kv.block_size = layer.block_size;
  kv.num_rings = layer.num_rings;
  return kv;
}
__device__ inline KvLayerView LayerViewOf(const KvLayer& layer) {
  KvLayerView view;
  view.ring_blocks = layer.ring_blocks;
  return view;
}

template <typename T>
__global__ void KvCacheWriteKernel(const float* k, const float* v, int64_t kv_row, KvLayer layer,
                                   int64_t row_limit, const ForwardMetaView* meta) {
  const int64_t t = blockIdx.x;
  if (t >= NumRealRows(meta, row_limit)) return;
  const int64_t slot = KvWriteSlot(*meta, CacheViewOf(layer), LayerViewOf(layer), t);
  if (slot < 0) return;
  for (int64_t c = threadIdx.x; c < kv_row; c += blockDim.x) {
    static_cast<T*>(layer.k)[slot * kv_row + c] = FromF32<T>(k[t * kv_row + c]);
    static_cast<T*>(layer.v)[slot * kv_row + c] = FromF32<T>(v[t * kv_row + c]);
  }
}

// One block per (token, head). Pass 1: the max score, each thread over keys
// j = tid, tid + blockDim, ...; pass 2: chunks of blockDim keys whose
// exp(score - max) go to shared memory, then each thread accumulates its
// own output dims over the chunk (no atomics, so the result is deterministic).
// A head's sink (when `sinks` is not null) joins the max and the denominator;
// with window > 0 a token reads positions (position - window, position] only.
template <typename T>
__global__ void __launch_bounds__(kAttnThreads)
    PagedAttentionKernel(const float* q, KvLayer layer, const void* sinks, DType sinks_dtype,
                         float* out, int num_heads, int num_kv_heads, int head_dim, float scale,
                         int64_t window, int64_t row_limit, const ForwardMetaView* meta) {
  extern __shared__ float smem[];
  float* q_s = smem;             // [head_dim]
  float* o_s = smem + head_dim;  // [head_dim]
  float* e_s = o_s + head_dim;   // [blockDim.x]
  __shared__ int64_t offset_s[kAttnThreads];
  __shared__ float reduce_s[32];

  const int64_t t = blockIdx.x;
  const int h = blockIdx.y;
  const int64_t q_row = static_cast<int64_t>(num_heads) * head_dim;
  const int64_t kv_row = static_cast<int64_t>(num_kv_heads) * head_dim;
  float* o = out + t * q_row + static_cast<int64_t>(h) * head_dim;
  auto zero_output = [&] {
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
      o[d] = 0.0f;
  };
  if (t >= NumRealRows(meta, row_limit)) return zero_output();

  // The reference's SeqBlocksValid; every branch below is uniform over the block.
  const int32_t seq = meta->batch_id_per_token[t];
  const int32_t position = meta->positions[t];
  if (seq < 0 || seq >= meta->num_seqs || position < 0) return zero_output();
  const int64_t block_size = layer.block_size;
  const int64_t last_block = position / block_size;
  if (last_block >= meta->max_blocks_per_seq) return zero_output();
  const int32_t* block_row =
      meta->block_tables + static_cast<int64_t>(seq) * meta->max_blocks_per_seq;
  bool bad = false;
  for (int64_t b = threadIdx.x; b <= last_block; b += blockDim.x) {
    bad |= block_row[b] < 0 || block_row[b] >= layer.num_blocks;
  }
  if (__syncthreads_or(bad)) return zero_output();
  const KvCacheView kv_view = CacheViewOf(layer);
  const KvLayerView layer_view = LayerViewOf(layer);
  if (!KvRingValid(*meta, kv_view, layer_view, seq)) return zero_output();
  const KvBlockMap table = KvBlocksOf(*meta, kv_view, layer_view, seq);

  const int64_t kv_head = h / (num_heads / num_kv_heads);
  auto cache_offset = [&](int64_t j) {
    const int64_t slot = static_cast<int64_t>(table[j / block_size]) * block_size + j % block_size;
    return slot * kv_row + kv_head * head_dim;
  };
  const T* cache_k = static_cast<const T*>(layer.k);
  const T* cache_v = static_cast<const T*>(layer.v);
  auto score = [&](int64_t offset) {
    const T* k_row = cache_k + offset;
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d)
      dot += q_s[d] * ToF32(k_row[d]);
    return scale * dot;
  };
  const float* q_head = q + t * q_row + static_cast<int64_t>(h) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    q_s[d] = q_head[d];
    o_s[d] = 0.0f;
  }
  __syncthreads();

  const int64_t first = window > 0 && position >= window ? position - window + 1 : 0;
  float local_max = -INFINITY;
  for (int64_t j = first + threadIdx.x; j <= position; j += blockDim.x) {
    local_max = fmaxf(local_max, score(cache_offset(j)));
  }
  const float sink = sinks != nullptr ? LoadWeight(sinks, sinks_dtype, h) : -INFINITY;
  const float max_score = fmaxf(BlockMax(local_max, reduce_s), sink);

  float local_sum = 0.0f;
  for (int64_t j0 = first; j0 <= position; j0 += blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    float e = 0.0f;
    if (j <= position) {
      const int64_t offset = cache_offset(j);
      e = expf(score(offset) - max_score);
      offset_s[threadIdx.x] = offset;
      local_sum += e;
    }
    e_s[threadIdx.x] = e;
    __syncthreads();
    const int64_t count = min(static_cast<int64_t>(blockDim.x), position - j0 + 1);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
      float acc = o_s[d];
      for (int64_t jj = 0; jj < count; ++jj)
        acc += e_s[jj] * ToF32(cache_v[offset_s[jj] + d]);
      o_s[d] = acc;
    }
    __syncthreads();
  }
  const float sink_e = sinks != nullptr ? expf(sink - max_score) : 0.0f;
  const float inv_sum = 1.0f / (BlockSum(local_sum, reduce_s) + sink_e);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    o[d] = o_s[d] * inv_sum;
}

template <typename T>
__global__ void LatentCacheWriteKernel(const float* latent, const float* k_pe, int rank, int rope,
                                       KvLayer layer, int64_t row_limit,
                                       const ForwardMetaView* meta) {
  const int64_t t = blockIdx.x;
  if (t >= NumRealRows(meta, row_limit)) return;
  const int64_t slot = meta->slot_mapping[t];
  const int64_t num_slots = static_cast<int64_t>(layer.num_blocks) * layer.block_size;
  if (slot < 0 || slot >= num_slots) return;
  const int64_t row = rank + rope;
  T* dst = static_cast<T*>(layer.k) + slot * row;
  for (int c = threadIdx.x; c < rank; c += blockDim.x)
    dst[c] = FromF32<T>(latent[t * rank + c]);
  for (int c = threadIdx.x; c < rope; c += blockDim.x)
    dst[rank + c] = FromF32<T>(k_pe[t * rope + c]);
}

// kv_b element (row, col) as f32: LoadWeight, times its block's scale when fp8.
__device__ __forceinline__ float KvBAt(const void* kv_b, DType dtype, const MlaWeightScales& sc,
                                       int64_t rank, int64_t row, int64_t col) {
  const float v = LoadWeight(kv_b, dtype, row * rank + col);
  if (dtype != DType::kFp8E4M3) return v;
  return v * sc.scales[(row / sc.block_rows) * sc.scale_cols + col / sc.block_cols];
}

// One block per (token, head), as PagedAttentionKernel but in the latent space:
// q_lat (thread c owns column c of the key rows: coalesced), scores of
// rank + rope values per key, o_lat accumulated per column, then the value rows.
template <typename T>
__global__ void __launch_bounds__(kAttnThreads)
    MlaAttentionKernel(const float* q_nope, const float* q_pe, const void* kv_b, DType kv_b_dtype,
                       MlaWeightScales kv_b_scales, KvLayer layer, float* out, MlaShape s,
                       int64_t row_limit, const ForwardMetaView* meta) {
  extern __shared__ float smem[];
  const int rank = s.kv_lora_rank, rope = s.qk_rope_head_dim, nope = s.qk_nope_head_dim;
  float* q_lat = smem;         // [rank]
  float* qp_s = q_lat + rank;  // [rope]
  float* o_lat = qp_s + rope;  // [rank]
  float* e_s = o_lat + rank;   // [blockDim.x]
  __shared__ int64_t offset_s[kAttnThreads];
  __shared__ float reduce_s[32];

  const int64_t t = blockIdx.x;
  const int h = blockIdx.y;
  float* o = out + t * s.num_heads * s.v_head_dim + static_cast<int64_t>(h) * s.v_head_dim;
  auto zero_output = [&] {
    for (int d = threadIdx.x; d < s.v_head_dim; d += blockDim.x)
      o[d] = 0.0f;
  };
  if (t >= NumRealRows(meta, row_limit)) return zero_output();
  const int32_t seq = meta->batch_id_per_token[t];
  const int32_t position = meta->positions[t];
  if (seq < 0 || seq >= meta->num_seqs || position < 0) return zero_output();
  const int64_t block_size = layer.block_size;
  const int64_t last_block = position / block_size;
  if (last_block >= meta->max_blocks_per_seq) return zero_output();
  const int32_t* table = meta->block_tables + static_cast<int64_t>(seq) * meta->max_blocks_per_seq;
  bool bad = false;
  for (int64_t b = threadIdx.x; b <= last_block; b += blockDim.x) {
    bad |= table[b] < 0 || table[b] >= layer.num_blocks;
  }
  if (__syncthreads_or(bad)) return zero_output();

  const int64_t row = rank + rope;
  const int64_t head_rows = nope + s.v_head_dim;
  const float* qn = q_nope + t * s.num_heads * nope + static_cast<int64_t>(h) * nope;
  for (int c = threadIdx.x; c < rank; c += blockDim.x) {
    float acc = 0.0f;
    for (int d = 0; d < nope; ++d)
      acc += qn[d] * KvBAt(kv_b, kv_b_dtype, kv_b_scales, rank, h * head_rows + d, c);
    q_lat[c] = acc;
    o_lat[c] = 0.0f;
  }
  const float* qp = q_pe + t * s.num_heads * rope + static_cast<int64_t>(h) * rope;
  for (int c = threadIdx.x; c < rope; c += blockDim.x)
    qp_s[c] = qp[c];
  __syncthreads();

  auto cache_offset = [&](int64_t j) {
    const int64_t slot = static_cast<int64_t>(table[j / block_size]) * block_size + j % block_size;
    return slot * row;
  };
  const T* cache = static_cast<const T*>(layer.k);
  auto score = [&](int64_t offset) {
    const T* r = cache + offset;
    float lat = 0.0f, pe = 0.0f;
    for (int c = 0; c < rank; ++c)
      lat += q_lat[c] * ToF32(r[c]);
    for (int c = 0; c < rope; ++c)
      pe += qp_s[c] * ToF32(r[rank + c]);
    return s.scale * (lat + pe);
  };
  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j <= position; j += blockDim.x)
    local_max = fmaxf(local_max, score(cache_offset(j)));
  const float max_score = BlockMax(local_max, reduce_s);

  float local_sum = 0.0f;
  for (int64_t j0 = 0; j0 <= position; j0 += blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    float e = 0.0f;
    if (j <= position) {
      const int64_t offset = cache_offset(j);
      e = expf(score(offset) - max_score);
      offset_s[threadIdx.x] = offset;
      local_sum += e;
    }
    e_s[threadIdx.x] = e;
    __syncthreads();
    const int64_t count = min(static_cast<int64_t>(blockDim.x), position - j0 + 1);
    for (int c = threadIdx.x; c < rank; c += blockDim.x) {
      float acc = o_lat[c];
      for (int64_t jj = 0; jj < count; ++jj)
        acc += e_s[jj] * ToF32(cache[offset_s[jj] + c]);
      o_lat[c] = acc;
    }
    __syncthreads();
  }
  const float inv_sum = 1.0f / BlockSum(local_sum, reduce_s);
  for (int c = threadIdx.x; c < rank; c += blockDim.x)
    o_lat[c] *= inv_sum;
  __syncthreads();
  for (int e = threadIdx.x; e < s.v_head_dim; e += blockDim.x) {
    const int64_t w_row = h * head_rows + nope + e;
    float acc = 0.0f;
    for (int c = 0; c < rank; ++c)
      acc += o_lat[c] * KvBAt(kv_b, kv_b_dtype, kv_b_scales, rank, w_row, c);
    o[e] = acc;
  }
}

template <typename T>
cudaError_t LaunchMlaTyped(const float* q_nope, const float* q_pe, const float* latent,
                           const float* k_pe, const void* kv_b, DType kv_b_dtype,
                           MlaWeightScales kv_b_scales, KvLayer layer, float* out, int64_t num_rows,
                           MlaShape shape, int64_t row_limit, const ForwardMetaView* meta,
                           cudaStream_t stream) {
  // The cache write must land before any token of the step reads it (same stream).
  LatentCacheWriteKernel<T><<<static_cast<unsigned int>(num_rows), kCopyThreads, 0, stream>>>(
      latent, k_pe, shape.kv_lora_rank, shape.qk_rope_head_dim, layer, row_limit, meta);
  const size_t shared_bytes =
      (2 * static_cast<size_t>(shape.kv_lora_rank) + shape.qk_rope_head_dim + kAttnThreads) *
      sizeof(float);
  const dim3 grid(static_cast<unsigned int>(num_rows), static_cast<unsigned int>(shape.num_heads));
  MlaAttentionKernel<T><<<grid, kAttnThreads, shared_bytes, stream>>>(
      q_nope, q_pe, kv_b, kv_b_dtype, kv_b_scales, layer, out, shape, row_limit, meta);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchRope(const float* x, float* y, int64_t num_rows, int64_t row_size,
                       int64_t head_dim, int64_t rotary_dim, bool interleaved, float theta,
                       const RopeScalingArgs& scaling, int64_t row_limit,
                       const ForwardMetaView* meta, cudaStream_t stream) {
  if (num_rows <= 0 || row_size <= 0) return cudaSuccess;
  const bool ok = head_dim > 0 && head_dim % 2 == 0 && row_size % head_dim == 0 &&
                  rotary_dim >= 2 && rotary_dim % 2 == 0 && rotary_dim <= head_dim;
  RopeKernel<<<static_cast<unsigned int>(num_rows), kRopeThreads, 0, stream>>>(
      x, y, row_size, ok ? head_dim : 2, ok ? rotary_dim : 2, interleaved,
      static_cast<double>(theta), scaling, ok ? row_limit : 0, meta);
  return cudaGetLastError();
}

cudaError_t LaunchKvCacheWrite(const float* k, const float* v, int64_t num_rows, int64_t kv_row,
                               KvLayer layer, int64_t row_limit, const ForwardMetaView* meta,
                               cudaStream_t stream) {
  if (num_rows <= 0 || kv_row <= 0 || meta == nullptr) return cudaSuccess;
  const auto blocks = static_cast<unsigned int>(num_rows);
  switch (layer.dtype) {
    case DType::kF32:
      KvCacheWriteKernel<float>
          <<<blocks, kCopyThreads, 0, stream>>>(k, v, kv_row, layer, row_limit, meta);
      break;
    case DType::kF16:
      KvCacheWriteKernel<__half>
          <<<blocks, kCopyThreads, 0, stream>>>(k, v, kv_row, layer, row_limit, meta);
      break;
    case DType::kBF16:
      KvCacheWriteKernel<Bf16Bits>
          <<<blocks, kCopyThreads, 0, stream>>>(k, v, kv_row, layer, row_limit, meta);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchPagedAttention(const float* q, KvLayer layer, const void* sinks,
                                 DType sinks_dtype, float* out, int64_t num_rows, int num_heads,
                                 int num_kv_heads, int head_dim, float scale, int64_t window,
                                 int64_t row_limit, const ForwardMetaView* meta,
                                 cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  if (meta == nullptr || num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0 ||
      num_heads % num_kv_heads != 0 || layer.block_size <= 0) {
    return cudaMemsetAsync(
        out, 0, static_cast<size_t>(num_rows) * num_heads * head_dim * sizeof(float), stream);
  }
  const size_t shared_bytes = (2 * static_cast<size_t>(head_dim) + kAttnThreads) * sizeof(float);
  if (shared_bytes > 48 * 1024 || num_heads > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned int>(num_rows), static_cast<unsigned int>(num_heads));
  switch (layer.dtype) {
    case DType::kF32:
      PagedAttentionKernel<float><<<grid, kAttnThreads, shared_bytes, stream>>>(
          q, layer, sinks, sinks_dtype, out, num_heads, num_kv_heads, head_dim, scale, window,
          row_limit, meta);
      break;
    case DType::kF16:
      PagedAttentionKernel<__half><<<grid, kAttnThreads, shared_bytes, stream>>>(
          q, layer, sinks, sinks_dtype, out, num_heads, num_kv_heads, head_dim, scale, window,
          row_limit, meta);
      break;
    case DType::kBF16:
      PagedAttentionKernel<Bf16Bits><<<grid, kAttnThreads, shared_bytes, stream>>>(
          q, layer, sinks, sinks_dtype, out, num_heads, num_kv_heads, head_dim, scale, window,
          row_limit, meta);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchMlaAttention(const float* q_nope, const float* q_pe, const float* latent,
                               const float* k_pe, const void* kv_b, DType kv_b_dtype,
                               MlaWeightScales kv_b_scales, KvLayer layer, float* out,
                               int64_t num_rows, MlaShape shape, int64_t row_limit,
                               const ForwardMetaView* meta, cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  if (meta == nullptr || shape.num_heads <= 0 || shape.kv_lora_rank <= 0 ||
      shape.qk_rope_head_dim <= 0 || shape.qk_nope_head_dim <= 0 || shape.v_head_dim <= 0 ||
      layer.block_size <= 0) {
    return cudaMemsetAsync(
        out, 0, static_cast<size_t>(num_rows) * shape.num_heads * shape.v_head_dim * sizeof(float),
        stream);
  }
  const size_t shared_bytes =
      (2 * static_cast<size_t>(shape.kv_lora_rank) + shape.qk_rope_head_dim + kAttnThreads) *
      sizeof(float);
  if (shared_bytes > 48 * 1024 || shape.num_heads > kMaxGridY) {
    return cudaErrorInvalidConfiguration;
  }
  switch (layer.dtype) {
    case DType::kF32:
      return LaunchMlaTyped<float>(q_nope, q_pe, latent, k_pe, kv_b, kv_b_dtype, kv_b_scales, layer,
                                   out, num_rows, shape, row_limit, meta, stream);
    case DType::kF16:
      return LaunchMlaTyped<__half>(q_nope, q_pe, latent, k_pe, kv_b, kv_b_dtype, kv_b_scales,
                                    layer, out, num_rows, shape, row_limit, meta, stream);
    case DType::kBF16:
      return LaunchMlaTyped<Bf16Bits>(q_nope, q_pe, latent, k_pe, kv_b, kv_b_dtype, kv_b_scales,
                                      layer, out, num_rows, shape, row_limit, meta, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace moegraph::cuda
