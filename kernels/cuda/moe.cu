// CUDA mixture-of-experts kernels (see moe.cuh), mirroring ref_moe.cc.
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/moe.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kThreads = 256;

// ---- Routing -----------------------------------------------------------------

// One thread per row: the reference's RouteRow, scores recomputed from the
// logits, "already chosen" a scan of the row's ids.
__global__ void TopkRouteKernel(const float* logits, int64_t num_experts, RouteRule rule,
                                int32_t* ids, float* weights, int64_t num_rows, int64_t row_offset,
                                int64_t row_limit, const ForwardMetaView* meta) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= num_rows) return;
  const int top_k = rule.top_k;
  int32_t* ids_row = ids + t * top_k;
  float* weights_row = weights + t * top_k;
  if (t >= NumRealRows(meta, row_limit, row_offset)) {
    for (int j = 0; j < top_k; ++j) {
      ids_row[j] = -1;
      weights_row[j] = 0.0f;
    }
    return;
  }
  const float* row = logits + t * num_experts;
  float max_logit = -INFINITY;
  float sum = 0.0f;
  if (!rule.sigmoid) {
    for (int64_t e = 0; e < num_experts; ++e)
      max_logit = fmaxf(max_logit, row[e]);
    for (int64_t e = 0; e < num_experts; ++e)
      sum += expf(row[e] - max_logit);
  }
  auto score = [&](int64_t e) {
    return rule.sigmoid ? 1.0f / (1.0f + expf(-row[e])) : expf(row[e] - max_logit) / sum;
  };
  auto choice = [&](int64_t e) { return rule.bias ? score(e) + rule.bias[e] : score(e); };

  const int64_t group_size = num_experts / rule.num_groups;
  bool kept[kMaxRouteGroups];
  for (int g = 0; g < rule.num_groups; ++g)
    kept[g] = true;
  if (rule.kept_groups < rule.num_groups) {
    float group_score[kMaxRouteGroups];
    for (int g = 0; g < rule.num_groups; ++g) {
      float first = -INFINITY, second = -INFINITY;
      for (int64_t e = g * group_size; e < (g + 1) * group_size; ++e) {
        const float c = choice(e);
        if (c > first) {
          second = first;
          first = c;
        } else if (c > second) {
          second = c;
        }
      }
      group_score[g] = first + second;
    }
    for (int g = 0; g < rule.num_groups; ++g) {
      int better = 0;
      for (int h = 0; h < rule.num_groups; ++h) {
        better += group_score[h] > group_score[g] || (group_score[h] == group_score[g] && h < g);
      }
      kept[g] = better < rule.kept_groups;
    }
  }

  float chosen_sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    int32_t best = -1;
    float best_choice = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) {
      if (!kept[e / group_size]) continue;
      bool taken = false;
      for (int i = 0; i < j && !taken; ++i)
        taken = ids_row[i] == e;
      if (taken) continue;
      const float c = choice(e);
      if (best < 0 || c > best_choice) {
        best = static_cast<int32_t>(e);
        best_choice = c;
      }
    }
    ids_row[j] = best;
    weights_row[j] = best < 0 ? 0.0f : score(best);
    chosen_sum += weights_row[j];
  }
  const float denominator = fmaxf(chosen_sum, rule.norm_min);
  if (rule.norm_topk_prob && denominator > 0.0f) {
    for (int j = 0; j < top_k; ++j)
      weights_row[j] /= denominator;
  }
  for (int j = 0; j < top_k; ++j)
    weights_row[j] *= rule.routed_scaling_factor;
}

// ---- Align: count, scan, place (one warp per expert; ballots keep pair order) ----

__device__ __forceinline__ unsigned int LanesBelow() {
  return (1u << (threadIdx.x % kWarpSize)) - 1u;
}

// counts[e] (in expert_offsets) = pairs routed to e.
__global__ void AlignCountKernel(const int32_t* ids, int64_t num_pairs, int32_t* counts,
                                 int64_t num_experts) {
  const int64_t warps_per_grid = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
  const int64_t lane = threadIdx.x % kWarpSize;
  for (int64_t e = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       e < num_experts; e += warps_per_grid) {
    int32_t count = 0;
    for (int64_t p0 = 0; p0 < num_pairs; p0 += kWarpSize) {
      const int64_t p = p0 + lane;
      count += __popc(__ballot_sync(0xffffffffu, p < num_pairs && ids[p] == e));
    }
    if (lane == 0) counts[e] = count;
  }
}

