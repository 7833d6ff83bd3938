// The DeepSeek-V3 family (DeepseekV3ForCausalLM): its graph, composed of the block library
// (multi-head latent attention, GLM4-MoE's grouped sigmoid router and shared experts), and its
// checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/deepseek_v3_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @deepseek_v3(%meta, %tokens) -> logits [B, vocab]. The MTP layers
// (model.layers.{num_hidden_layers}.*) are not loaded.
StatusOr<Graph> BuildDeepseekV3Graph(const DeepseekV3Config& config, const Checkpoint& checkpoint);

// Every tensor of a DeepseekV3ForCausalLM checkpoint in the published per-expert layout, in
// file order (no MTP layers).
std::vector<WeightSpec> DeepseekV3WeightList(const DeepseekV3Config& config);

}  // namespace moegraph
