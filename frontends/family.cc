// The family table. Adding a family is one line here (see docs/DESIGN-NOTES.md).
#include "frontends/family.h"

#include "frontends/config_reader.h"
#include "frontends/deepseek_v3.h"
#include "frontends/ernie4_5_moe.h"
#include "frontends/glm4_moe.h"
#include "frontends/gpt_oss.h"
#include "frontends/mixtral.h"
#include "frontends/qwen2.h"
#include "frontends/qwen2_moe.h"
#include "frontends/qwen3_moe.h"
#include "support/strings.h"

namespace moegraph {
namespace {

// A registry entry from a family's typed functions.
template <typename Config, StatusOr<Config> (*Parse)(const JsonValue&, std::string_view),
          StatusOr<Graph> (*Build)(const Config&, const Checkpoint&),
          std::vector<WeightSpec> (*List)(const Config&)>
ModelFamily Family(std::string_view architecture, std::string_view name,
                   std::string_view demo_config) {
  return {architecture,
          name,
          [](const JsonValue& json, std::string_view source) -> StatusOr<ModelConfig> {
            MG_ASSIGN_OR_RETURN(Config config, Parse(json, source));
            return ModelConfig(std::move(config));
          },
          [](const ModelConfig& config, const Checkpoint& checkpoint) {
            return Build(std::get<Config>(config), checkpoint);
          },
          [](const ModelConfig& config) { return List(std::get<Config>(config)); },
          demo_config};
}

// Each family's demo config.json (ModelFamily::demo_config): vocab 512 (the demo tokenizer's),
// hidden 128, 4 layers, 4 query and 2 KV heads of 32. Qwen3-MoE's is the built-in demo's
// (DemoModelConfig).
constexpr std::string_view kQwen3MoeDemo =
    R"({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": true, "mlp_only_layers": [2], "decoder_sparse_step": 1, "rope_theta": 10000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false, "max_position_embeddings": 2048})";
constexpr std::string_view kQwen3Demo =
    R"({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "rope_theta": 10000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "max_position_embeddings": 2048})";
constexpr std::string_view kMixtralDemo =
    R"({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 8, "num_experts_per_tok": 2, "rope_theta": 1000000.0, "rms_norm_eps": 1e-05, "sliding_window": null, "tie_word_embeddings": false, "max_position_embeddings": 2048})";
constexpr std::string_view kQwen2Demo =
    R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "use_sliding_window": false, "max_position_embeddings": 2048})";
// Layer 1 dense (mlp_only_layers), the rest 8 experts top-2 plus a gated shared expert.
constexpr std::string_view kQwen2MoeDemo =
    R"({"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64, "shared_expert_intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": false, "decoder_sparse_step": 1, "mlp_only_layers": [1], "qkv_bias": true, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false, "use_sliding_window": false, "max_position_embeddings": 2048})";
// Layer 0 dense (moe_layer_start_index 1), the rest 8 experts top-2 and one shared expert;
// interleaved RoPE and the softmax router with its score-correction bias.
constexpr std::string_view kErnie45MoeDemo =
    R"({"architectures": ["Ernie4_5_MoeForCausalLM"], "model_type": "ernie4_5_moe", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "moe_num_experts": 8, "moe_k": 2, "moe_num_shared_experts": 1, "moe_layer_start_index": 1, "moe_layer_end_index": -1, "moe_layer_interval": 1, "moe_norm_min": 1e-12, "use_bias": false, "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": true, "max_position_embeddings": 2048})";
constexpr std::string_view kGlm4MoeDemo =
    R"({"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "n_group": 2, "topk_group": 1, "first_k_dense_replace": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": true, "use_qk_norm": false, "attention_bias": true, "partial_rotary_factor": 0.5, "rope_theta": 10000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "max_position_embeddings": 2048})";

// Layer 0 dense, the rest 8 experts top-2 in 4 groups keeping 2, one shared expert; MLA with
// q_lora_rank 64, kv_lora_rank 32, 4 heads of 16 + 8 (rope) / 16 (value), interleaved RoPE.
constexpr std::string_view kDeepseekV3Demo =
    R"({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 64, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "n_group": 4, "topk_group": 2, "first_k_dense_replace": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": true, "rope_interleave": true, "num_nextn_predict_layers": 0, "rope_theta": 10000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false, "max_position_embeddings": 2048})";