// In place: counts → exclusive starts, offsets[num_experts] = total. One block;
// each thread owns a contiguous run of experts.
__global__ void AlignScanKernel(int32_t* offsets, int64_t num_experts) {
  __shared__ int32_t partial[1024];
  const int64_t per_thread = (num_experts + blockDim.x - 1) / blockDim.x;
  const int64_t begin = threadIdx.x * per_thread;
  const int64_t end = min(num_experts, begin + per_thread);
  int32_t sum = 0;
  for (int64_t e = begin; e < end; ++e)
    sum += offsets[e];
  partial[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t running = 0;
    for (unsigned int i = 0; i < blockDim.x; ++i) {
      const int32_t count = partial[i];
      partial[i] = running;
      running += count;
    }
    offsets[num_experts] = running;
  }
  __syncthreads();
  int32_t running = partial[threadIdx.x];
  for (int64_t e = begin; e < end; ++e) {
    const int32_t count = offsets[e];
    offsets[e] = running;
    running += count;
  }
}

__global__ void AlignPlaceKernel(const int32_t* ids, int64_t num_pairs, int32_t* sorted_pairs,
                                 int64_t num_sorted, const int32_t* offsets, int64_t num_experts) {
  const int64_t warps_per_grid = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
  const int64_t lane = threadIdx.x % kWarpSize;
  for (int64_t e = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       e < num_experts; e += warps_per_grid) {
    int64_t next = offsets[e];
    for (int64_t p0 = 0; p0 < num_pairs; p0 += kWarpSize) {
      const int64_t p = p0 + lane;
      const bool match = p < num_pairs && ids[p] == e;
      const unsigned int ballot = __ballot_sync(0xffffffffu, match);
      if (match) {
        const int64_t position = next + __popc(ballot & LanesBelow());
        if (position < num_sorted) sorted_pairs[position] = static_cast<int32_t>(p);
      }
      next += __popc(ballot);
    }
  }
}

// ---- Permute -------------------------------------------------------------------

__global__ void PermuteKernel(const float* x, int64_t num_tokens, const int32_t* sorted_pairs,
                              int64_t num_pairs, int top_k, float* out, int64_t hidden) {
  const int64_t i = blockIdx.x;
  const int64_t p = i < num_pairs ? sorted_pairs[i] : -1;
  const int64_t t = p >= 0 && top_k > 0 ? p / top_k : -1;
  const bool valid = t >= 0 && t < num_tokens;
  float* row = out + i * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    row[c] = valid ? x[t * hidden + c] : 0.0f;
  }
}

// ---- Grouped GEMM ----------------------------------------------------------------

constexpr int kTileRows = 16;  // rows of a block's chunk
constexpr int kTileCols = 64;  // output columns of a block
constexpr int kTileK = 32;
constexpr int kGemmThreads = 256;  // 64 columns x 4 row quads
constexpr int kRowsPerThread = kTileRows / (kGemmThreads / kTileCols);

