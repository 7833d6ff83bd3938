// The Qwen2-MoE model configuration (Qwen2MoeForCausalLM's config.json), parsed and validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "frontends/qwen3_moe_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// Qwen3-MoE's layer layout and routing (the same decoder_sparse_step / mlp_only_layers rule,
// IsMoeLayer, and softmax top-k with optional renormalisation), without q/k norm, with q/k/v
// projection biases under qkv_bias, and in every MoE block a shared expert of
// shared_expert_intermediate_size scaled per token by sigmoid(x @ shared_expert_gate^T).
// Defaults are transformers' Qwen2MoeConfig.
struct Qwen2MoeConfig : Qwen3MoeConfig {
  Qwen2MoeConfig() { architecture = "Qwen2MoeForCausalLM"; }

  int64_t shared_expert_intermediate_size = 0;
  bool qkv_bias = true;  // self_attn.{q,k,v}_proj.bias

  // For tools: "4 layers (2 MoE): 8 experts, top-2, softmax router, shared expert 44 with
  // sigmoid gate, q/k/v bias".
  std::string Describe() const;
  // Qwen3MoeConfig::ToJson writes a Qwen3-MoE config.json; none is written for Qwen2-MoE.
  std::string ToJson() const = delete;

  bool operator==(const Qwen2MoeConfig&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages): InvalidArgument naming
// the field for a missing or mistyped field or a bad value; Unimplemented naming the field for
// what the engine lacks (use_sliding_window true, a layer_types entry other than
// "full_attention", scaled RoPE, another activation).
StatusOr<Qwen2MoeConfig> ParseQwen2MoeConfig(const JsonValue& json, std::string_view source_name);

}  // namespace moegraph
