// The Qwen3 and Qwen3-MoE model configurations (a Hugging Face config.json), parsed and
// validated. A dense Qwen3 (Qwen3ForCausalLM) is a Qwen3-MoE without experts: every layer is
// Qwen3MoeDecoderLayer's dense branch, so both parse into Qwen3MoeConfig and share one builder.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "frontends/decoder_config.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

struct Qwen3MoeConfig : DecoderConfig {
  Qwen3MoeConfig() { architecture = "Qwen3MoeForCausalLM"; }

  int64_t intermediate_size = 0;      // dense MLP layers
  int64_t moe_intermediate_size = 0;  // each expert; 0 in a dense Qwen3
  int64_t num_experts = 0;            // 0: a dense Qwen3
  int64_t num_experts_per_tok = 0;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;  // layers with a dense MLP instead of experts
  bool norm_topk_prob = false;           // renormalize the top-k router weights to sum to 1

  // Whether `layer` has a sparse MoE block; exactly Hugging Face Qwen3MoeDecoderLayer's rule.
  bool IsMoeLayer(int64_t layer) const;
  // For tools: "4 layers (2 MoE): 8 experts, top-2, softmax router, renormalised".
  std::string Describe() const;
  // A config.json that transformers' Qwen3MoeConfig accepts and that parses back to *this.
  std::string ToJson() const;

  bool operator==(const Qwen3MoeConfig&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages). InvalidArgument naming
// the field for a missing or mistyped field or a bad value; Unimplemented naming the field for a
// feature the engine lacks (another architecture or activation, attention bias, RoPE scaling,
// sliding-window attention).
StatusOr<Qwen3MoeConfig> ParseQwen3MoeConfig(const JsonValue& json, std::string_view source_name);

// A dense Qwen3ForCausalLM config.json (no expert fields), as a Qwen3MoeConfig with no experts.
StatusOr<Qwen3MoeConfig> ParseQwen3Config(const JsonValue& json, std::string_view source_name);

// The fields Qwen3-MoE shares with Qwen2-MoE past the decoder ones (ParseDecoderConfig reads
// those first): intermediate_size and, with `moe`, moe_intermediate_size, num_experts (or
// num_local_experts), num_experts_per_tok, decoder_sparse_step, norm_topk_prob and
// mlp_only_layers, with the same checks and messages for both families.
Status ParseQwenMoeFields(const FieldReader& reader, bool moe, Qwen3MoeConfig& config);

// Reads, parses and validates a config.json.
StatusOr<Qwen3MoeConfig> LoadQwen3MoeConfig(const std::string& config_json_path);

}  // namespace moegraph
