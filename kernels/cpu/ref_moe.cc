// Reference mixture-of-experts kernels: the fused block (RefMoe) and the two
// decomposed pipelines it must agree with (grouped: align/permute/grouped
// matmul/unpermute; decode: expert batch/batched matmuls/combine).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::DotWeight;
using ref_detail::ExpertMatrix;
using ref_detail::IsWeightDType;
using ref_detail::NumRows;
using ref_detail::RowSize;
using ref_detail::Silu;

// RefMoe computes each expert's [I] hidden row in chunks of this many values.
constexpr int64_t kMoeChunk = 4096;
// RefMoeUnpermuteReduce gives each thread this many output columns.
constexpr int64_t kColumnBlock = 64;

// Rows [0, result) are real when row t stands for token row_offset + t.
int64_t NumRealRowsAt(const KernelArgs& args, int64_t num_rows, int64_t row_offset) {
  if (args.meta == nullptr) return num_rows;
  const int64_t real = static_cast<int64_t>(args.meta->num_tokens) - row_offset;
  return std::clamp<int64_t>(real, 0, num_rows);
}

void CheckPlainWeight(const char* kernel, const TensorArg& w, int64_t n, int64_t k) {
  MG_KERNEL_CONTRACT(IsWeightDType(w.dtype) && w.data != nullptr && w.rank == 2 &&
                         w.shape[0] == n && w.shape[1] == k,
                     kernel, "weight must be f32/bf16/f16 [N, K]");
}

void CheckStackedWeight(const char* kernel, const TensorArg& w, int64_t e, int64_t n, int64_t k) {
  MG_KERNEL_CONTRACT(ref_detail::IsMatmulWeight(w) && w.expert_data != nullptr && w.rank == 3 &&
                         w.shape[0] == e && w.shape[1] == n && w.shape[2] == k &&
                         (!w.quant.quantized() || w.expert_scales != nullptr),
                     kernel,
                     "stacked weight must be f32/bf16/f16, block-scaled fp8 or mxfp4 [E, N, K]");
}

void CheckStackedKnWeight(const char* kernel, const TensorArg& w, int64_t e, int64_t k, int64_t n) {
  MG_KERNEL_CONTRACT(IsWeightDType(w.dtype) && w.expert_data != nullptr && w.rank == 3 &&
                         w.shape[0] == e && w.shape[1] == k && w.shape[2] == n,
                     kernel, "stacked [in, out] weight must be f32/bf16/f16 [E, K, N]");
}

// The optional expert bias in[index] [E, N], or null when absent.
const TensorArg* ExpertBias(const KernelArgs& args, int index, int64_t e, int64_t n,
                            const char* kernel) {
  if (args.num_in <= index) return nullptr;
  const TensorArg& b = args.in[index];
  MG_KERNEL_CONTRACT(IsWeightDType(b.dtype) && b.data != nullptr && b.numel() == e * n, kernel,
                     "bias must be f32/bf16/f16 [E, N]");
  return &b;
}

// x [K] times expert e's [K, N] weight, column j, plus bias b[e, j].
float DotKn(const float* x, const TensorArg& w, int64_t e, int64_t k, int64_t n, int64_t j,
            const TensorArg* bias) {
  float acc = 0.0f;
  const void* we = w.expert(e);
  for (int64_t i = 0; i < k; ++i)
    acc += x[i] * ref_detail::LoadWeight(we, w.dtype, i * n + j);
  if (bias != nullptr) acc += ref_detail::LoadWeight(bias->data, bias->dtype, e * n + j);
  return acc;
}

// x [K] times row j of expert e's [N, K] weight (any matmul weight dtype, quantized ones
// dequantized), plus bias b[e, j].
float DotNk(const float* x, const TensorArg& w, int64_t e, int64_t k, int64_t n, int64_t j,
            const TensorArg* bias) {
  float acc = ref_detail::ExpertMatrix(w, e).MatmulDot(x, j, 0, k);
  if (bias != nullptr) acc += ref_detail::LoadWeight(bias->data, bias->dtype, e * n + j);
  return acc;
}

