// The moe-lower pass.
#include "passes/moe_lower.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <unordered_map>

#include "ir/op_registry.h"
#include "passes/rewrite.h"
#include "passes/specialize.h"

namespace moegraph {
namespace {

// This rank's slice of stacked expert weights (one weight op per original, shared by every
// chunk of every layer that reads it).
class LocalExperts {
 public:
  LocalExperts(Graph& graph, std::vector<Op>& ops) : graph_(graph), ops_(ops) {
    for (const Op& op : graph.ops()) {
      if (op.def->Has(kWeight)) defs_.emplace(op.results[0], &op);
    }
  }
  StatusOr<ValueId> Of(ValueId weight, ExpertRange range) {
    if (const auto it = local_.find(weight); it != local_.end()) return it->second;
    const auto def = defs_.find(weight);
    if (def == defs_.end() || def->second->HasAttr("first_expert")) {
      return InvalidArgument("expert parallelism needs %" + graph_.value(weight).name +
                             " as one checkpoint weight of every expert");
    }
    // A stacked weight takes the rank's experts; a plain one ([E, N] expert biases) its rows.
    Op op = *def->second;
    if (op.HasAttr("experts")) op.attrs["experts"] = range.count;
    op.attrs["first_expert"] = range.first;
    Type type = graph_.type(weight);
    type.dims[0] = Dim::Static(range.count);
    const ValueId local = graph_.NewValue(graph_.value(weight).name + ".local", type);
    op.results = {local};
    ops_.push_back(std::move(op));
    local_.emplace(weight, local);
    return local;
  }

