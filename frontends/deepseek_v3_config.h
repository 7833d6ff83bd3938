// The DeepSeek-V3 model configuration (DeepseekV3ForCausalLM's config.json), parsed and
// validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "frontends/glm4_moe_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// GLM4-MoE's feed-forward layout and router (first_k_dense_replace dense layers, then MoE
// blocks with a sigmoid group-limited router, e_score_correction_bias for the choice, routed
// scaling, shared experts: transformers' DeepseekV3TopkRouter is Glm4MoeTopkRouter's rule) with
// multi-head latent attention: queries through a q_lora_rank bottleneck (0: plain q_proj),
// keys and values from one kv_lora_rank latent plus a qk_rope_head_dim rope key shared by the
// heads, RoPE on the rope parts only (GPT-J pairs with rope_interleave). Defaults are
// transformers 5.24's DeepseekV3Config.
struct DeepseekV3Config : Glm4MoeConfig {
  DeepseekV3Config() {
    architecture = "DeepseekV3ForCausalLM";
    max_position_embeddings = 4096;
    rms_norm_eps = 1e-6;
    first_k_dense_replace = 3;
    routed_scaling_factor = 2.5;
    n_group = 8;
    topk_group = 4;
  }

  int64_t q_lora_rank = 1536;  // 0: config.json's null, a plain q_proj
  int64_t kv_lora_rank = 512;
  int64_t qk_nope_head_dim = 128;
  int64_t qk_rope_head_dim = 64;
  int64_t v_head_dim = 128;
  bool rope_interleave = true;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Softmax scale: qk_head_dim^-0.5, times yarn_get_mscale(factor, mscale_all_dim)^2 when the
  // RoPE is scaled and mscale_all_dim is set (transformers' yarn_apply_mscale).
  double Scale() const;

  // For tools: Glm4MoeConfig's line plus the MLA geometry.
  std::string Describe() const;

  bool operator==(const DeepseekV3Config&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages): InvalidArgument naming
// the field for a missing or mistyped field or a bad value (the router's rules as GLM4-MoE's,
// odd qk_rope_head_dim, non-positive MLA sizes); Unimplemented naming the field for what the
// engine lacks (dynamic NTK RoPE, another activation).
StatusOr<DeepseekV3Config> ParseDeepseekV3Config(const JsonValue& json,
                                                 std::string_view source_name);

}  // namespace moegraph
