// The GPT-OSS family (GptOssForCausalLM, gpt-oss-20b / 120b): its graph, composed of the block
// library, and its checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/gpt_oss_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @gpt_oss(%meta, %tokens) -> logits [B, vocab].
StatusOr<Graph> BuildGptOssGraph(const GptOssConfig& config, const Checkpoint& checkpoint);

// Every tensor of an unquantized GptOssForCausalLM checkpoint in transformers' layout (experts
// fused [in, out]: gate_up_proj [E, H, 2I], down_proj [E, I, H]), in file order.
std::vector<WeightSpec> GptOssWeightList(const GptOssConfig& config);

}  // namespace moegraph
