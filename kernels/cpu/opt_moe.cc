// Optimised mixture-of-experts kernels: routing, the prefill grouped matmuls,
// the decode expert-batched matmuls and the weighted reductions.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/simd_gemm.h"
#include "kernels/cpu/simd_q8.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::NumRows;
using ref_detail::RowSize;
using simd::MatmulBlock;
using simd::WElem;
using simd::WType;

// Largest expert count OptTopkRoute keeps on the stack (more: reference).
constexpr int64_t kMaxRouteExperts = 4096;
constexpr int64_t kMaxRouteTopK = 1024;
// Output columns per work unit of the expert-batched kernels.
constexpr int64_t kBatchedUnitCols = 16;
// Activation rows per dot tile in the expert-batched kernels (gate/up tiles
// hold two weight rows per column, so they take fewer rows).
constexpr int kBatchedGroupPlain = 4;
constexpr int kBatchedGroupFused = 3;

int64_t NumRealRowsAt(const KernelArgs& args, int64_t num_rows, int64_t row_offset) {
  if (args.meta == nullptr) return num_rows;
  const int64_t real = static_cast<int64_t>(args.meta->num_tokens) - row_offset;
  return std::clamp<int64_t>(real, 0, num_rows);
}

bool StackedOk(const TensorArg& w, int64_t e, int64_t n, int64_t k) {
  return w.expert_data != nullptr && w.rank == 3 && w.shape[0] == e && w.shape[1] == n &&
         w.shape[2] == k && (!w.quant.quantized() || w.expert_scales != nullptr);
}

// The optional expert bias [E, N] (f32/bf16/f16) at in[index]: null when absent; false when
// present but not one (the caller runs the reference, which names the fault).
bool ExpertBiasOf(const KernelArgs& args, int index, int64_t e, int64_t n, const TensorArg** out) {
  *out = nullptr;
  if (args.num_in <= index) return true;
  const TensorArg& b = args.in[index];
  if (!ref_detail::IsWeightDType(b.dtype) || b.data == nullptr || b.numel() != e * n) return false;
  *out = &b;
  return true;
}

// The epilogue of a matmul with a bias: out_rows[m][c] += bias[e, c] for c in [c0, c1).
void AddExpertBias(float* const* out_rows, int64_t num_rows, const TensorArg& bias, int64_t e,
                   int64_t n, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    const float b = ref_detail::LoadWeight(bias.data, bias.dtype, e * n + c);
    for (int64_t m = 0; m < num_rows; ++m)
      out_rows[m][c] += b;
  }
}

template <typename Fn>
void ForWType(WType wtype, Fn&& fn) {
  switch (wtype) {
    case WType::kF32:
      fn(std::integral_constant<WType, WType::kF32>{});
      break;
    case WType::kBF16:
      fn(std::integral_constant<WType, WType::kBF16>{});
      break;
    case WType::kF16:
      fn(std::integral_constant<WType, WType::kF16>{});
      break;
    case WType::kFp8:
      fn(std::integral_constant<WType, WType::kFp8>{});
      break;
    case WType::kMxfp4:
      fn(std::integral_constant<WType, WType::kMxfp4>{});
      break;
    case WType::kInt8:
      fn(std::integral_constant<WType, WType::kInt8>{});
      break;
    case WType::kInt4:
      fn(std::integral_constant<WType, WType::kInt4>{});
      break;
  }
}

// ---- topk_route -------------------------------------------------------------------