// One row's route by TopkRouteParams' rule (ir/op_params.h): the top_k
// experts of the kept groups by descending choice score (ties: lower expert
// id) into ids, their unbiased scores (normalised, scaled) into weights; routes
// past the experts the row may choose get id -1, weight 0. Scores are
// recomputed from the logits, and "already chosen" is a scan of ids.
void RouteRow(const float* logits, const float* bias, int64_t num_experts, const TopkRouteParams& p,
              int32_t* ids, float* weights) {
  const bool sigmoid = p.scoring == static_cast<int64_t>(RouteScoring::kSigmoid);
  float max_logit = -std::numeric_limits<float>::infinity();
  float sum = 0.0f;
  if (!sigmoid) {
    for (int64_t e = 0; e < num_experts; ++e)
      max_logit = std::max(max_logit, logits[e]);
    for (int64_t e = 0; e < num_experts; ++e)
      sum += std::exp(logits[e] - max_logit);
  }
  auto score = [&](int64_t e) {
    return sigmoid ? 1.0f / (1.0f + std::exp(-logits[e])) : std::exp(logits[e] - max_logit) / sum;
  };
  auto choice = [&](int64_t e) { return bias ? score(e) + bias[e] : score(e); };

  const int64_t group_size = num_experts / p.num_groups;
  bool kept[kMaxRouteGroups];
  ref_detail::KeptRouteGroups(p, num_experts, choice, kept);

  for (int64_t j = 0; j < p.top_k; ++j) {
    int32_t best = -1;
    float best_choice = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) {
      if (!kept[e / group_size]) continue;
      if (std::find(ids, ids + j, static_cast<int32_t>(e)) != ids + j) continue;
      const float c = choice(e);
      if (best < 0 || c > best_choice) {
        best = static_cast<int32_t>(e);
        best_choice = c;
      }
    }
    ids[j] = best;
    weights[j] = best < 0 ? 0.0f : score(best);
  }
  ref_detail::FinishRouteWeights(p, weights);
}

// The routing parameters a kernel can run: groups that split the experts evenly.
bool RouteParamsOk(const TopkRouteParams& p, int64_t num_experts) {
  return p.num_groups >= 1 && p.num_groups <= kMaxRouteGroups && num_experts % p.num_groups == 0 &&
         p.top_k_groups >= 0 && p.top_k_groups <= p.num_groups;
}

// The optional score-correction bias in[index]: f32 [E], or null when absent.
const float* RouteBias(const KernelArgs& args, int index, int64_t num_experts, const char* kernel) {
  if (args.num_in <= index) return nullptr;
  const TensorArg& bias = args.in[index];
  MG_KERNEL_CONTRACT(bias.dtype == DType::kF32 && bias.numel() == num_experts, kernel,
                     "bias must be f32 [E]");
  return bias.as<const float>();
}

// Expert whose offsets range holds row r, or -1. Ranges are accepted in
// expert order when they start at or after the end of the last accepted one,
// are not reversed and end by num_rows; other ranges are skipped.
int64_t ExpertOfRow(const int32_t* offsets, int64_t num_experts, int64_t num_rows, int64_t r) {
  int64_t covered = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t begin = offsets[e];
    const int64_t end = offsets[e + 1];
    if (begin < covered || end < begin || end > num_rows) continue;
    if (r < begin) return -1;
    if (r < end) return e;
    covered = end;
  }
  return -1;
}