 private:
  Graph& graph_;
  std::vector<Op>& ops_;
  std::unordered_map<ValueId, const Op*> defs_;
  std::unordered_map<ValueId, ValueId> local_;
};

// This rank's experts over the pairs it received: `xp` [C, H] in expert order with `offsets`
// per local expert, to the experts' rows [C, H] in the same order.
using LocalExpertsFn = std::function<StatusOr<ValueId>(ValueId xp, ValueId offsets, ExpertRange)>;

// The experts of an expert-parallel rank: dispatch the routed pairs, run this rank's experts
// over the pairs it received, combine.
StatusOr<ValueId> LowerExpertParallelMoe(const Graph& graph, const Op& op, ValueId ids,
                                         ValueId weights, const ExpertParallelLowering& ep,
                                         OpEmitter& emit, const std::string& hint,
                                         const LocalExpertsFn& experts) {
  const ValueId meta = op.operands[0], x = op.operands[1];
  const int64_t num_experts = graph.type(op.operands[2]).dims[0].size;
  const int64_t top_k = graph.type(ids).dims[1].size;
  if (ep.size > num_experts) {
    return InvalidArgument(
        std::to_string(ep.size) + " expert-parallel ranks for " + std::to_string(num_experts) +
        " experts: every rank must own one (at most " + std::to_string(num_experts) + " ranks)");
  }
  const ExpertRange range = ExpertRangeOf(num_experts, ep.size, ep.rank);
  EpParams params{.num_experts = num_experts,
                  .ep_size = ep.size,
                  .ep_rank = ep.rank,
                  .capacity = int64_t{ep.size} * ep.max_chunk_rows * std::min(top_k, range.count)};
  const AttrMap ep_attrs = ParamsToAttrs(params);
  MG_ASSIGN_OR_RETURN(std::vector<ValueId> sent,
                      emit.Emit("ep_dispatch", {meta, x, ids}, ep_attrs, hint + ".dispatch"));
  const ValueId rx = sent[0], rids = sent[1], layout = sent[2];
  MG_ASSIGN_OR_RETURN(
      std::vector<ValueId> align,
      emit.Emit("moe_align", {rids}, ParamsToAttrs(NumExpertsParams{.num_experts = range.count}),
                hint + ".align"));
  const ValueId sorted = align[0], offsets = align[1];
  MG_ASSIGN_OR_RETURN(ValueId xp,
                      emit.Emit1("moe_permute", {rx, sorted}, ParamsToAttrs(TopKParams{.top_k = 1}),
                                 hint + ".permuted"));
  MG_ASSIGN_OR_RETURN(ValueId y, experts(xp, offsets, range));
  return emit.Emit1("ep_combine", {meta, y, sorted, offsets, weights, layout}, ep_attrs,
                    hint + ".out");
}

// GPT-OSS's experts (activation 1): %meta, x, router, gate_up [E, H, 2I], down [E, I, H]
// [, router bias, gate_up bias, down bias]. The [in, out] weights are read in place by the
// *_kn GEMMs; clamped_swiglu takes the interleaved (gate, up) columns as they come. With
// out_major (gate_up [E, 2I, H], down [E, H, I]: the MXFP4 checkpoints' layout) the [out, in]
// GEMMs grouped_matmul and expert_batched_matmul take the same operands.
StatusOr<ValueId> LowerClampedSwigluMoe(const Graph& graph, const Op& op, const MoeParams& p,
                                        MoePhase phase, const ExpertParallelLowering& ep,
                                        LocalExperts& local, OpEmitter& emit,
                                        const std::string& hint) {
  const ValueId meta = op.operands[0], x = op.operands[1], router = op.operands[2];
  const ValueId gate_up = op.operands[3], down = op.operands[4];
  const bool has_bias = op.operands.size() == 8;
  const ValueId router_bias = has_bias ? op.operands[5] : kNoValue;
  const ValueId gate_up_bias = has_bias ? op.operands[6] : kNoValue;
  const ValueId down_bias = has_bias ? op.operands[7] : kNoValue;
  const TopkRouteParams& route_params = p;
  const int64_t top_k = p.top_k;
  const char* grouped = p.out_major != 0 ? "grouped_matmul" : "grouped_matmul_kn";
  const char* batched = p.out_major != 0 ? "expert_batched_matmul" : "expert_batched_matmul_kn";
  const int64_t num_experts = graph.type(router).dims[0].size;
  const AttrMap experts = ParamsToAttrs(NumExpertsParams{.num_experts = num_experts});
  const AttrMap act =
      ParamsToAttrs(ClampedSwigluParams{.alpha = p.swiglu_alpha, .limit = p.swiglu_limit});
  // The operands of a *_kn GEMM: its inputs, then the bias when the op has biases.
  auto with_bias = [&](std::vector<ValueId> in, ValueId bias) {
    if (has_bias) in.push_back(bias);
    return in;
  };
  MG_ASSIGN_OR_RETURN(ValueId logits, emit.Emit1("linear", {x, router}, {}, hint + ".router"));
  if (has_bias) {
    MG_ASSIGN_OR_RETURN(logits,
                        emit.Emit1("bias_add", {logits, router_bias}, {}, hint + ".router_bias"));
  }
  AttrMap route_attrs = ParamsToAttrs(route_params);
  MG_ASSIGN_OR_RETURN(std::vector<ValueId> route,
                      emit.Emit("topk_route", {meta, logits}, route_attrs, hint + ".route"));
  const ValueId ids = route[0], weights = route[1];
  if (ep.size > 1) {
    // This rank's experts and their bias rows; the router and its bias stay whole.
    return LowerExpertParallelMoe(
        graph, op, ids, weights, ep, emit, hint,
        [&](ValueId xp, ValueId offsets, ExpertRange range) -> StatusOr<ValueId> {
          MG_ASSIGN_OR_RETURN(ValueId wgu, local.Of(gate_up, range));
          MG_ASSIGN_OR_RETURN(ValueId wd, local.Of(down, range));
          ValueId bgu = kNoValue, bd = kNoValue;
          if (has_bias) {
            MG_ASSIGN_OR_RETURN(bgu, local.Of(gate_up_bias, range));
            MG_ASSIGN_OR_RETURN(bd, local.Of(down_bias, range));
          }
          MG_ASSIGN_OR_RETURN(ValueId gu, emit.Emit1(grouped, with_bias({xp, offsets, wgu}, bgu),
                                                     {}, hint + ".gate_up"));
          MG_ASSIGN_OR_RETURN(ValueId h, emit.Emit1("clamped_swiglu", {gu}, act, hint + ".act"));
          return emit.Emit1(grouped, with_bias({h, offsets, wd}, bd), {}, hint + ".down");
        });
  }
  if (phase == MoePhase::kPrefill) {
    const AttrMap pairs = ParamsToAttrs(TopKParams{.top_k = top_k});
    MG_ASSIGN_OR_RETURN(std::vector<ValueId> align,
                        emit.Emit("moe_align", {ids}, experts, hint + ".align"));
    const ValueId sorted = align[0], offsets = align[1];
    MG_ASSIGN_OR_RETURN(ValueId xp,
                        emit.Emit1("moe_permute", {x, sorted}, pairs, hint + ".permuted"));
    MG_ASSIGN_OR_RETURN(ValueId gu,
                        emit.Emit1(grouped, with_bias({xp, offsets, gate_up}, gate_up_bias), {},
                                   hint + ".gate_up"));
    MG_ASSIGN_OR_RETURN(ValueId h, emit.Emit1("clamped_swiglu", {gu}, act, hint + ".act"));
    MG_ASSIGN_OR_RETURN(ValueId y, emit.Emit1(grouped, with_bias({h, offsets, down}, down_bias), {},
                                              hint + ".down"));
    return emit.Emit1("moe_unpermute_reduce", {y, sorted, weights}, pairs, hint + ".out");
  }
  MG_ASSIGN_OR_RETURN(std::vector<ValueId> batch,
                      emit.Emit("moe_expert_batch", {ids}, experts, hint + ".batch"));
  MG_ASSIGN_OR_RETURN(ValueId gu,
                      emit.Emit1(batched, with_bias({x, batch[0], batch[1], gate_up}, gate_up_bias),
                                 ParamsToAttrs(TopKParams{.top_k = top_k}), hint + ".gate_up"));
  MG_ASSIGN_OR_RETURN(ValueId h, emit.Emit1("clamped_swiglu", {gu}, act, hint + ".act"));
  // h holds one row per pair: top_k 1.
  MG_ASSIGN_OR_RETURN(ValueId y,
                      emit.Emit1(batched, with_bias({h, batch[0], batch[1], down}, down_bias),
                                 ParamsToAttrs(TopKParams{.top_k = 1}), hint + ".down"));
  return emit.Emit1("moe_combine", {meta, y, weights}, {}, hint + ".out");
}

// %meta, x, router, gate, up, down[, bias]: the routing attributes and the
// optional score-correction bias go to topk_route unchanged.
StatusOr<ValueId> LowerMoe(const Graph& graph, const Op& op, MoePhase phase,
                           const ExpertParallelLowering& ep, LocalExperts& local, OpEmitter& emit,
                           const std::string& hint) {
  const ValueId meta = op.operands[0], x = op.operands[1], router = op.operands[2];
  const ValueId gate = op.operands[3], up = op.operands[4], down = op.operands[5];
  // The route is the moe op's MoeParams minus the activation.
  MG_ASSIGN_OR_RETURN(const MoeParams moe_params, OpParams<MoeParams>(op));
  const TopkRouteParams& route_params = moe_params;
  if (moe_params.activation == static_cast<int64_t>(ExpertActivation::kClampedSwiglu)) {
    return LowerClampedSwigluMoe(graph, op, moe_params, phase, ep, local, emit, hint);
  }
  const int64_t top_k = route_params.top_k;
  const int64_t num_experts = graph.type(router).dims[0].size;
  const AttrMap pairs = ParamsToAttrs(TopKParams{.top_k = top_k});
  const AttrMap experts = ParamsToAttrs(NumExpertsParams{.num_experts = num_experts});
  MG_ASSIGN_OR_RETURN(ValueId logits, emit.Emit1("linear", {x, router}, {}, hint + ".router"));
  std::vector<ValueId> route_operands = {meta, logits};
  if (op.operands.size() > 6) route_operands.push_back(op.operands[6]);
  MG_ASSIGN_OR_RETURN(
      std::vector<ValueId> route,
      emit.Emit("topk_route", route_operands, ParamsToAttrs(route_params), hint + ".route"));
  const ValueId ids = route[0], weights = route[1];
  if (ep.size > 1) {
    return LowerExpertParallelMoe(
        graph, op, ids, weights, ep, emit, hint,
        [&](ValueId xp, ValueId offsets, ExpertRange range) -> StatusOr<ValueId> {
          MG_ASSIGN_OR_RETURN(ValueId wg, local.Of(gate, range));
          MG_ASSIGN_OR_RETURN(ValueId wu, local.Of(up, range));
          MG_ASSIGN_OR_RETURN(ValueId wd, local.Of(down, range));
          MG_ASSIGN_OR_RETURN(ValueId g,
                              emit.Emit1("grouped_matmul", {xp, offsets, wg}, {}, hint + ".gate"));
          MG_ASSIGN_OR_RETURN(ValueId u,
                              emit.Emit1("grouped_matmul", {xp, offsets, wu}, {}, hint + ".up"));
          MG_ASSIGN_OR_RETURN(ValueId h, emit.Emit1("silu_mul", {g, u}, {}, hint + ".act"));
          return emit.Emit1("grouped_matmul", {h, offsets, wd}, {}, hint + ".down");
        });
  }
  if (phase == MoePhase::kPrefill) {
    MG_ASSIGN_OR_RETURN(std::vector<ValueId> align,
                        emit.Emit("moe_align", {ids}, experts, hint + ".align"));
    const ValueId sorted = align[0], offsets = align[1];
    MG_ASSIGN_OR_RETURN(ValueId xp,
                        emit.Emit1("moe_permute", {x, sorted}, pairs, hint + ".permuted"));
    MG_ASSIGN_OR_RETURN(ValueId g,
                        emit.Emit1("grouped_matmul", {xp, offsets, gate}, {}, hint + ".gate"));
    MG_ASSIGN_OR_RETURN(ValueId u,
                        emit.Emit1("grouped_matmul", {xp, offsets, up}, {}, hint + ".up"));
    MG_ASSIGN_OR_RETURN(ValueId h, emit.Emit1("silu_mul", {g, u}, {}, hint + ".act"));
    MG_ASSIGN_OR_RETURN(ValueId y,
                        emit.Emit1("grouped_matmul", {h, offsets, down}, {}, hint + ".down"));
    return emit.Emit1("moe_unpermute_reduce", {y, sorted, weights}, pairs, hint + ".out");
  }
  MG_ASSIGN_OR_RETURN(std::vector<ValueId> batch,
                      emit.Emit("moe_expert_batch", {ids}, experts, hint + ".batch"));
  MG_ASSIGN_OR_RETURN(
      ValueId h, emit.Emit1("expert_batched_gate_up_silu", {x, batch[0], batch[1], gate, up}, pairs,
                            hint + ".act"));
  MG_ASSIGN_OR_RETURN(ValueId y, emit.Emit1("expert_batched_down", {h, batch[0], batch[1], down},
                                            {}, hint + ".down"));
  return emit.Emit1("moe_combine", {meta, y, weights}, {}, hint + ".out");
}

// %meta, x, gate, up, down, and optionally the gate, up and down biases.
StatusOr<ValueId> LowerMlp(const Op& op, OpEmitter& emit, const std::string& hint) {
  const ValueId x = op.operands[1];
  const bool has_bias = op.operands.size() == 8;
  // linear, then bias_add with the bias at operand `bias` when the op has biases.
  auto project = [&](ValueId in, int weight, int bias,
                     const std::string& what) -> StatusOr<ValueId> {
    MG_ASSIGN_OR_RETURN(ValueId y,
                        emit.Emit1("linear", {in, op.operands[weight]}, {}, hint + what));
    if (!has_bias) return y;
    return emit.Emit1("bias_add", {y, op.operands[bias]}, {}, hint + what + "_bias");
  };
  MG_ASSIGN_OR_RETURN(ValueId g, project(x, 2, 5, ".gate"));
  MG_ASSIGN_OR_RETURN(ValueId u, project(x, 3, 6, ".up"));
  MG_ASSIGN_OR_RETURN(ValueId h, emit.Emit1("silu_mul", {g, u}, {}, hint + ".act"));
  return project(h, 4, 7, ".down");
}

}  // namespace

StatusOr<bool> MoeLowerPass::Run(Graph& graph) {
  MG_RETURN_IF_ERROR(CheckSpecializedFor(graph, key_, chunk_size_));
  const SpecKey& key = key_;
  if (ep_.size > 1 && (ep_.rank < 0 || ep_.rank >= ep_.size || ep_.max_chunk_rows <= 0)) {
    return InvalidArgument("moe-lower: expert-parallel rank " + std::to_string(ep_.rank) + " of " +
                           std::to_string(ep_.size) + " with max_chunk_rows " +
                           std::to_string(ep_.max_chunk_rows) +
                           ": expected 0 <= rank < size and max_chunk_rows > 0");
  }
  bool changed = false;
  std::vector<Op> ops;
  OpEmitter emit(graph, ops);
  std::optional<LocalExperts> local;
  std::unordered_map<ValueId, ValueId> lowered_values;  // an expanded op's result -> its lowering
  for (size_t i = 0; i < graph.ops().size(); ++i) {
    // Every use follows its def: rewriting each op's operands as it is copied
    // sees every earlier expansion, and keeps the pass linear in the op count.
    Op op = graph.ops()[i];
    for (ValueId& operand : op.operands) {
      const auto it = lowered_values.find(operand);
      if (it != lowered_values.end()) operand = it->second;
    }
    const bool is_moe = op.name() == "moe", is_mlp = op.name() == "mlp";
    if (!is_moe && !is_mlp) {
      ops.push_back(op);
      continue;
    }
    const std::string hint = graph.value(op.results[0]).name;
    if (is_moe && !local) local.emplace(graph, ops);
    StatusOr<ValueId> lowered =
        is_moe ? LowerMoe(graph, op, key.phase, ep_, *local, emit, hint) : LowerMlp(op, emit, hint);
    if (!lowered.ok()) return lowered.status().WithContext("lowering %" + hint);
    lowered_values.emplace(op.results[0], *lowered);
    changed = true;
  }
  if (changed) {
    graph.ReplaceOps(std::move(ops));
    std::vector<ValueId> outputs = graph.outputs();
    for (ValueId& out : outputs) {
      const auto it = lowered_values.find(out);
      if (it != lowered_values.end()) out = it->second;
    }
    graph.SetOutputs(std::move(outputs));
  }
  return changed;
}

}  // namespace moegraph