// The reference's RouteRow with each score and choice score computed once:
// the same max, the same in-order sum, the same divisions and group rule, so
// the ids and weights are bit-identical; selection keeps the top_k sorted by
// (choice desc, id asc).
void RouteRowOnce(const float* logits, const float* bias, int64_t num_experts,
                  const TopkRouteParams& p, int32_t* ids, float* weights) {
  float scores[kMaxRouteExperts];
  float choices[kMaxRouteExperts];
  if (p.scoring == static_cast<int64_t>(RouteScoring::kSigmoid)) {
    for (int64_t e = 0; e < num_experts; ++e)
      scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
  } else {
    float max_logit = -std::numeric_limits<float>::infinity();
    for (int64_t e = 0; e < num_experts; ++e)
      max_logit = std::max(max_logit, logits[e]);
    float sum = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) {
      scores[e] = std::exp(logits[e] - max_logit);
      sum += scores[e];
    }
    for (int64_t e = 0; e < num_experts; ++e)
      scores[e] /= sum;
  }
  for (int64_t e = 0; e < num_experts; ++e)
    choices[e] = bias ? scores[e] + bias[e] : scores[e];

  const int64_t group_size = num_experts / p.num_groups;
  bool kept[kMaxRouteGroups];
  ref_detail::KeptRouteGroups(
      p, num_experts, [&](int64_t e) { return choices[e]; }, kept);

  const int64_t top_k = p.top_k;
  float keys[kMaxRouteTopK];  // the chosen experts' choice scores, descending
  int64_t count = 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    if (!kept[e / group_size]) continue;
    const float key = choices[e];
    if (count == top_k && !(key > keys[count - 1])) continue;
    int64_t pos = count < top_k ? count++ : top_k - 1;
    for (; pos > 0 && key > keys[pos - 1]; --pos) {
      keys[pos] = keys[pos - 1];
      ids[pos] = ids[pos - 1];
    }
    keys[pos] = key;
    ids[pos] = static_cast<int32_t>(e);
  }
  for (int64_t j = 0; j < top_k; ++j)
    weights[j] = j < count ? scores[ids[j]] : 0.0f;
  for (int64_t j = count; j < top_k; ++j)
    ids[j] = -1;
  ref_detail::FinishRouteWeights(p, weights);
}

// ---- grouped_matmul(_silu_mul) ------------------------------------------------------

struct GroupedProblem {
  MatmulBlock base;  // x = xp, out, k, n, out_stride; wg/wu per expert below
  const int32_t* offsets = nullptr;
  int64_t num_experts = 0;
  const void* const* wg = nullptr;
  const void* const* wu = nullptr;
  const void* const* sg = nullptr;  // kFp8: per-expert scales of wg / wu
  const void* const* su = nullptr;
  const TensorArg* bias = nullptr;  // grouped_matmul's optional [E, N]
  int64_t num_rows = 0;             // out rows
  int64_t num_valid_rows = 0;       // rows an expert range may cover
};

// The first expert at or after `e` whose range the reference accepts after
// rows [0, covered) (its ExpertOfRow rule), or num_experts.
int64_t NextAcceptedExpert(const GroupedProblem& p, int64_t e, int64_t covered) {
  for (; e < p.num_experts; ++e) {
    const int64_t begin = p.offsets[e], end = p.offsets[e + 1];
    if (begin >= covered && end >= begin && end <= p.num_valid_rows) return e;
  }
  return p.num_experts;
}

// The first accepted expert at or after `e` that has rows (its weights are
// prefetched while the one before computes), or num_experts.
int64_t NextExpertWithRows(const GroupedProblem& p, int64_t e, int64_t covered) {
  for (e = NextAcceptedExpert(p, e, covered); e < p.num_experts;
       e = NextAcceptedExpert(p, e + 1, covered)) {
    if (p.offsets[e + 1] > p.offsets[e]) return e;
    covered = p.offsets[e + 1];
  }
  return p.num_experts;
}

// Expert e's rows as a matmul block.
MatmulBlock ExpertBlock(const GroupedProblem& p, int64_t e) {
  MatmulBlock b = p.base;
  const int64_t begin = p.offsets[e];
  b.x = p.base.x + begin * p.base.k;
  b.out = p.base.out + begin * p.base.out_stride;
  b.num_rows = p.offsets[e + 1] - begin;
  b.q8_row0 = begin;
  b.wg = p.wg[e];
  b.wu = p.wu ? p.wu[e] : nullptr;
  if (p.sg) b.scales.SetMatrices(p.sg[e], p.su ? p.su[e] : nullptr);
  return b;
}