// out[r] = x[r] wg_e^T, or silu(x[r] wg_e^T) * (x[r] wu_e^T) when wu is given.
void GroupedMatmul(const KernelArgs& args, const TensorArg& wg, const TensorArg* wu) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& offsets_arg = args.in[1];
  const int32_t* offsets = offsets_arg.as<const int32_t>();
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t k = RowSize(args.in[0]);
  const int64_t num_experts = wg.dim(0);
  const char* kernel = wu == nullptr ? "grouped_matmul" : "grouped_matmul_silu_mul";
  MG_KERNEL_CONTRACT(offsets_arg.numel() >= num_experts + 1 && NumRows(args.in[0]) == num_rows,
                     kernel, "offsets must be [E + 1] and x [P, K] for out [P, N]");
  CheckStackedWeight(kernel, wg, num_experts, n, k);
  if (wu != nullptr) CheckStackedWeight(kernel, *wu, num_experts, n, k);
  const TensorArg* bias = wu == nullptr ? ExpertBias(args, 3, num_experts, n, kernel) : nullptr;
  const int64_t num_valid_rows = num_rows;
  ParallelFor(args.num_threads, num_rows * n, [&](int64_t begin, int64_t end) {
    int64_t cached_row = -1;
    int64_t expert = -1;
    for (int64_t i_flat = begin; i_flat < end; ++i_flat) {
      const int64_t r = i_flat / n, j = i_flat % n;
      if (r != cached_row) {
        cached_row = r;
        expert = r < num_valid_rows ? ExpertOfRow(offsets, num_experts, num_valid_rows, r) : -1;
      }
      float value = 0.0f;
      if (expert >= 0) {
        const float* x_row = x + r * k;
        const float g = ExpertMatrix(wg, expert).MatmulDot(x_row, j, 0, k);
        value = wu == nullptr ? g : Silu(g) * ExpertMatrix(*wu, expert).MatmulDot(x_row, j, 0, k);
        if (bias != nullptr)
          value += ref_detail::LoadWeight(bias->data, bias->dtype, expert * n + j);
      }
      out[r * n + j] = value;
    }
  });
}

}  // namespace

namespace {

// RefMoe with activation 1 (GPT-OSS): see reference_kernels.h.
void RefMoeClampedSwiglu(const KernelArgs& args, const MoeParams& params) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& router = args.in[1];
  const TensorArg& gate_up = args.in[2];
  const TensorArg& down = args.in[3];
  float* out = args.out[0].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  const int64_t num_experts = router.dim(0);
  const bool out_major = params.out_major != 0;  // gate_up [E, 2I, H], down [E, H, I]
  const int64_t inter = gate_up.dim(out_major ? 1 : 2) / 2;
  MG_KERNEL_CONTRACT(top_k > 0 && top_k <= kRefMaxTopK && num_experts > 0 &&
                         num_experts <= kRefMaxExperts && RowSize(args.in[0]) == hidden &&
                         NumRows(args.in[0]) == num_rows && (args.num_in == 4 || args.num_in == 7),
                     "moe", "x must be [T, H] with 0 < top_k <= 64, 0 < E <= 4096, 4 or 7 inputs");
  MG_KERNEL_CONTRACT(RouteParamsOk(params, num_experts), "moe",
                     "num_groups must divide E and top_k_groups <= num_groups");
  CheckPlainWeight("moe", router, num_experts, hidden);
  if (out_major) {
    CheckStackedWeight("moe", gate_up, num_experts, 2 * inter, hidden);
    CheckStackedWeight("moe", down, num_experts, hidden, inter);
  } else {
    CheckStackedKnWeight("moe", gate_up, num_experts, hidden, 2 * inter);
    CheckStackedKnWeight("moe", down, num_experts, inter, hidden);
  }
  // Column j of expert e's [K, N] projection of x (row j of its [N, K] one when out_major).
  auto project = [out_major](const float* in, const TensorArg& w, int64_t e, int64_t k, int64_t n,
                             int64_t j, const TensorArg* bias) {
    return out_major ? DotNk(in, w, e, k, n, j, bias) : DotKn(in, w, e, k, n, j, bias);
  };
  const TensorArg* router_bias = ExpertBias(args, 4, 1, num_experts, "moe");
  const TensorArg* gate_up_bias = ExpertBias(args, 5, num_experts, 2 * inter, "moe");
  const TensorArg* down_bias = ExpertBias(args, 6, num_experts, hidden, "moe");
  const float alpha = static_cast<float>(params.swiglu_alpha);
  const float limit = static_cast<float>(params.swiglu_limit);
  const int64_t num_real = NumRealRowsAt(args, num_rows, params.row_offset);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    std::vector<float> h(static_cast<size_t>(inter));
    for (int64_t t = begin; t < end; ++t) {
      float* out_row = out + t * hidden;
      std::fill(out_row, out_row + hidden, 0.0f);
      if (t >= num_real) continue;
      const float* x_row = x + t * hidden;
      float logits[kRefMaxExperts];
      for (int64_t e = 0; e < num_experts; ++e) {
        logits[e] = DotWeight(x_row, router.data, router.dtype, e * hidden, hidden);
        if (router_bias != nullptr) {
          logits[e] += ref_detail::LoadWeight(router_bias->data, router_bias->dtype, e);
        }
      }
      int32_t ids[kRefMaxTopK];
      float weights[kRefMaxTopK];
      RouteRow(logits, nullptr, num_experts, params, ids, weights);
      for (int64_t j = 0; j < top_k; ++j) {
        const int32_t e = ids[j];
        if (e < 0) continue;
        for (int64_t i = 0; i < inter; ++i) {
          const float g = project(x_row, gate_up, e, hidden, 2 * inter, 2 * i, gate_up_bias);
          const float u = project(x_row, gate_up, e, hidden, 2 * inter, 2 * i + 1, gate_up_bias);
          h[static_cast<size_t>(i)] = ref_detail::ClampedSwiglu(g, u, alpha, limit);
        }
        for (int64_t c = 0; c < hidden; ++c) {
          out_row[c] += weights[j] * project(h.data(), down, e, inter, hidden, c, down_bias);
        }
      }
    }
  });
}

}  // namespace

