// The GLM4-MoE family (Glm4MoeForCausalLM, GLM-4.5): its graph, composed of the block library,
// and its checkpoint's weight list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/decoder.h"
#include "frontends/glm4_moe_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @glm4_moe(%meta, %tokens) -> logits [B, vocab].
StatusOr<Graph> BuildGlm4MoeGraph(const Glm4MoeConfig& config, const Checkpoint& checkpoint);

// The feed-forward block of `layer` (weights under `prefix`, values named after `label`): a
// dense MLP for the first first_k_dense_replace layers, else the grouped sigmoid router with
// its correction bias over the routed experts plus the shared experts. DeepSeek-V3 (whose
// config derives from Glm4MoeConfig) builds the same block.
StatusOr<ValueId> BuildGlm4MoeFeedForward(DecoderBuilder& d, const Glm4MoeConfig& config,
                                          int64_t layer, const std::string& prefix,
                                          const std::string& label, ValueId x);

// Every tensor of a Glm4MoeForCausalLM checkpoint in the published per-expert layout, in file
// order (no MTP layers).
std::vector<WeightSpec> Glm4MoeWeightList(const Glm4MoeConfig& config);

}  // namespace moegraph
