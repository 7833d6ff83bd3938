// The GLM-4.5 / GLM-4-MoE model configuration (Glm4MoeForCausalLM's config.json), parsed and
// validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "frontends/config_reader.h"
#include "frontends/decoder_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// Layers [0, first_k_dense_replace) are dense SwiGLU MLPs of intermediate_size; the others are
// MoE blocks: a sigmoid router over n_routed_experts with e_score_correction_bias for the
// choice, group-limited top-k (n_group groups, topk_group kept), weights renormalised when
// norm_topk_prob (transformers: / (sum + 1e-20)) and scaled by routed_scaling_factor, plus a
// shared expert MLP of moe_intermediate_size * n_shared_experts. Attention has optional q/k/v
// biases (attention_bias; o_proj never), optional per-head q/k RMSNorm (use_qk_norm) and
// partial rotary (partial_rotary_factor, 0.5 when absent). Defaults are transformers 5.24's
// Glm4MoeConfig.
struct Glm4MoeConfig : DecoderConfig {
  Glm4MoeConfig() {
    architecture = "Glm4MoeForCausalLM";
    max_position_embeddings = 131072;
    rms_norm_eps = 1e-5;
  }

  int64_t intermediate_size = 0;      // dense layers
  int64_t moe_intermediate_size = 0;  // each routed expert
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_shared_experts = 1;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  int64_t first_k_dense_replace = 1;
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = true;
  bool use_qk_norm = false;
  bool attention_bias = false;
  // Multi-token-prediction layers a checkpoint may carry after the decoder
  // (model.layers.{num_hidden_layers + i}.*): not run (speculative decoding is not supported).
  // transformers' num_mtp_layers default is 1.
  int64_t num_nextn_predict_layers = 1;

  bool IsMoeLayer(int64_t layer) const { return layer >= first_k_dense_replace; }

  // For tools: "3 layers (2 MoE): 16 experts, top-3, sigmoid router with correction bias, 4
  // groups keep 2, scaling 2.5, 1 shared expert, partial rotary 0.5".
  std::string Describe() const;

  bool operator==(const Glm4MoeConfig&) const = default;
};

// The feed-forward fields GLM4-MoE and DeepSeek-V3 share, read into `config` and checked
// (the dense / expert sizes, the grouped router, first_k_dense_replace, the MTP layer count:
// num_nextn_predict_layers, else transformers' num_mtp_layers).
Status ParseGlm4MoeRouting(const FieldReader& reader, Glm4MoeConfig& config);

// Validates `json` (the contents of `source_name`, used in messages): InvalidArgument naming
// the field for a missing or mistyped field or a bad value (n_routed_experts not divisible by
// n_group, topk_group outside [1, n_group], top-k beyond the kept groups' experts,
// n_shared_experts 0: Glm4MoeMoE always builds its shared experts); Unimplemented naming the
// field for what the engine lacks (scaled RoPE, another activation, sliding windows).
StatusOr<Glm4MoeConfig> ParseGlm4MoeConfig(const JsonValue& json, std::string_view source_name);

}  // namespace moegraph
