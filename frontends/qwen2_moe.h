// The Qwen2-MoE family (Qwen2MoeForCausalLM): its graph, composed of the block library, and its
// checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/qwen2_moe_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @qwen2_moe(%meta, %tokens) -> logits [B, vocab].
StatusOr<Graph> BuildQwen2MoeGraph(const Qwen2MoeConfig& config, const Checkpoint& checkpoint);

// Every tensor of a Qwen2MoeForCausalLM checkpoint in the published per-expert layout, in file
// order.
std::vector<WeightSpec> Qwen2MoeWeightList(const Qwen2MoeConfig& config);

}  // namespace moegraph