void RefMoe(const KernelArgs& args) {
  const MoeParams& params = Params<MoeParams>(args);
  if (params.activation == static_cast<int64_t>(ExpertActivation::kClampedSwiglu)) {
    RefMoeClampedSwiglu(args, params);
    return;
  }
  const float* x = args.in[0].as<const float>();
  const TensorArg& router = args.in[1];
  const TensorArg& gate = args.in[2];
  const TensorArg& up = args.in[3];
  const TensorArg& down = args.in[4];
  float* out = args.out[0].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  const int64_t num_experts = router.dim(0);
  const int64_t inter = gate.dim(1);
  MG_KERNEL_CONTRACT(top_k > 0 && top_k <= kRefMaxTopK && num_experts > 0 &&
                         num_experts <= kRefMaxExperts && RowSize(args.in[0]) == hidden &&
                         NumRows(args.in[0]) == num_rows,
                     "moe", "x must be [T, H] with 0 < top_k <= 64 and 0 < E <= 4096");
  MG_KERNEL_CONTRACT(RouteParamsOk(params, num_experts), "moe",
                     "num_groups must divide E and top_k_groups <= num_groups");
  const float* bias = RouteBias(args, 5, num_experts, "moe");
  CheckPlainWeight("moe", router, num_experts, hidden);
  CheckStackedWeight("moe", gate, num_experts, inter, hidden);
  CheckStackedWeight("moe", up, num_experts, inter, hidden);
  CheckStackedWeight("moe", down, num_experts, hidden, inter);
  const int64_t num_real = NumRealRowsAt(args, num_rows, params.row_offset);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* out_row = out + t * hidden;
      std::fill(out_row, out_row + hidden, 0.0f);
      if (t >= num_real) continue;
      const float* x_row = x + t * hidden;
      float logits[kRefMaxExperts];
      for (int64_t e = 0; e < num_experts; ++e) {
        logits[e] = DotWeight(x_row, router.data, router.dtype, e * hidden, hidden);
      }
      int32_t ids[kRefMaxTopK];
      float weights[kRefMaxTopK];
      RouteRow(logits, bias, num_experts, params, ids, weights);
      float h[kMoeChunk];
      for (int64_t j = 0; j < top_k; ++j) {
        const int32_t e = ids[j];
        if (e < 0) continue;
        const ref_detail::WeightMatrix gm = ExpertMatrix(gate, e), um = ExpertMatrix(up, e),
                                       dm = ExpertMatrix(down, e);
        // weight * down_e(h), with h built kMoeChunk values at a time.
        for (int64_t i0 = 0; i0 < inter; i0 += kMoeChunk) {
          const int64_t len = std::min(kMoeChunk, inter - i0);
          for (int64_t i = 0; i < len; ++i) {
            const float g = gm.MatmulDot(x_row, i0 + i, 0, hidden);
            const float u = um.MatmulDot(x_row, i0 + i, 0, hidden);
            h[i] = Silu(g) * u;
          }
          for (int64_t c = 0; c < hidden; ++c) {
            out_row[c] += weights[j] * dm.MatmulDot(h, c, i0, len);
          }
        }
      }
    }
  });
}

