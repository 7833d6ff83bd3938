// The GPT-OSS model configuration (GptOssForCausalLM's config.json), parsed and validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "frontends/decoder_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// Every layer is attention (q/k/v/o biases under attention_bias, one learned sink logit per
// head) and a MoE block: a router with a bias, softmax over the top-k logits
// (num_experts_per_tok of num_local_experts), and experts in transformers' [in, out] layout
// (gate_up_proj [E, H, 2I] with interleaved gate/up columns and gate_up_proj_bias [E, 2I],
// down_proj [E, I, H] and down_proj_bias [E, H]) under the clamped SwiGLU (swiglu_alpha,
// swiglu_limit). layer_types says per layer whether attention is sliding (the last
// sliding_window positions) or full. Defaults are transformers 5.24's GptOssConfig.
struct GptOssConfig : DecoderConfig {
  GptOssConfig() {
    architecture = "GptOssForCausalLM";
    max_position_embeddings = 131072;
    rms_norm_eps = 1e-5;
    rope_theta = 150000.0;
  }

  int64_t intermediate_size = 0;  // each expert
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t sliding_window = 0;        // 0: none (a null sliding_window)
  std::vector<bool> sliding_layers;  // per layer: layer_types[i] == "sliding_attention"
  bool attention_bias = true;
  // transformers 5.24's GptOssConfig fields; GptOssExperts reads both (alpha is 1.702 and the
  // limit 7.0 unless config.json says otherwise).
  double swiglu_alpha = 1.702;
  double swiglu_limit = 7.0;

  bool IsSlidingLayer(int64_t layer) const {
    return layer >= 0 && layer < static_cast<int64_t>(sliding_layers.size()) &&
           sliding_layers[static_cast<size_t>(layer)];
  }

  // For tools: "4 layers (2 sliding, window 128): 32 experts, top-4, clamped SwiGLU (alpha
  // 1.702, limit 7), attention sinks".
  std::string Describe() const;

  bool operator==(const GptOssConfig&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages): InvalidArgument naming
// the field for a missing or mistyped field or a bad value (top-k outside [1,
// num_local_experts], a layer_types entry other than sliding_attention / full_attention or of
// another length than num_hidden_layers, a sliding layer without a positive sliding_window,
// a non-positive swiglu_limit); Unimplemented naming the field for what the engine lacks
// (dynamic NTK RoPE, another hidden_act, quantization_config). layer_types absent:
// transformers' default, sliding on even layers; rope_parameters and rope_scaling absent:
// transformers' default, YaRN factor 32 over an original context of 4096 (beta 32 / 1, no
// truncation).
StatusOr<GptOssConfig> ParseGptOssConfig(const JsonValue& json, std::string_view source_name);

}  // namespace moegraph