// Columns of panels [q0, q1) for every row: the rows of each accepted expert
// range by that expert, the others zeros.
template <WType W>
void GroupedWorker(const GroupedProblem& p, int t, int num_threads) {
  const MatmulBlock& base = p.base;
  const int64_t panel_cols = simd::PanelCols(base);
  int64_t q0, q1, c0, c1;
  simd::SplitRange((base.n + panel_cols - 1) / panel_cols, t, num_threads, &q0, &q1);
  simd::PanelColumns(base, q0, q1, &c0, &c1);
  auto zero_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      std::fill(base.out + r * base.n + c0, base.out + r * base.n + c1, 0.0f);
  };
  int64_t covered = 0;
  int64_t e = NextAcceptedExpert(p, 0, covered);
  while (e < p.num_experts) {
    const int64_t begin = p.offsets[e], end = p.offsets[e + 1];
    zero_rows(covered, begin);
    covered = end;
    const int64_t prefetch = NextExpertWithRows(p, e + 1, covered);
    const MatmulBlock block = ExpertBlock(p, e);
    const MatmulBlock prefetch_block = prefetch < p.num_experts ? ExpertBlock(p, prefetch) : block;
    simd::MatmulPanels<W>(block, q0, q1, prefetch < p.num_experts ? &prefetch_block : nullptr);
    if (p.bias) {
      for (int64_t r = 0; r < block.num_rows; ++r) {
        float* row = block.out + r * base.out_stride;
        AddExpertBias(&row, 1, *p.bias, e, base.n, c0, c1);
      }
    }
    e = NextAcceptedExpert(p, e + 1, covered);
  }
  zero_rows(covered, p.num_rows);
}

// The accepted experts with rows, in order (NextExpertWithRows from the start), with the
// rows no accepted expert covers zeroed in every column.
std::vector<int64_t> ExpertsWithRows(const GroupedProblem& p) {
  std::vector<int64_t> experts;
  const MatmulBlock& base = p.base;
  auto zero_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      std::fill(base.out + r * base.out_stride, base.out + r * base.out_stride + base.n, 0.0f);
  };
  int64_t covered = 0;
  for (int64_t e = NextAcceptedExpert(p, 0, covered); e < p.num_experts;
       e = NextAcceptedExpert(p, e + 1, covered)) {
    zero_rows(covered, p.offsets[e]);
    covered = p.offsets[e + 1];
    if (p.offsets[e + 1] > p.offsets[e]) experts.push_back(e);
  }
  zero_rows(covered, p.num_rows);
  return experts;
}

// Whole experts of share t of n_shares, split by their rows: the AMX GEMM transposes an
// expert's rows into tiles once for all its columns, where splitting every expert's columns
// (GroupedWorker) would transpose them once per share.
template <WType W>
void GroupedExpertWorker(const GroupedProblem& p, const std::vector<int64_t>& experts, int t,
                         int num_shares) {
  const int64_t total = p.offsets[experts.back() + 1] - p.offsets[experts.front()];
  int64_t r0, r1;
  simd::SplitRange(total, t, num_shares, &r0, &r1);
  const int64_t first_row = p.offsets[experts.front()];
  for (int64_t e : experts) {
    // An expert belongs to the share its first row falls in.
    const int64_t begin = p.offsets[e] - first_row;
    if (begin < r0 || begin >= r1) continue;
    const MatmulBlock block = ExpertBlock(p, e);
    const int64_t panel_cols = simd::PanelCols(block);
    simd::MatmulPanels<W>(block, 0, (block.n + panel_cols - 1) / panel_cols);
    if (p.bias) {
      for (int64_t r = 0; r < block.num_rows; ++r) {
        float* row = block.out + r * p.base.out_stride;
        AddExpertBias(&row, 1, *p.bias, e, block.n, 0, block.n);
      }
    }
  }
}