void RefTopkRoute(const KernelArgs& args) {
  const TopkRouteParams& params = Params<TopkRouteParams>(args);
  const float* logits = args.in[0].as<const float>();
  int32_t* ids = args.out[0].as<int32_t>();
  float* weights = args.out[1].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_rows = NumRows(args.in[0]);
  const int64_t num_experts = RowSize(args.in[0]);
  MG_KERNEL_CONTRACT(top_k > 0 && RowSize(args.out[0]) == top_k && RowSize(args.out[1]) == top_k &&
                         NumRows(args.out[0]) == num_rows && NumRows(args.out[1]) == num_rows,
                     "topk_route", "ids and weights must be [T, top_k] for logits [T, E]");
  MG_KERNEL_CONTRACT(RouteParamsOk(params, num_experts), "topk_route",
                     "num_groups must divide E and top_k_groups <= num_groups");
  const float* bias = RouteBias(args, 1, num_experts, "topk_route");
  const int64_t num_real = NumRealRowsAt(args, num_rows, params.row_offset);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int32_t* ids_row = ids + t * top_k;
      float* weights_row = weights + t * top_k;
      if (t < num_real) {
        RouteRow(logits + t * num_experts, bias, num_experts, params, ids_row, weights_row);
      } else {
        std::fill(ids_row, ids_row + top_k, -1);
        std::fill(weights_row, weights_row + top_k, 0.0f);
      }
    }
  });
}

void RefMoeAlign(const KernelArgs& args) {
  const NumExpertsParams& params = Params<NumExpertsParams>(args);
  const int32_t* ids = args.in[0].as<const int32_t>();
  const int64_t num_pairs = args.in[0].numel();
  int32_t* sorted_pairs = args.out[0].as<int32_t>();
  const int64_t num_sorted = args.out[0].numel();
  int32_t* offsets = args.out[1].as<int32_t>();
  const int64_t num_offsets = args.out[1].numel();
  const int64_t num_experts = params.num_experts;
  std::fill(sorted_pairs, sorted_pairs + num_sorted, -1);
  std::fill(offsets, offsets + num_offsets, 0);
  if (num_experts < 0 || num_offsets < num_experts + 1) return;
  auto valid = [&](int32_t id) { return id >= 0 && id < num_experts; };

  // Counting sort, using offsets itself as the scratch: counts, then starts,
  // then (while placing) ends, shifted back to starts at the end.
  for (int64_t p = 0; p < num_pairs; ++p) {
    if (valid(ids[p])) ++offsets[ids[p]];
  }
  int32_t running = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    const int32_t count = offsets[e];
    offsets[e] = running;
    running += count;
  }
  offsets[num_experts] = running;
  for (int64_t p = 0; p < num_pairs; ++p) {
    if (!valid(ids[p])) continue;
    const int32_t position = offsets[ids[p]]++;
    if (position < num_sorted) sorted_pairs[position] = static_cast<int32_t>(p);
  }
  for (int64_t e = num_experts - 1; e > 0; --e)
    offsets[e] = offsets[e - 1];
  offsets[0] = 0;
}

void RefMoePermute(const KernelArgs& args) {
  const TopKParams& params = Params<TopKParams>(args);
  const float* x = args.in[0].as<const float>();
  const int32_t* sorted_pairs = args.in[1].as<const int32_t>();
  float* out = args.out[0].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  const int64_t num_tokens = RowSize(args.in[0]) == hidden ? NumRows(args.in[0]) : 0;
  const int64_t num_pairs = args.in[1].numel();
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = out + i * hidden;
      const int64_t p = i < num_pairs ? sorted_pairs[i] : -1;
      const int64_t t = p >= 0 && top_k > 0 ? p / top_k : -1;
      if (t < 0 || t >= num_tokens) {
        std::fill(row, row + hidden, 0.0f);
      } else {
        std::copy(x + t * hidden, x + (t + 1) * hidden, row);
      }
    }
  });
}

void RefGroupedMatmul(const KernelArgs& args) {
  GroupedMatmul(args, args.in[2], nullptr);
}

void RefGroupedMatmulSiluMul(const KernelArgs& args) {
  GroupedMatmul(args, args.in[2], &args.in[3]);
}

