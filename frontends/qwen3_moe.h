// The Qwen3-MoE model definition (Qwen3MoeForCausalLM) as a generic graph.
#pragma once

#include "frontends/qwen3_moe_config.h"
#include "frontends/safetensors.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @qwen3_moe(%meta, %tokens: tensor<T x i32>) -> logits
// tensor<B x vocab x f32> (the last token of each sequence). Weight values
// are typed from `checkpoint`; a missing tensor or a shape that disagrees with
// the config is an error naming the tensor, the file and the expected shape.
StatusOr<Graph> BuildQwen3MoeGraph(const Qwen3MoeConfig& config, const Checkpoint& checkpoint);

}  // namespace moegraph