bool RunGrouped(const KernelArgs& args, int num_weights) {
  const TensorArg& offsets = args.in[1];
  const TensorArg& wg = args.in[2];
  GroupedProblem p;
  MatmulBlock& b = p.base;
  b.n = b.out_stride = RowSize(args.out[0]);
  b.k = RowSize(args.in[0]);
  p.num_experts = wg.dim(0);
  WType wtype;
  if (!simd::ToMatmulWType(wg, &wtype) || offsets.numel() < p.num_experts + 1 ||
      !StackedOk(wg, p.num_experts, b.n, b.k)) {
    return false;
  }
  b.scales = simd::ScalesOf(wg, nullptr, nullptr);  // per expert in ExpertBlock
  p.sg = wg.expert_scales;
  if (num_weights == 2) {
    const TensorArg& wu = args.in[3];
    if (wu.dtype != wg.dtype || wu.quant != wg.quant || !StackedOk(wu, p.num_experts, b.n, b.k)) {
      return false;
    }
    p.wu = wu.expert_data;
    p.su = wu.expert_scales;
    b.wu = wu.expert_data;  // marks the block fused (panel width); replaced per expert
  } else if (!ExpertBiasOf(args, 3, p.num_experts, b.n, &p.bias)) {
    return false;
  }
  b.x = args.in[0].as<const float>();
  b.out = args.out[0].as<float>();
  p.offsets = offsets.as<const int32_t>();
  p.wg = wg.expert_data;
  p.num_rows = NumRows(args.out[0]);
  p.num_valid_rows = std::min(p.num_rows, NumRows(args.in[0]));
  // Rounded once for every expert.
  b.q8 = simd::RoundedInputs(wg.quant, wtype, b.x, p.num_valid_rows, b.k, args.num_threads);
  if (wtype == WType::kBF16 && SelectedCpuIsa() == CpuIsa::kAmx) {
    const std::vector<int64_t> experts = ExpertsWithRows(p);
    if (experts.empty()) return true;
    ParallelShares(args.num_threads,
                   [&](int t, int nt) { GroupedExpertWorker<WType::kBF16>(p, experts, t, nt); });
    return true;
  }
  ParallelShares(args.num_threads, [&](int t, int nt) {
    ForWType(wtype, [&](auto w) { GroupedWorker<decltype(w)::value>(p, t, nt); });
  });
  return true;
}

// ---- expert_batched_gate_up_silu / expert_batched_down --------------------------------

// Per slot s with expert e: out[p] = w_e x[row(p)] for each valid pair p of
// the slot, where row(p) = p / top_k (gate/up: x is the tokens) or p (down:
// x is h, one row per pair).
struct BatchedProblem {
  const float* x = nullptr;  // [num_x_rows, k]
  int64_t k = 0, num_x_rows = 0;
  const int32_t* batch_experts = nullptr;  // [num_slots]
  const int32_t* batch_pairs = nullptr;    // [num_slots, pairs_per_slot]
  int64_t num_slots = 0, pairs_per_slot = 0;
  const void* const* wg = nullptr;
  const void* const* wu = nullptr;  // gate/up only
  const void* const* sg = nullptr;  // kFp8: per-expert scales of wg / wu
  const void* const* su = nullptr;
  simd::WeightScales scales;         // quantized: the blocks (g / u set per expert)
  const simd::Q8Rows* q8 = nullptr;  // RoundsInputToInt8 weights: x's rows rounded
  const TensorArg* bias = nullptr;   // expert_batched_matmul's optional [E, N]
  int64_t num_experts = 0;
  float* out = nullptr;  // [num_pairs, n]
  int64_t n = 0, num_pairs = 0;
  int64_t top_k = 1;  // row(p) = p / top_k
};

bool PairValid(const BatchedProblem& p, int64_t pair) {
  return pair >= 0 && pair < p.num_pairs && pair / p.top_k < p.num_x_rows;
}

int64_t SlotExpert(const BatchedProblem& p, int64_t s) {
  const int64_t e = p.batch_experts[s];
  return e >= 0 && e < p.num_experts ? e : -1;
}

int64_t SlotValidPairs(const BatchedProblem& p, int64_t s) {
  if (SlotExpert(p, s) < 0) return 0;
  int64_t count = 0;
  for (int64_t c = 0; c < p.pairs_per_slot; ++c)
    count += PairValid(p, p.batch_pairs[s * p.pairs_per_slot + c]);
  return count;
}

