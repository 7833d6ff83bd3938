// The Qwen3-MoE model configuration (a Hugging Face config.json), parsed and validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "support/json.h"
#include "support/status.h"

namespace moegraph {

struct Qwen3MoeConfig {
  std::string architecture = "Qwen3MoeForCausalLM";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP layers
  int64_t moe_intermediate_size = 0;  // each expert
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t decoder_sparse_step = 1;
  int64_t max_position_embeddings = 32768;
  std::vector<int64_t> mlp_only_layers;  // layers with a dense MLP instead of experts
  bool norm_topk_prob = false;           // renormalize the top-k router weights to sum to 1
  bool tie_word_embeddings = false;      // lm_head shares model.embed_tokens.weight
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::string torch_dtype;  // informational ("float32", "bfloat16"); may be empty

  // Whether `layer` has a sparse MoE block; exactly Hugging Face Qwen3MoeDecoderLayer's rule.
  bool IsMoeLayer(int64_t layer) const;
  // A config.json that transformers' Qwen3MoeConfig accepts and that parses back to *this.
  std::string ToJson() const;

  bool operator==(const Qwen3MoeConfig&) const = default;
};

// Validates `json` (the contents of `source_name`, used in messages). InvalidArgument naming
// the field for a missing or mistyped field or a bad value; Unimplemented naming the field for a
// feature the engine lacks (another architecture or activation, attention bias, RoPE scaling,
// sliding-window attention).
StatusOr<Qwen3MoeConfig> ParseQwen3MoeConfig(const JsonValue& json, std::string_view source_name);

// Reads, parses and validates a config.json.
StatusOr<Qwen3MoeConfig> LoadQwen3MoeConfig(const std::string& config_json_path);

}  // namespace moegraph