// Block (column tile, group). The group's rows are walked in chunks of
// kTileRows; each chunk's x tile and the expert's weight tile (widened to f32)
// go through shared memory; each thread owns one column of 4 rows.
template <bool kSiluMul>
__global__ void __launch_bounds__(kGemmThreads) GroupedGemmKernel(GroupedGemmArgs a) {
  __shared__ float x_s[kTileRows][kTileK];
  __shared__ float wg_s[kTileCols][kTileK + 1];
  __shared__ float wu_s[kSiluMul ? kTileCols : 1][kTileK + 1];
  __shared__ int64_t in_row_s[kTileRows];
  __shared__ int64_t out_row_s[kTileRows];

  const int64_t group = blockIdx.y;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileCols;
  const int col = threadIdx.x % kTileCols;
  const int quad = threadIdx.x / kTileCols;

  // The group's expert and its entries [0, num_entries); uniform per block.
  int64_t expert = -1, first = 0, num_entries = 0;
  if (a.mode == GroupMode::kOffsets) {
    int64_t covered = 0;
    for (int64_t e = 0; e <= group; ++e) {
      const int64_t begin = a.expert_offsets[e];
      const int64_t end = a.expert_offsets[e + 1];
      const bool accepted = !(begin < covered || end < begin || end > a.valid_rows);
      if (e == group && accepted) {
        expert = e;
        first = begin;
        num_entries = end - begin;
      }
      if (accepted) covered = end;
    }
  } else if (a.mode == GroupMode::kSlots) {
    expert = a.batch_experts[group];
    num_entries = a.pairs_per_slot;
  } else {
    expert = 0;
    num_entries = NumRealRows(a.meta, a.valid_rows);
  }
  if (expert < 0 || expert >= a.num_experts || num_entries <= 0) return;
  const bool dense = a.mode == GroupMode::kDense;
  const void* wg = dense ? a.dense_gate : a.w_gate[expert];
  const void* wu = !kSiluMul ? nullptr : dense ? a.dense_up : a.w_up[expert];
  // Quantized weights: f32 block scales (fp8) or u8 e8m0 scales per 1 x 32 block (mxfp4),
  // applied to each element in the tile load.
  const bool mxfp4 = a.w_dtype == DType::kMxfp4;
  const bool scaled = a.w_dtype == DType::kFp8E4M3 || mxfp4;
  const void* sg = !scaled ? nullptr : dense ? a.dense_gate_scales : a.w_gate_scales[expert];
  const void* su = !scaled || !kSiluMul ? nullptr
                   : dense              ? a.dense_up_scales
                                        : a.w_up_scales[expert];
  auto scale = [&](const void* s, int64_t index) {
    return mxfp4 ? E8M0ToF32Device(static_cast<const uint8_t*>(s)[index])
                 : static_cast<const float*>(s)[index];
  };

  for (int64_t chunk = 0; chunk < num_entries; chunk += kTileRows) {
    if (threadIdx.x < kTileRows) {
      const int64_t entry = chunk + threadIdx.x;
      int64_t in_row = -1, out_row = -1;
      if (entry < num_entries) {
        if (a.mode != GroupMode::kSlots) {
          in_row = out_row = first + entry;
        } else {
          const int64_t p = a.batch_pairs[group * a.pairs_per_slot + entry];
          if (p >= 0 && p < a.out_limit && p / a.in_div < a.x_rows) {
            in_row = p / a.in_div;
            out_row = p;
          }
        }
      }
      in_row_s[threadIdx.x] = in_row;
      out_row_s[threadIdx.x] = out_row;
    }
    float acc_g[kRowsPerThread] = {};
    float acc_u[kRowsPerThread] = {};
    for (int64_t k0 = 0; k0 < a.k; k0 += kTileK) {
      __syncthreads();  // the previous tile's readers are done (and row indices are set)
      for (int i = threadIdx.x; i < kTileRows * kTileK; i += kGemmThreads) {
        const int r = i / kTileK, kk = i % kTileK;
        const int64_t in_row = in_row_s[r];
        x_s[r][kk] = in_row >= 0 && k0 + kk < a.k ? a.x[in_row * a.k + k0 + kk] : 0.0f;
      }
      for (int i = threadIdx.x; i < kTileCols * kTileK; i += kGemmThreads) {
        const int c = i / kTileK, kk = i % kTileK;
        const bool inside = n0 + c < a.n && k0 + kk < a.k;
        const int64_t index = (n0 + c) * a.k + k0 + kk;
        const int64_t scale_index =
            scaled && inside ? (n0 + c) / a.block_rows * a.scale_cols + (k0 + kk) / a.block_cols
                             : 0;
        wg_s[c][kk] = !inside  ? 0.0f
                      : scaled ? LoadWeight(wg, a.w_dtype, index) * scale(sg, scale_index)
                               : LoadWeight(wg, a.w_dtype, index);
        if constexpr (kSiluMul) {
          wu_s[c][kk] = !inside  ? 0.0f
                        : scaled ? LoadWeight(wu, a.w_up_dtype, index) * scale(su, scale_index)
                                 : LoadWeight(wu, a.w_up_dtype, index);
        }
      }
      __syncthreads();
      for (int kk = 0; kk < kTileK; ++kk) {
        const float g = wg_s[col][kk];
        float u = 0.0f;
        if constexpr (kSiluMul) u = wu_s[col][kk];
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) {
          const float xv = x_s[quad * kRowsPerThread + r][kk];
          acc_g[r] += xv * g;
          if constexpr (kSiluMul) acc_u[r] += xv * u;
        }
      }
    }
    if (n0 + col < a.n) {
      const float bias = !kSiluMul && a.bias != nullptr
                             ? LoadWeight(a.bias, a.bias_dtype, expert * a.n + n0 + col)
                             : 0.0f;
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        const int64_t out_row = out_row_s[quad * kRowsPerThread + r];
        if (out_row < 0) continue;
        a.out[out_row * a.n + n0 + col] = kSiluMul ? Silu(acc_g[r]) * acc_u[r] : acc_g[r] + bias;
      }
    }
    __syncthreads();  // row indices are rewritten by the next chunk
  }
}