// Columns [c0, c1) of slot s: its valid pairs in groups of up to `group` rows,
// each group a dot-tile pass over the expert's rows.
template <WType W>
void BatchedUnit(const BatchedProblem& p, int64_t s, int64_t c0, int64_t c1) {
  const int64_t e = SlotExpert(p, s);
  const int group = p.wu ? kBatchedGroupFused : kBatchedGroupPlain;
  const int32_t* pairs = p.batch_pairs + s * p.pairs_per_slot;
  const auto* wg = static_cast<const WElem<W>*>(p.wg[e]);
  const auto* wu = p.wu ? static_cast<const WElem<W>*>(p.wu[e]) : nullptr;
  simd::WeightScales scales = p.scales;
  if (p.sg) scales.SetMatrices(p.sg[e], p.su ? p.su[e] : nullptr);
  const float* x_rows[simd::kMaxDotActRows];
  simd::Q8Row q8_rows[simd::kMaxDotActRows];
  float* out_rows[simd::kMaxDotActRows];
  int64_t c = 0;
  while (c < p.pairs_per_slot) {
    int mr = 0;
    for (; c < p.pairs_per_slot && mr < group; ++c) {
      const int64_t pair = pairs[c];
      if (!PairValid(p, pair)) continue;
      x_rows[mr] = p.x + (pair / p.top_k) * p.k;
      if (p.q8) q8_rows[mr] = p.q8->Row(pair / p.top_k);
      out_rows[mr] = p.out + pair * p.n;
      ++mr;
    }
    if (mr == 0) break;
    if (p.q8) {
      simd::GemvColumnsQ8(q8_rows, out_rows, mr, W, wg, wu, p.k, p.n, c0, c1, scales);
    } else {
      simd::GemvColumns<W>(x_rows, out_rows, mr, wg, wu, p.k, p.n, c0, c1, scales);
    }
    if (p.bias) AddExpertBias(out_rows, mr, *p.bias, e, p.n, c0, c1);
  }
}

// Thread t's share of the (slot, column unit) list, split by estimated cost:
// each unit streams its weight rows once and computes once per valid pair.
template <WType W>
void BatchedWorker(const BatchedProblem& p, int t, int num_threads) {
  const int64_t units_per_slot = (p.n + kBatchedUnitCols - 1) / kBatchedUnitCols;
  auto unit_cost = [](int64_t valid_pairs) { return valid_pairs == 0 ? 0 : valid_pairs + 2; };
  int64_t total = 0;
  for (int64_t s = 0; s < p.num_slots; ++s)
    total += units_per_slot * unit_cost(SlotValidPairs(p, s));
  int64_t lo, hi;
  simd::SplitRange(total, t, num_threads, &lo, &hi);
  int64_t pos = 0;
  for (int64_t s = 0; s < p.num_slots && pos < hi; ++s) {
    const int64_t cost = unit_cost(SlotValidPairs(p, s));
    if (cost == 0) continue;
    for (int64_t u = 0; u < units_per_slot; ++u, pos += cost) {
      if (pos < lo || pos >= hi) continue;
      const int64_t c0 = u * kBatchedUnitCols;
      BatchedUnit<W>(p, s, c0, std::min(p.n, c0 + kBatchedUnitCols));
    }
  }
}

void RunBatched(BatchedProblem& p, WType wtype, const WeightQuant& quant, int num_threads) {
  p.q8 = simd::RoundedInputs(quant, wtype, p.x, p.num_x_rows, p.k, num_threads);
  const int64_t total = p.num_pairs * p.n;
  // Rows no slot writes are zeros: clear everything, then compute.
  ParallelFor(num_threads, total,
              [&](int64_t begin, int64_t end) { std::fill(p.out + begin, p.out + end, 0.0f); });
  ParallelShares(num_threads, [&](int t, int nt) {
    ForWType(wtype, [&](auto w) { BatchedWorker<decltype(w)::value>(p, t, nt); });
  });
}

// ---- moe_combine / moe_unpermute_reduce ---------------------------------------------

// out[0, n) += w * y[0, n).
MG_AVX2 void AxpyRow(float w, const float* y, float* out, int64_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    _mm256_storeu_ps(out + c,
                     _mm256_fmadd_ps(wv, _mm256_loadu_ps(y + c), _mm256_loadu_ps(out + c)));
  }
  for (; c < n; ++c)
    out[c] += w * y[c];
}

