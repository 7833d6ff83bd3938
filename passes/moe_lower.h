// moe-lower: rewrites each `moe` and `mlp` op of a specialized graph into the
// kernel-level ops of the key's phase.
//
// Invariant established: no `moe` or `mlp` op remains. For `moe`:
//   prefill: linear (router) -> topk_route -> moe_align -> moe_permute ->
//            grouped_matmul (gate), grouped_matmul (up) -> silu_mul ->
//            grouped_matmul (down) -> moe_unpermute_reduce (routing weights)
//   decode:  linear (router) -> topk_route -> moe_expert_batch ->
//            expert_batched_gate_up_silu -> expert_batched_down -> moe_combine
// topk_route takes %meta, the moe op's routing attributes (its chunk's
// row_offset, scoring, groups, scaling, norm_min) and its optional %bias
// operand, and routes rows at or past num_tokens to expert -1, so padded rows
// never reach an expert.
// `mlp` becomes linear (gate), linear (up), silu_mul, linear (down); with its
// bias operands each linear is followed by a bias_add of its bias.
//
// Expert parallelism (ExpertParallelLowering.size > 1; DESIGN §9, EP x DP): the router and
// topk_route stay (every rank routes its own tokens over all E experts); then
//   ep_dispatch (all-to-all: each pair's row to its expert's rank) -> moe_align over the
//   received pairs' local experts -> moe_permute {top_k 1} -> grouped_matmul (gate), (up) ->
//   silu_mul -> grouped_matmul (down) over this rank's experts only -> ep_combine (all-to-all
//   back, weighted sum in token order)
// in both phases. The expert weights become this rank's slice (weight ops with `experts` =
// its count and `first_expert`), so a rank maps only the experts it owns. ep_dispatch's
// capacity is size * max_chunk_rows * min(top_k, local experts): the most pairs every rank's
// chunk of this phase can send here.
//
// Steps: walk the ops once, emitting the expansion in place of each MoE/MLP
// op and forwarding its uses to the expansion's result.
#pragma once

#include "ir/spec_key.h"
#include "passes/pass.h"

namespace moegraph {

struct ExpertParallelLowering {
  int32_t size = 1;  // ranks; 1: every expert here
  int32_t rank = 0;
  // The most rows one MoE chunk of any rank's key of this key's phase has.
  int32_t max_chunk_rows = 0;
  bool operator==(const ExpertParallelLowering& other) const = default;
};

class MoeLowerPass : public Pass {
 public:
  MoeLowerPass(SpecKey key, int32_t chunk_size, ExpertParallelLowering ep = {})
      : key_(key), chunk_size_(chunk_size), ep_(ep) {}
  std::string_view name() const override { return "moe-lower"; }
  StatusOr<bool> Run(Graph& graph) override;

 private:
  SpecKey key_;
  int32_t chunk_size_;
  ExpertParallelLowering ep_;
};

}  // namespace moegraph
