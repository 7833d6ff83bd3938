// The Qwen2 model configuration (Qwen2ForCausalLM's config.json), parsed and validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "frontends/decoder_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// Every layer is dense: attention whose q/k/v projections carry biases (o_proj has none, no
// q/k norm), then a SwiGLU MLP of intermediate_size. Defaults are transformers' Qwen2Config.
struct Qwen2Config : DecoderConfig {
  Qwen2Config() { architecture = "Qwen2ForCausalLM"; }

  int64_t intermediate_size = 0;

  // For tools: "24 layers, dense, q/k/v bias".
  std::string Describe() const;

  bool operator==(const Qwen2Config&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages): InvalidArgument naming
// the field for a missing or mistyped field or a bad value; Unimplemented naming the field for
// what the engine lacks (use_sliding_window true, a layer_types entry other than
// "full_attention", scaled RoPE, another activation). Qwen2 configs have no attention_bias
// field: the q/k/v biases are always there.
StatusOr<Qwen2Config> ParseQwen2Config(const JsonValue& json, std::string_view source_name);

// Ok unless config.json's layer_types (absent, or one entry per layer) names a layer kind other
// than "full_attention" (Unimplemented naming the field) or is not an array. Qwen2 and Qwen2-MoE
// write it.
Status CheckFullAttentionLayers(const FieldReader& reader);

}  // namespace moegraph