// Columns [c0, c1) of every token row: zeros, then each valid pair's row
// added in ascending i (the reference's order per element).
void UnpermuteColumns(const float* y, const int32_t* sorted_pairs, const float* route_weights,
                      float* out, int64_t num_pairs, int64_t num_weights, int64_t num_tokens,
                      int64_t top_k, int64_t hidden, int64_t c0, int64_t c1) {
  for (int64_t t = 0; t < num_tokens; ++t)
    std::fill(out + t * hidden + c0, out + t * hidden + c1, 0.0f);
  for (int64_t i = 0; i < num_pairs; ++i) {
    const int64_t p = sorted_pairs[i];
    if (p < 0 || p >= num_weights || p / top_k >= num_tokens) continue;
    AxpyRow(route_weights[p], y + i * hidden + c0, out + (p / top_k) * hidden + c0, c1 - c0);
  }
}

}  // namespace

void OptTopkRoute(const KernelArgs& args) {
  const TopkRouteParams& params = Params<TopkRouteParams>(args);
  const float* logits = args.in[0].as<const float>();
  int32_t* ids = args.out[0].as<int32_t>();
  float* weights = args.out[1].as<float>();
  const int64_t top_k = params.top_k;
  const int64_t num_rows = std::min(NumRows(args.out[0]), NumRows(args.out[1]));
  const int64_t num_experts = RowSize(args.in[0]);
  const bool has_bias = args.num_in > 1;
  const bool ok =
      top_k > 0 && top_k <= kMaxRouteTopK && num_experts <= kMaxRouteExperts &&
      RowSize(args.out[0]) == top_k && RowSize(args.out[1]) == top_k && params.num_groups >= 1 &&
      params.num_groups <= kMaxRouteGroups && num_experts % params.num_groups == 0 &&
      params.top_k_groups >= 0 && params.top_k_groups <= params.num_groups &&
      (!has_bias || (args.in[1].dtype == DType::kF32 && args.in[1].numel() == num_experts));
  if (!ok) return RefTopkRoute(args);
  const float* bias = has_bias ? args.in[1].as<const float>() : nullptr;
  const int64_t num_real =
      NumRealRowsAt(args, std::min(num_rows, NumRows(args.in[0])), params.row_offset);
  // NaN logits or biases make the reference's selection order-dependent: let it decide.
  for (int64_t i = 0; i < num_real * num_experts; ++i) {
    if (std::isnan(logits[i])) return RefTopkRoute(args);
  }
  for (int64_t e = 0; bias && e < num_experts; ++e) {
    if (std::isnan(bias[e])) return RefTopkRoute(args);
  }
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int32_t* ids_row = ids + t * top_k;
      float* weights_row = weights + t * top_k;
      if (t < num_real) {
        RouteRowOnce(logits + t * num_experts, bias, num_experts, params, ids_row, weights_row);
      } else {
        std::fill(ids_row, ids_row + top_k, -1);
        std::fill(weights_row, weights_row + top_k, 0.0f);
      }
    }
  });
}

void OptGroupedMatmul(const KernelArgs& args) {
  if (!RunGrouped(args, 1)) RefGroupedMatmul(args);
}

void OptGroupedMatmulSiluMul(const KernelArgs& args) {
  if (!RunGrouped(args, 2)) RefGroupedMatmulSiluMul(args);
}

namespace {

// The decode layout (in[1] batch_experts, in[2] batch_pairs), out[0] and the (first) weight
// `w`'s expert pointers and scales of an expert-batched op.
void BindBatch(const KernelArgs& args, const TensorArg& w, BatchedProblem& p) {
  p.scales = simd::ScalesOf(w, nullptr, nullptr);
  p.sg = w.expert_scales;
  p.wg = w.expert_data;
  p.batch_experts = args.in[1].as<const int32_t>();
  p.batch_pairs = args.in[2].as<const int32_t>();
  p.pairs_per_slot = RowSize(args.in[2]);
  p.num_slots = std::min(args.in[1].numel(), NumRows(args.in[2]));
  p.out = args.out[0].as<float>();
}

}  // namespace