// ---- Unpermute-reduce --------------------------------------------------------------

// One block per token: scan the pair list blockDim entries at a time, collect
// this token's entries in ascending i (ballots + a prefix over warps), then
// every thread adds them to the columns it owns, in that order.
__global__ void UnpermuteReduceKernel(const float* y, const int32_t* sorted_pairs,
                                      int64_t num_pairs, const float* route_weights,
                                      int64_t num_weights, int top_k, float* out,
                                      int64_t num_tokens, int64_t hidden) {
  __shared__ int32_t warp_counts[kThreads / kWarpSize];
  __shared__ int64_t matches[kThreads];
  const int64_t t = blockIdx.x;
  float* out_row = out + t * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x)
    out_row[c] = 0.0f;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  for (int64_t base = 0; base < num_pairs; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const int64_t p = i < num_pairs ? sorted_pairs[i] : -1;
    const bool match = p >= 0 && p < num_weights && p / top_k < num_tokens && p / top_k == t;
    const unsigned int ballot = __ballot_sync(0xffffffffu, match);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int32_t before = 0, total = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x / kWarpSize); ++w) {
      if (w < warp) before += warp_counts[w];
      total += warp_counts[w];
    }
    if (match) matches[before + __popc(ballot & LanesBelow())] = i;
    __syncthreads();
    for (int32_t m = 0; m < total; ++m) {
      const int64_t row = matches[m];
      const float w = route_weights[sorted_pairs[row]];
      const float* y_row = y + row * hidden;
      for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x)
        out_row[c] += w * y_row[c];
    }
    __syncthreads();  // matches / warp_counts are rewritten next round
  }
}

// ---- Decode layout -------------------------------------------------------------------

// One block. A bitset of the used experts in shared memory, prefix counts of
// its words give each used expert its slot; then one warp per slot lists the
// slot's pairs in ascending order with ballots.
__global__ void ExpertBatchKernel(const int32_t* ids, int64_t num_pairs, int32_t* batch_experts,
                                  int64_t num_slots, int32_t* batch_pairs, int64_t num_filled,
                                  int64_t pairs_per_slot, int64_t num_experts) {
  extern __shared__ uint32_t bits[];  // [num_words], then prefix [num_words + 1]
  const int64_t num_words = (num_experts + 31) / 32;
  uint32_t* prefix = bits + num_words;
  for (int64_t w = threadIdx.x; w < num_words; w += blockDim.x)
    bits[w] = 0;
  __syncthreads();
  for (int64_t p = threadIdx.x; p < num_pairs; p += blockDim.x) {
    const int32_t id = ids[p];
    if (id >= 0 && id < num_experts) atomicOr(&bits[id / 32], 1u << (id % 32));
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t running = 0;
    for (int64_t w = 0; w < num_words; ++w) {
      prefix[w] = running;
      running += __popc(bits[w]);
    }
    prefix[num_words] = running;
  }
  __syncthreads();
  const int64_t num_used = prefix[num_words];
  for (int64_t s = num_used + threadIdx.x; s < num_slots; s += blockDim.x)
    batch_experts[s] = -1;
  for (int64_t e = threadIdx.x; e < num_experts; e += blockDim.x) {
    const uint32_t word = bits[e / 32];
    if ((word >> (e % 32)) & 1u) {
      const int64_t slot = prefix[e / 32] + __popc(word & ((1u << (e % 32)) - 1u));
      if (slot < num_slots) batch_experts[slot] = static_cast<int32_t>(e);
    }
  }
  __syncthreads();  // batch_experts is read back below (global writes of this block)
  const int lane = threadIdx.x % kWarpSize;
  for (int64_t s = threadIdx.x / kWarpSize; s < num_filled; s += blockDim.x / kWarpSize) {
    const int32_t expert = batch_experts[s];
    if (expert < 0) continue;
    int32_t* row = batch_pairs + s * pairs_per_slot;  // -1 already (the launcher's memset)
    int64_t count = 0;
    for (int64_t p0 = 0; p0 < num_pairs && count < pairs_per_slot; p0 += kWarpSize) {
      const int64_t p = p0 + lane;
      const bool match = p < num_pairs && ids[p] == expert;
      const unsigned int ballot = __ballot_sync(0xffffffffu, match);
      if (match) {
        const int64_t position = count + __popc(ballot & LanesBelow());
        if (position < pairs_per_slot) row[position] = static_cast<int32_t>(p);
      }
      count += __popc(ballot);
    }
  }
}

