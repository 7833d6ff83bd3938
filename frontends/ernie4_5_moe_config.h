// The Ernie 4.5 MoE model configuration (Ernie4_5_MoeForCausalLM's config.json), parsed and
// validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "frontends/decoder_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// A layer is a sparse MoE block when IsMoeLayer, else a dense SwiGLU MLP of intermediate_size.
// The router: softmax over moe_num_experts; the top moe_k are chosen by softmax +
// e_score_correction_bias, their weights are the unbiased softmax divided by
// max(sum, moe_norm_min). moe_num_shared_experts > 0 adds one always-on MLP of
// moe_intermediate_size * moe_num_shared_experts. use_bias puts biases on q/k/v/o, on every
// dense and shared-expert linear and on lm_head (never on the routed experts). RoPE is
// interleaved (pairs 2i, 2i + 1). Defaults are transformers' Ernie4_5_MoeConfig.
struct Ernie4_5_MoeConfig : DecoderConfig {
  Ernie4_5_MoeConfig() {
    architecture = "Ernie4_5_MoeForCausalLM";
    max_position_embeddings = 131072;
    tie_word_embeddings = true;
    rms_norm_eps = 1e-5;
    rope_theta = 500000.0;
  }

  int64_t intermediate_size = 0;      // dense MLP layers
  int64_t moe_intermediate_size = 0;  // each routed expert
  int64_t moe_num_experts = 0;        // (alias num_experts)
  int64_t moe_k = 0;                  // (alias num_experts_per_tok)
  int64_t moe_num_shared_experts = 2;
  int64_t moe_layer_start_index = 1;
  int64_t moe_layer_end_index = 0;  // resolved: config.json's -1 is the last layer
  int64_t moe_layer_interval = 1;
  double moe_norm_min = 1e-12;
  bool use_bias = false;

  // Whether `layer` has a sparse MoE block; exactly Ernie4_5_MoeDecoderLayer's rule:
  // (layer + 1) % moe_layer_interval == 0 and start <= layer <= end.
  bool IsMoeLayer(int64_t layer) const;
  // For tools: "28 layers (27 MoE): 64 experts, top-6, softmax router + score-correction bias,
  // renormalised (norm_min 1e-12), 2 shared experts".
  std::string Describe() const;

  bool operator==(const Ernie4_5_MoeConfig&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages): InvalidArgument naming
// the field for a missing or mistyped field or a bad value; Unimplemented naming the field for
// what the engine lacks (scaled RoPE, another activation). Reads transformers' attribute_map
// aliases num_experts / num_experts_per_tok when the moe_ names are absent.
StatusOr<Ernie4_5_MoeConfig> ParseErnie4_5_MoeConfig(const JsonValue& json,
                                                     std::string_view source_name);

}  // namespace moegraph
