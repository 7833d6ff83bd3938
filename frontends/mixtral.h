// The Mixtral family (MixtralForCausalLM): its graph, composed of the block library, and its
// checkpoint's weight list.
#pragma once

#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/mixtral_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Builds graph @mixtral(%meta, %tokens) -> logits [B, vocab] from either checkpoint layout:
// published (`block_sparse_moe.gate`, `block_sparse_moe.experts.{e}.w1/w3/w2`) or transformers'
// fused in-memory one (`mlp.gate`, `mlp.experts.gate_up_proj` / `down_proj`).
StatusOr<Graph> BuildMixtralGraph(const MixtralConfig& config, const Checkpoint& checkpoint);

// Every tensor of a MixtralForCausalLM checkpoint in the published layout, in file order.
std::vector<WeightSpec> MixtralWeightList(const MixtralConfig& config);

}  // namespace moegraph