// ---- Combine ---------------------------------------------------------------------------

__global__ void CombineKernel(const float* y, int64_t num_y_rows, const float* route_weights,
                              int64_t top_k, float* out, int64_t hidden, int64_t row_limit,
                              const ForwardMetaView* meta) {
  const int64_t t = blockIdx.x;
  const bool real = t < NumRealRows(meta, row_limit);
  float* out_row = out + t * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    float acc = 0.0f;
    if (real) {
      for (int64_t j = 0; j < top_k; ++j) {
        const int64_t p = t * top_k + j;
        if (p >= num_y_rows) continue;
        acc += route_weights[p] * y[p * hidden + c];
      }
    }
    out_row[c] = acc;
  }
}

int RowThreads(int64_t n) {
  const int64_t rounded = (n + kWarpSize - 1) / kWarpSize * kWarpSize;
  return static_cast<int>(rounded < kWarpSize ? kWarpSize
                                              : (rounded > kThreads ? kThreads : rounded));
}

}  // namespace

RouteRule MakeRouteRule(const TopkRouteParams& params, const float* bias) {
  RouteRule rule;
  rule.top_k = static_cast<int>(params.top_k);
  rule.norm_topk_prob = params.norm_topk_prob != 0;
  rule.sigmoid = params.scoring == static_cast<int64_t>(RouteScoring::kSigmoid);
  rule.num_groups = static_cast<int>(params.num_groups);
  rule.kept_groups = static_cast<int>(params.KeptGroups());
  rule.routed_scaling_factor = static_cast<float>(params.routed_scaling_factor);
  rule.norm_min = static_cast<float>(params.norm_min);
  rule.bias = bias;
  return rule;
}

cudaError_t LaunchTopkRoute(const float* logits, int64_t num_experts, const RouteRule& rule,
                            int32_t* ids, float* weights, int64_t num_rows, int64_t row_offset,
                            int64_t row_limit, const ForwardMetaView* meta, cudaStream_t stream) {
  if (num_rows <= 0 || rule.top_k <= 0) return cudaSuccess;
  if (rule.num_groups < 1 || rule.num_groups > kMaxRouteGroups ||
      num_experts % rule.num_groups != 0 || rule.kept_groups < 1 ||
      rule.kept_groups > rule.num_groups) {
    return cudaErrorInvalidValue;
  }
  TopkRouteKernel<<<CeilDiv(num_rows, 128), 128, 0, stream>>>(
      logits, num_experts, rule, ids, weights, num_rows, row_offset, row_limit, meta);
  return cudaGetLastError();
}