void RefMoeUnpermuteReduce(const KernelArgs& args) {
  const TopKParams& params = Params<TopKParams>(args);
  const float* y = args.in[0].as<const float>();
  const int32_t* sorted_pairs = args.in[1].as<const int32_t>();
  const float* route_weights = args.in[2].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_tokens = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  const bool ok = top_k > 0 && RowSize(args.in[0]) == hidden;
  const int64_t num_pairs = ok ? std::min(NumRows(args.in[0]), args.in[1].numel()) : 0;
  const int64_t num_weights = args.in[2].numel();
  // Threads own column blocks, so each element sums its terms in ascending i.
  const int64_t num_blocks = (hidden + kColumnBlock - 1) / kColumnBlock;
  ParallelFor(args.num_threads, num_blocks, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t c0 = b * kColumnBlock;
      const int64_t c1 = std::min(hidden, c0 + kColumnBlock);
      for (int64_t t = 0; t < num_tokens; ++t) {
        std::fill(out + t * hidden + c0, out + t * hidden + c1, 0.0f);
      }
      for (int64_t i = 0; i < num_pairs; ++i) {
        const int64_t p = sorted_pairs[i];
        if (p < 0 || p >= num_weights || p / top_k >= num_tokens) continue;
        const float w = route_weights[p];
        float* out_row = out + (p / top_k) * hidden;
        const float* y_row = y + i * hidden;
        for (int64_t c = c0; c < c1; ++c)
          out_row[c] += w * y_row[c];
      }
    }
  });
}

void RefMoeExpertBatch(const KernelArgs& args) {
  const NumExpertsParams& params = Params<NumExpertsParams>(args);
  const int32_t* ids = args.in[0].as<const int32_t>();
  const int64_t num_pairs = args.in[0].numel();
  int32_t* batch_experts = args.out[0].as<int32_t>();
  int32_t* batch_pairs = args.out[1].as<int32_t>();
  const int64_t num_slots = NumRows(args.out[0]);
  const int64_t pairs_per_slot = RowSize(args.out[1]);
  const int64_t num_experts = params.num_experts;
  std::fill(batch_pairs, batch_pairs + args.out[1].numel(), -1);

  // Slot s gets the smallest routed expert above slot s-1's: no "used" bitmap
  // is needed, at O(slots * pairs), which is small in the decode layout.
  int64_t previous = -1;
  for (int64_t s = 0; s < num_slots; ++s) {
    int64_t next = num_experts;
    for (int64_t p = 0; p < num_pairs; ++p) {
      if (ids[p] > previous && ids[p] < next) next = ids[p];
    }
    batch_experts[s] = next < num_experts ? static_cast<int32_t>(next) : -1;
    previous = next;
  }
  const int64_t num_filled = std::min(num_slots, NumRows(args.out[1]));
  ParallelFor(args.num_threads, num_filled, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const int32_t expert = batch_experts[s];
      if (expert < 0) continue;
      int32_t* row = batch_pairs + s * pairs_per_slot;
      int64_t count = 0;
      for (int64_t p = 0; p < num_pairs && count < pairs_per_slot; ++p) {
        if (ids[p] == expert) row[count++] = static_cast<int32_t>(p);
      }
    }
  });
}

