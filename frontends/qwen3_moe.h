// The Qwen3-MoE family (Qwen3MoeForCausalLM): its graph, composed of the block library, and its
// checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/qwen3_moe_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @qwen3_moe(%meta, %tokens: tensor<T x i32>) -> logits
// tensor<B x vocab x f32> (the last token of each sequence). Weight values
// are typed from `checkpoint`; a missing tensor or a shape that disagrees with
// the config is an error naming the tensor, the file and the expected shape.
StatusOr<Graph> BuildQwen3MoeGraph(const Qwen3MoeConfig& config, const Checkpoint& checkpoint);

// Every tensor of a Qwen3MoeForCausalLM checkpoint with `config`, in the published per-expert
// layout and the order the demo and bench writers store them.
std::vector<WeightSpec> Qwen3MoeWeightList(const Qwen3MoeConfig& config);

}  // namespace moegraph