// 8 experts top-2 with router and expert biases, clamped SwiGLU; sliding window 16 on layers 0
// and 2, full attention on 1 and 3 (transformers' default layer_types); attention sinks, q/k/v/o
// biases, YaRN factor 4 over an original context of 512.
constexpr std::string_view kGptOssDemo =
    R"({"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": 16, "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"], "attention_bias": true, "swiglu_limit": 7.0, "rope_parameters": {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": false, "original_max_position_embeddings": 512}, "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "max_position_embeddings": 2048})";
}  // namespace

const std::vector<ModelFamily>& ModelFamilies() {
  static const std::vector<ModelFamily>* families = new std::vector<ModelFamily>{
      Family<Qwen3MoeConfig, ParseQwen3MoeConfig, BuildQwen3MoeGraph, Qwen3MoeWeightList>(
          "Qwen3MoeForCausalLM", "qwen3_moe", kQwen3MoeDemo),
      Family<Qwen3MoeConfig, ParseQwen3Config, BuildQwen3MoeGraph, Qwen3MoeWeightList>(
          "Qwen3ForCausalLM", "qwen3", kQwen3Demo),
      Family<MixtralConfig, ParseMixtralConfig, BuildMixtralGraph, MixtralWeightList>(
          "MixtralForCausalLM", "mixtral", kMixtralDemo),
      Family<Qwen2Config, ParseQwen2Config, BuildQwen2Graph, Qwen2WeightList>("Qwen2ForCausalLM",
                                                                              "qwen2", kQwen2Demo),
      Family<Qwen2MoeConfig, ParseQwen2MoeConfig, BuildQwen2MoeGraph, Qwen2MoeWeightList>(
          "Qwen2MoeForCausalLM", "qwen2_moe", kQwen2MoeDemo),
      Family<Ernie4_5_MoeConfig, ParseErnie4_5_MoeConfig, BuildErnie4_5_MoeGraph,
             Ernie4_5_MoeWeightList>("Ernie4_5_MoeForCausalLM", "ernie4_5_moe", kErnie45MoeDemo),
      Family<Glm4MoeConfig, ParseGlm4MoeConfig, BuildGlm4MoeGraph, Glm4MoeWeightList>(
          "Glm4MoeForCausalLM", "glm4_moe", kGlm4MoeDemo),
      Family<DeepseekV3Config, ParseDeepseekV3Config, BuildDeepseekV3Graph, DeepseekV3WeightList>(
          "DeepseekV3ForCausalLM", "deepseek_v3", kDeepseekV3Demo),
      Family<GptOssConfig, ParseGptOssConfig, BuildGptOssGraph, GptOssWeightList>(
          "GptOssForCausalLM", "gpt_oss", kGptOssDemo),
  };
  return *families;
}

std::string SupportedArchitectures() {
  std::string list;
  for (const ModelFamily& family : ModelFamilies()) {
    if (!list.empty()) list += ", ";
    list += "\"" + std::string(family.architecture) + "\"";
  }
  return list;
}

std::string ModelFamilyNames() {
  std::string list;
  for (const ModelFamily& family : ModelFamilies()) {
    if (!list.empty()) list += ", ";
    list += family.name;
  }
  return list;
}

StatusOr<const ModelFamily*> FindModelFamilyByName(std::string_view name) {
  for (const ModelFamily& family : ModelFamilies()) {
    if (family.name == name) return &family;
  }
  return NotFound("unknown model family \"" + EscapeBytes(name) +
                  "\"; families: " + ModelFamilyNames());
}

StatusOr<const ModelFamily*> FindModelFamily(std::string_view architecture) {
  for (const ModelFamily& family : ModelFamilies()) {
    if (family.architecture == architecture) return &family;
  }
  return NotFound("no model family for architecture \"" + EscapeBytes(architecture) +
                  "\"; supported architectures: " + SupportedArchitectures());
}

StatusOr<const ModelFamily*> FamilyForConfig(const JsonValue& json, std::string_view source) {
  if (!json.is_object()) {
    return InvalidArgument(std::string(source) + ": expected a JSON object, found " +
                           json.DescribeKind());
  }
  FieldReader reader(json, source);
  MG_ASSIGN_OR_RETURN(const std::vector<std::string> architectures, reader.Architectures());
  for (const std::string& name : architectures) {
    StatusOr<const ModelFamily*> family = FindModelFamily(name);
    if (family.ok()) return family;
  }
  return reader.UnsupportedArchitecture(SupportedArchitectures());
}

}  // namespace moegraph