void RefExpertBatchedGateUpSilu(const KernelArgs& args) {
  const TopKParams& params = Params<TopKParams>(args);
  const float* x = args.in[0].as<const float>();
  const int32_t* batch_experts = args.in[1].as<const int32_t>();
  const int32_t* batch_pairs = args.in[2].as<const int32_t>();
  const TensorArg& gate = args.in[3];
  const TensorArg& up = args.in[4];
  float* h = args.out[0].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_pairs = NumRows(args.out[0]);
  const int64_t inter = RowSize(args.out[0]);
  const int64_t num_tokens = NumRows(args.in[0]);
  const int64_t hidden = RowSize(args.in[0]);
  const int64_t num_experts = gate.dim(0);
  const int64_t pairs_per_slot = RowSize(args.in[2]);
  MG_KERNEL_CONTRACT(top_k > 0 && args.in[1].numel() == NumRows(args.in[2]),
                     "expert_batched_gate_up_silu", "batch_experts [S] and batch_pairs [S, T]");
  CheckStackedWeight("expert_batched_gate_up_silu", gate, num_experts, inter, hidden);
  CheckStackedWeight("expert_batched_gate_up_silu", up, num_experts, inter, hidden);
  const int64_t num_slots = args.in[1].numel();
  std::fill(h, h + args.out[0].numel(), 0.0f);
  // Expert rows outer, the expert's tokens inner: each weight row is read once.
  ParallelFor(args.num_threads, num_slots * inter, [&](int64_t begin, int64_t end) {
    for (int64_t i_flat = begin; i_flat < end; ++i_flat) {
      const int64_t s = i_flat / inter, i = i_flat % inter;
      {
        const int64_t e = batch_experts[s];
        if (e < 0 || e >= num_experts) continue;
        for (int64_t c = 0; c < pairs_per_slot; ++c) {
          const int64_t p = batch_pairs[s * pairs_per_slot + c];
          if (p < 0 || p >= num_pairs || p / top_k >= num_tokens) continue;
          const float* x_row = x + (p / top_k) * hidden;
          const float g = ExpertMatrix(gate, e).MatmulDot(x_row, i, 0, hidden);
          const float u = ExpertMatrix(up, e).MatmulDot(x_row, i, 0, hidden);
          h[p * inter + i] = Silu(g) * u;
        }
      }
    }
  });
}

void RefExpertBatchedDown(const KernelArgs& args) {
  const float* h = args.in[0].as<const float>();
  const int32_t* batch_experts = args.in[1].as<const int32_t>();
  const int32_t* batch_pairs = args.in[2].as<const int32_t>();
  const TensorArg& down = args.in[3];
  float* y = args.out[0].as<float>();
  const int64_t num_pairs = std::min(NumRows(args.out[0]), NumRows(args.in[0]));
  const int64_t hidden = RowSize(args.out[0]);
  const int64_t inter = RowSize(args.in[0]);
  const int64_t num_experts = down.dim(0);
  const int64_t pairs_per_slot = RowSize(args.in[2]);
  MG_KERNEL_CONTRACT(args.in[1].numel() == NumRows(args.in[2]), "expert_batched_down",
                     "batch_experts [S] and batch_pairs [S, T]");
  CheckStackedWeight("expert_batched_down", down, num_experts, hidden, inter);
  const int64_t num_slots = args.in[1].numel();
  std::fill(y, y + args.out[0].numel(), 0.0f);
  ParallelFor(args.num_threads, num_slots * hidden, [&](int64_t begin, int64_t end) {
    for (int64_t i_flat = begin; i_flat < end; ++i_flat) {
      const int64_t s = i_flat / hidden, c = i_flat % hidden;
      {
        const int64_t e = batch_experts[s];
        if (e < 0 || e >= num_experts) continue;
        for (int64_t j = 0; j < pairs_per_slot; ++j) {
          const int64_t p = batch_pairs[s * pairs_per_slot + j];
          if (p < 0 || p >= num_pairs) continue;
          y[p * hidden + c] = ExpertMatrix(down, e).MatmulDot(h + p * inter, c, 0, inter);
        }
      }
    }
  });
}

void RefMoeCombine(const KernelArgs& args) {
  const float* y = args.in[0].as<const float>();
  const float* route_weights = args.in[1].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  const int64_t top_k = RowSize(args.in[1]);
  const int64_t num_y_rows = RowSize(args.in[0]) == hidden ? NumRows(args.in[0]) : 0;
  const int64_t num_real = ref_detail::NumRealRows(args, std::min(num_rows, NumRows(args.in[1])));
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* out_row = out + t * hidden;
      std::fill(out_row, out_row + hidden, 0.0f);
      if (t >= num_real) continue;
      for (int64_t j = 0; j < top_k; ++j) {
        const int64_t p = t * top_k + j;
        if (p >= num_y_rows) continue;
        const float w = route_weights[p];
        for (int64_t c = 0; c < hidden; ++c)
          out_row[c] += w * y[p * hidden + c];
      }
    }
  });
}