cudaError_t LaunchMoeAlign(const int32_t* ids, int64_t num_pairs, int32_t* sorted_pairs,
                           int64_t num_sorted, int32_t* expert_offsets, int64_t num_offsets,
                           int64_t num_experts, cudaStream_t stream) {
  // -1 everywhere (0xff bytes) and zero offsets, as the reference starts.
  cudaError_t e = cudaMemsetAsync(sorted_pairs, 0xff, num_sorted * sizeof(int32_t), stream);
  if (e == cudaSuccess)
    e = cudaMemsetAsync(expert_offsets, 0, num_offsets * sizeof(int32_t), stream);
  if (e != cudaSuccess || num_experts <= 0 || num_offsets < num_experts + 1) return e;
  const unsigned int blocks = CeilDiv(num_experts * kWarpSize, kThreads);
  AlignCountKernel<<<blocks, kThreads, 0, stream>>>(ids, num_pairs, expert_offsets, num_experts);
  AlignScanKernel<<<1, 1024, 0, stream>>>(expert_offsets, num_experts);
  AlignPlaceKernel<<<blocks, kThreads, 0, stream>>>(ids, num_pairs, sorted_pairs, num_sorted,
                                                    expert_offsets, num_experts);
  return cudaGetLastError();
}

cudaError_t LaunchMoePermute(const float* x, int64_t num_tokens, const int32_t* sorted_pairs,
                             int64_t num_pairs, int top_k, float* out, int64_t num_rows,
                             int64_t hidden, cudaStream_t stream) {
  if (num_rows <= 0 || hidden <= 0) return cudaSuccess;
  PermuteKernel<<<static_cast<unsigned int>(num_rows), RowThreads(hidden), 0, stream>>>(
      x, num_tokens, sorted_pairs, num_pairs, top_k, out, hidden);
  return cudaGetLastError();
}

cudaError_t LaunchGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  if (args.out_rows <= 0 || args.n <= 0) return cudaSuccess;
  cudaError_t e = cudaMemsetAsync(args.out, 0, args.out_rows * args.n * sizeof(float), stream);
  const int64_t num_groups = args.mode == GroupMode::kOffsets ? args.num_experts
                             : args.mode == GroupMode::kSlots ? args.num_slots
                                                              : 1;
  if (e != cudaSuccess || num_groups <= 0 || args.k <= 0) return e;
  if (num_groups > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(CeilDiv(args.n, kTileCols), static_cast<unsigned int>(num_groups));
  if (args.mode == GroupMode::kDense ? args.dense_up != nullptr : args.w_up != nullptr) {
    GroupedGemmKernel<true><<<grid, kGemmThreads, 0, stream>>>(args);
  } else {
    GroupedGemmKernel<false><<<grid, kGemmThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

namespace {

// x_row [k] times w [k, n] column j, plus bias_row[j].
__device__ float DotKn(const float* x_row, const void* w, DType w_dtype, int64_t k, int64_t n,
                       int64_t j, const void* bias, DType bias_dtype, int64_t bias_offset) {
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i)
    acc += x_row[i] * LoadWeight(w, w_dtype, i * n + j);
  if (bias != nullptr) acc += LoadWeight(bias, bias_dtype, bias_offset + j);
  return acc;
}

// Grid (column tiles, groups); each thread owns one column of its group's rows.
__global__ void GroupedGemmKnKernel(KnGemmArgs a) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t group = blockIdx.y;
  if (j >= a.n) return;
  if (a.mode == GroupMode::kOffsets) {
    int64_t covered = 0, first = 0, count = 0;
    for (int64_t e = 0; e <= group; ++e) {
      const int64_t begin = a.expert_offsets[e], end = a.expert_offsets[e + 1];
      const bool accepted = !(begin < covered || end < begin || end > a.valid_rows);
      if (e == group && accepted) {
        first = begin;
        count = end - begin;
      }
      if (accepted) covered = end;
    }
    for (int64_t r = first; r < first + count; ++r) {
      a.out[r * a.n + j] = DotKn(a.x + r * a.k, a.w[group], a.w_dtype, a.k, a.n, j, a.bias,
                                 a.bias_dtype, group * a.n);
    }
    return;
  }
  const int64_t e = a.batch_experts[group];
  if (e < 0 || e >= a.num_experts) return;
  for (int64_t c = 0; c < a.pairs_per_slot; ++c) {
    const int64_t p = a.batch_pairs[group * a.pairs_per_slot + c];
    if (p < 0 || p >= a.out_limit || p / a.in_div >= a.x_rows) continue;
    a.out[p * a.n + j] = DotKn(a.x + (p / a.in_div) * a.k, a.w[e], a.w_dtype, a.k, a.n, j, a.bias,
                               a.bias_dtype, e * a.n);
  }
}

__global__ void ClampedSwigluKernel(const float* x, float* out, int64_t total, float alpha,
                                    float limit) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const float g = fminf(x[2 * i], limit);
  const float u = fminf(fmaxf(x[2 * i + 1], -limit), limit);
  out[i] = (u + 1.0f) * (g / (1.0f + expf(-alpha * g)));
}

}  // namespace

