// The Qwen2 family (Qwen2ForCausalLM): its graph, composed of the block library, and its
// checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/qwen2_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @qwen2(%meta, %tokens) -> logits [B, vocab].
StatusOr<Graph> BuildQwen2Graph(const Qwen2Config& config, const Checkpoint& checkpoint);

// Every tensor of a Qwen2ForCausalLM checkpoint, in file order.
std::vector<WeightSpec> Qwen2WeightList(const Qwen2Config& config);

}  // namespace moegraph
