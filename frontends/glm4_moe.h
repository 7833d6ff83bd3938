// The GLM4-MoE family (Glm4MoeForCausalLM, GLM-4.5): its graph, composed of the block library,
// and its checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/glm4_moe_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @glm4_moe(%meta, %tokens) -> logits [B, vocab].
StatusOr<Graph> BuildGlm4MoeGraph(const Glm4MoeConfig& config, const Checkpoint& checkpoint);

// Every tensor of a Glm4MoeForCausalLM checkpoint in the published per-expert layout, in file
// order (no MTP layers).
std::vector<WeightSpec> Glm4MoeWeightList(const Glm4MoeConfig& config);

}  // namespace moegraph
