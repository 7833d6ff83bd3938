// The Mixtral model configuration (MixtralForCausalLM's config.json), parsed and validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "frontends/decoder_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// Every layer is a sparse MoE block: softmax over num_local_experts, the top
// num_experts_per_tok experts, their weights renormalised to sum to 1, SwiGLU experts of
// intermediate_size. No q/k norm, no shared expert.
struct MixtralConfig : DecoderConfig {
  MixtralConfig() {
    architecture = "MixtralForCausalLM";
    max_position_embeddings = 4096 * 32;
    rms_norm_eps = 1e-5;
    rope_theta = 1e6;
  }

  int64_t intermediate_size = 0;  // each expert
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;

  // For tools: "3 layers (3 MoE): 8 experts, top-2, softmax router, renormalised".
  std::string Describe() const;

  bool operator==(const MixtralConfig&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages): InvalidArgument naming
// the field for a missing or mistyped field or a bad value; Unimplemented naming the field for
// what the engine lacks (sliding_window set, scaled RoPE, another activation).
StatusOr<MixtralConfig> ParseMixtralConfig(const JsonValue& json, std::string_view source_name);

}  // namespace moegraph