cudaError_t LaunchGroupedGemmKn(const KnGemmArgs& args, cudaStream_t stream) {
  if (args.out_rows <= 0 || args.n <= 0) return cudaSuccess;
  cudaError_t e = cudaMemsetAsync(args.out, 0, args.out_rows * args.n * sizeof(float), stream);
  if (args.mode == GroupMode::kDense) return cudaErrorInvalidValue;
  const int64_t num_groups = args.mode == GroupMode::kOffsets ? args.num_experts : args.num_slots;
  if (e != cudaSuccess || num_groups <= 0 || args.k <= 0) return e;
  if (num_groups > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(CeilDiv(args.n, kThreads), static_cast<unsigned int>(num_groups));
  GroupedGemmKnKernel<<<grid, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t LaunchClampedSwiglu(const float* x, float* out, int64_t num_rows, int64_t inter,
                                float alpha, float limit, cudaStream_t stream) {
  const int64_t total = num_rows * inter;
  if (total <= 0) return cudaSuccess;
  ClampedSwigluKernel<<<CeilDiv(total, kThreads), kThreads, 0, stream>>>(x, out, total, alpha,
                                                                         limit);
  return cudaGetLastError();
}

cudaError_t LaunchMoeUnpermuteReduce(const float* y, const int32_t* sorted_pairs, int64_t num_pairs,
                                     const float* route_weights, int64_t num_weights, int top_k,
                                     float* out, int64_t num_tokens, int64_t hidden,
                                     cudaStream_t stream) {
  if (num_tokens <= 0 || hidden <= 0) return cudaSuccess;
  if (top_k <= 0) num_pairs = 0;
  UnpermuteReduceKernel<<<static_cast<unsigned int>(num_tokens), kThreads, 0, stream>>>(
      y, sorted_pairs, num_pairs, route_weights, num_weights, top_k <= 0 ? 1 : top_k, out,
      num_tokens, hidden);
  return cudaGetLastError();
}

cudaError_t LaunchMoeExpertBatch(const int32_t* ids, int64_t num_pairs, int32_t* batch_experts,
                                 int64_t num_slots, int32_t* batch_pairs, int64_t pair_rows,
                                 int64_t pairs_per_slot, int64_t num_experts, cudaStream_t stream) {
  // Rows past num_filled (and every row when there is nothing to fill) stay -1.
  cudaError_t e =
      cudaMemsetAsync(batch_pairs, 0xff, pair_rows * pairs_per_slot * sizeof(int32_t), stream);
  if (e != cudaSuccess || num_slots <= 0) return e;
  if (num_experts < 0 || num_experts > 65536) return cudaErrorInvalidValue;
  const int64_t num_words = (num_experts + 31) / 32;
  const size_t shared_bytes = (2 * num_words + 1) * sizeof(uint32_t);
  const int64_t num_filled = num_slots < pair_rows ? num_slots : pair_rows;
  ExpertBatchKernel<<<1, 1024, shared_bytes, stream>>>(ids, num_pairs, batch_experts, num_slots,
                                                       batch_pairs, num_filled, pairs_per_slot,
                                                       num_experts);
  return cudaGetLastError();
}

cudaError_t LaunchMoeCombine(const float* y, int64_t num_y_rows, const float* route_weights,
                             int64_t top_k, float* out, int64_t num_rows, int64_t hidden,
                             int64_t row_limit, const ForwardMetaView* meta, cudaStream_t stream) {
  if (num_rows <= 0 || hidden <= 0) return cudaSuccess;
  CombineKernel<<<static_cast<unsigned int>(num_rows), RowThreads(hidden), 0, stream>>>(
      y, num_y_rows, route_weights, top_k, out, hidden, row_limit, meta);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
