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
// Steps: walk the ops once, emitting the expansion in place of each MoE/MLP
// op and forwarding its uses to the expansion's result.
#pragma once

#include "ir/spec_key.h"
#include "passes/pass.h"

namespace moegraph {

class MoeLowerPass : public Pass {
 public:
  MoeLowerPass(SpecKey key, int32_t chunk_size) : key_(key), chunk_size_(chunk_size) {}
  std::string_view name() const override { return "moe-lower"; }
  StatusOr<bool> Run(Graph& graph) override;

 private:
  SpecKey key_;
  int32_t chunk_size_;
};

}  // namespace moegraph