void RefGroupedMatmulKn(const KernelArgs& args) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& offsets_arg = args.in[1];
  const int32_t* offsets = offsets_arg.as<const int32_t>();
  const TensorArg& w = args.in[2];
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t k = RowSize(args.in[0]);
  const int64_t num_experts = w.dim(0);
  MG_KERNEL_CONTRACT(offsets_arg.numel() >= num_experts + 1 && NumRows(args.in[0]) == num_rows,
                     "grouped_matmul_kn", "offsets must be [E + 1] and x [P, K] for out [P, N]");
  CheckStackedKnWeight("grouped_matmul_kn", w, num_experts, k, n);
  const TensorArg* bias = ExpertBias(args, 3, num_experts, n, "grouped_matmul_kn");
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t e = ExpertOfRow(offsets, num_experts, num_rows, r);
      for (int64_t j = 0; j < n; ++j)
        out[r * n + j] = e < 0 ? 0.0f : DotKn(x + r * k, w, e, k, n, j, bias);
    }
  });
}

namespace {

// expert_batched_matmul(_kn): y[p] = x[p / top_k] times expert e's weight ([E, N, K], or
// [E, K, N] when kn), plus its bias, for every pair slot p of the decode layout.
void ExpertBatchedMatmul(const KernelArgs& args, bool kn, const char* kernel) {
  const TopKParams& params = Params<TopKParams>(args);
  const float* x = args.in[0].as<const float>();
  const int32_t* batch_experts = args.in[1].as<const int32_t>();
  const int32_t* batch_pairs = args.in[2].as<const int32_t>();
  const TensorArg& w = args.in[3];
  float* y = args.out[0].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_pairs = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t num_x_rows = NumRows(args.in[0]);
  const int64_t k = RowSize(args.in[0]);
  const int64_t num_experts = w.dim(0);
  const int64_t pairs_per_slot = RowSize(args.in[2]);
  MG_KERNEL_CONTRACT(top_k > 0 && args.in[1].numel() == NumRows(args.in[2]), kernel,
                     "batch_experts [S] and batch_pairs [S, T]");
  if (kn) {
    CheckStackedKnWeight(kernel, w, num_experts, k, n);
  } else {
    CheckStackedWeight(kernel, w, num_experts, n, k);
  }
  const TensorArg* bias = ExpertBias(args, 4, num_experts, n, kernel);
  const int64_t num_slots = args.in[1].numel();
  std::fill(y, y + args.out[0].numel(), 0.0f);
  ParallelFor(args.num_threads, num_slots, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const int64_t e = batch_experts[s];
      if (e < 0 || e >= num_experts) continue;
      for (int64_t c = 0; c < pairs_per_slot; ++c) {
        const int64_t p = batch_pairs[s * pairs_per_slot + c];
        if (p < 0 || p >= num_pairs || p / top_k >= num_x_rows) continue;
        const float* x_row = x + (p / top_k) * k;
        for (int64_t j = 0; j < n; ++j) {
          y[p * n + j] = kn ? DotKn(x_row, w, e, k, n, j, bias) : DotNk(x_row, w, e, k, n, j, bias);
        }
      }
    }
  });
}

}  // namespace

void RefExpertBatchedMatmulKn(const KernelArgs& args) {
  ExpertBatchedMatmul(args, /*kn=*/true, "expert_batched_matmul_kn");
}

void RefExpertBatchedMatmul(const KernelArgs& args) {
  ExpertBatchedMatmul(args, /*kn=*/false, "expert_batched_matmul");
}

void RefClampedSwiglu(const KernelArgs& args) {
  const ClampedSwigluParams& params = Params<ClampedSwigluParams>(args);
  const float* x = args.in[0].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t inter = RowSize(args.out[0]);
  MG_KERNEL_CONTRACT(RowSize(args.in[0]) == 2 * inter && NumRows(args.in[0]) == num_rows,
                     "clamped_swiglu", "x must be [R, 2I] for out [R, I]");
  const float alpha = static_cast<float>(params.alpha);
  const float limit = static_cast<float>(params.limit);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t i = 0; i < inter; ++i) {
        out[r * inter + i] = ref_detail::ClampedSwiglu(x[r * 2 * inter + 2 * i],
                                                       x[r * 2 * inter + 2 * i + 1], alpha, limit);
      }
    }
  });
}

}  // namespace moegraph