void OptExpertBatchedGateUpSilu(const KernelArgs& args) {
  const TopKParams& params = Params<TopKParams>(args);
  const TensorArg& gate = args.in[3];
  const TensorArg& up = args.in[4];
  BatchedProblem p;
  p.x = args.in[0].as<const float>();
  p.num_x_rows = NumRows(args.in[0]);
  p.k = RowSize(args.in[0]);
  p.n = RowSize(args.out[0]);
  p.num_pairs = NumRows(args.out[0]);
  p.top_k = params.top_k;
  p.num_experts = gate.dim(0);
  WType wtype;
  if (p.top_k <= 0 || !simd::ToMatmulWType(gate, &wtype) || up.dtype != gate.dtype ||
      up.quant != gate.quant || !StackedOk(gate, p.num_experts, p.n, p.k) ||
      !StackedOk(up, p.num_experts, p.n, p.k)) {
    return RefExpertBatchedGateUpSilu(args);
  }
  BindBatch(args, gate, p);
  p.su = up.expert_scales;
  p.wu = up.expert_data;
  RunBatched(p, wtype, gate.quant, args.num_threads);
}

void OptExpertBatchedDown(const KernelArgs& args) {
  const TensorArg& down = args.in[3];
  BatchedProblem p;
  p.x = args.in[0].as<const float>();
  p.k = RowSize(args.in[0]);
  p.n = RowSize(args.out[0]);
  p.num_pairs = std::min(NumRows(args.out[0]), NumRows(args.in[0]));
  p.num_x_rows = p.num_pairs;
  p.num_experts = down.dim(0);
  WType wtype;
  if (!simd::ToMatmulWType(down, &wtype) || !StackedOk(down, p.num_experts, p.n, p.k)) {
    return RefExpertBatchedDown(args);
  }
  BindBatch(args, down, p);
  RunBatched(p, wtype, down.quant, args.num_threads);
  // Rows past min(out rows, h rows) are zeros too (the reference clears all of out).
  const int64_t out_rows = NumRows(args.out[0]);
  std::fill(p.out + p.num_pairs * p.n, p.out + out_rows * p.n, 0.0f);
}

void OptExpertBatchedMatmul(const KernelArgs& args) {
  const TopKParams& params = Params<TopKParams>(args);
  const TensorArg& w = args.in[3];
  BatchedProblem p;
  p.x = args.in[0].as<const float>();
  p.num_x_rows = NumRows(args.in[0]);
  p.k = RowSize(args.in[0]);
  p.n = RowSize(args.out[0]);
  p.num_pairs = NumRows(args.out[0]);
  p.top_k = params.top_k;
  p.num_experts = w.dim(0);
  WType wtype;
  if (p.top_k <= 0 || !simd::ToMatmulWType(w, &wtype) || !StackedOk(w, p.num_experts, p.n, p.k) ||
      !ExpertBiasOf(args, 4, p.num_experts, p.n, &p.bias)) {
    return RefExpertBatchedMatmul(args);
  }
  BindBatch(args, w, p);
  RunBatched(p, wtype, w.quant, args.num_threads);
}

void OptMoeCombine(const KernelArgs& args) {
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
        if (p < num_y_rows) AxpyRow(route_weights[p], y + p * hidden, out_row, hidden);
      }
    }
  });
}

void OptMoeUnpermuteReduce(const KernelArgs& args) {
  const TopKParams& params = Params<TopKParams>(args);
  const int64_t top_k = params.top_k;
  const int64_t num_tokens = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  if (top_k <= 0 || RowSize(args.in[0]) != hidden) return RefMoeUnpermuteReduce(args);
  const float* y = args.in[0].as<const float>();
  const int32_t* sorted_pairs = args.in[1].as<const int32_t>();
  const float* route_weights = args.in[2].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t num_pairs = std::min(NumRows(args.in[0]), args.in[1].numel());
  const int64_t num_weights = args.in[2].numel();
  // Threads own contiguous column ranges (multiples of 8), so each walks the
  // pairs once and reads long runs of each y row.
  const int64_t num_vectors = (hidden + 7) / 8;
  ParallelFor(args.num_threads, num_vectors, [&](int64_t v0, int64_t v1) {
    const int64_t c0 = std::min(hidden, v0 * 8), c1 = std::min(hidden, v1 * 8);
    if (c0 < c1) {
      UnpermuteColumns(y, sorted_pairs, route_weights, out, num_pairs, num_weights, num_tokens,
                       top_k, hidden, c0, c1);
    }
  });
}

}  // namespace moegraph
