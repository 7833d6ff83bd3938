// The Ernie 4.5 MoE family (Ernie4_5_MoeForCausalLM): its graph, composed of the block library,
// and its checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/ernie4_5_moe_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @ernie4_5_moe(%meta, %tokens) -> logits [B, vocab] from either checkpoint layout:
// published (`mlp.experts.{e}.{gate,up,down}_proj.weight`,
// `mlp.moe_statics.e_score_correction_bias` [1, E]) or transformers' fused in-memory one
// (`mlp.experts.gate_up_proj` / `down_proj`, `mlp.gate.moe_statics.e_score_correction_bias`).
StatusOr<Graph> BuildErnie4_5_MoeGraph(const Ernie4_5_MoeConfig& config,
                                       const Checkpoint& checkpoint);

// Every tensor of an Ernie4_5_MoeForCausalLM checkpoint in the published layout, in file order
// (the router and the score-correction bias marked f32, as transformers keeps them).
std::vector<WeightSpec> Ernie4_5_MoeWeightList(const Ernie4_5_MoeConfig& config);

}  // namespace moegraph
