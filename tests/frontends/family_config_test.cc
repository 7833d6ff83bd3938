// Config parsing of the families past Qwen3-MoE: dense Qwen3, Mixtral, Qwen2, Qwen2-MoE, Ernie 4.5
// MoE and GLM4-MoE (the shared decoder fields are read by one parser, so their errors read the
// same in every family).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "frontends/decoder_config.h"
#include "frontends/ernie4_5_moe_config.h"
#include "frontends/glm4_moe_config.h"
#include "frontends/mixtral_config.h"
#include "frontends/qwen2_config.h"
#include "frontends/qwen2_moe_config.h"
#include "frontends/qwen3_moe_config.h"

namespace moegraph {
namespace {

// The fields of Mistral's Mixtral-8x7B config.json.
constexpr const char* kMixtral8x7B = R"({
  "architectures": ["MixtralForCausalLM"],
  "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
  "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "num_local_experts": 8, "output_router_logits": false, "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
  "vocab_size": 32000
})";

// The fields of Qwen's Qwen3-8B config.json.
constexpr const char* kQwen3_8B = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 12288, "max_position_embeddings": 40960,
  "max_window_layers": 36, "model_type": "qwen3", "num_attention_heads": 32,
  "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
  "use_sliding_window": false, "vocab_size": 151936
})";

// The fields of Qwen's Qwen2.5-7B-Instruct config.json: no attention_bias field (q/k/v always
// carry biases), and a sliding_window size that use_sliding_window leaves switched off.
constexpr const char* kQwen25_7B = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
  "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
  "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28,
  "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28,
  "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 152064
})";

// The fields of Qwen's Qwen1.5-MoE-A2.7B config.json: no qkv_bias field (true by default), no
// mlp_only_layers, and a sliding_window size that use_sliding_window leaves switched off.
constexpr const char* kQwen15MoeA27B = R"({
  "architectures": ["Qwen2MoeForCausalLM"],
  "attention_dropout": 0.0, "bos_token_id": 151643, "decoder_sparse_step": 1,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192,
  "max_window_layers": 21, "model_type": "qwen2_moe", "moe_intermediate_size": 1408,
  "norm_topk_prob": false, "num_attention_heads": 16, "num_experts": 60,
  "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 16,
  "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.001, "shared_expert_intermediate_size": 5632,
  "sliding_window": 32768, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.0.dev0", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936
})";

// The fields of baidu/ERNIE-4.5-21B-A3B-PT's config.json (published key style: rope_theta,
// moe_layer_end_index -1 for the last layer, torch_dtype), with the training-only fields
// transformers ignores (moe_capacity, moe_gate, moe_use_aux_free, use_rmsnorm).
constexpr const char* kErnie45_21B = R"({
  "architectures": ["Ernie4_5_MoeForCausalLM"],
  "bos_token_id": 1, "eos_token_id": 2, "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 2560, "intermediate_size": 12288, "max_position_embeddings": 131072,
  "model_type": "ernie4_5_moe", "moe_capacity": [64, 64, 64], "moe_gate": "topk",
  "moe_intermediate_size": 1536, "moe_k": 6, "moe_layer_end_index": -1,
  "moe_layer_interval": 1, "moe_layer_start_index": 1, "moe_num_experts": 64,
  "moe_num_shared_experts": 2, "moe_use_aux_free": true, "num_attention_heads": 20,
  "num_hidden_layers": 28, "num_key_value_heads": 4, "pad_token_id": 0, "rms_norm_eps": 1e-05,
  "rope_theta": 500000, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "use_bias": false, "use_cache": false, "use_rmsnorm": true, "vocab_size": 103424
})";

JsonValue Json(const char* text) {
  StatusOr<JsonValue> json = ParseJson(text, "config.json");
  EXPECT_TRUE(json.ok());
  return *json;
}

JsonValue With(const char* text, const std::string& field, JsonValue value) {
  JsonValue json = Json(text);
  JsonValue::Object members = json.as_object();
  bool replaced = false;
  for (auto& [key, v] : members) {
    if (key == field) {
      v = std::move(value);
      replaced = true;
    }
  }
  if (!replaced) members.emplace_back(field, std::move(value));
  return JsonValue::MakeObject(std::move(members));
}

JsonValue Without(const char* text, const std::string& field) {
  const JsonValue json = Json(text);
  JsonValue::Object members;
  for (const auto& [key, v] : json.as_object()) {
    if (key != field) members.emplace_back(key, v);
  }
  return JsonValue::MakeObject(std::move(members));
}

TEST(MixtralConfig, ParsesThePublishedConfig) {
  StatusOr<MixtralConfig> c = ParseMixtralConfig(Json(kMixtral8x7B), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "MixtralForCausalLM");
  EXPECT_EQ(c->vocab_size, 32000);
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->num_hidden_layers, 32);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);  // hidden_size / num_attention_heads
  EXPECT_EQ(c->num_local_experts, 8);
  EXPECT_EQ(c->num_experts_per_tok, 2);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->Describe(), "32 layers (32 MoE): 8 experts, top-2, softmax router, renormalised");
}

TEST(MixtralConfig, DefaultsAreTransformers) {
  StatusOr<MixtralConfig> c =
      ParseMixtralConfig(Without(kMixtral8x7B, "rope_theta"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rope_theta, 1e6);
  c = ParseMixtralConfig(Without(kMixtral8x7B, "rms_norm_eps"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  c = ParseMixtralConfig(Without(kMixtral8x7B, "max_position_embeddings"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->max_position_embeddings, 131072);
}

TEST(MixtralConfig, ErrorsNameTheField) {
  StatusOr<MixtralConfig> c =
      ParseMixtralConfig(With(kMixtral8x7B, "sliding_window", JsonValue::Int(4096)), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"sliding_window\" is 4096; sliding-window attention is not "
            "supported (null only)");
  c = ParseMixtralConfig(With(kMixtral8x7B, "num_experts_per_tok", JsonValue::Int(9)),
                         "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"num_experts_per_tok\" must be in [1, num_local_experts = 8], "
            "got 9");
  c = ParseMixtralConfig(Without(kMixtral8x7B, "num_local_experts"), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("\"num_local_experts\""), std::string::npos)
      << c.status().ToString();
  c = ParseMixtralConfig(With(kMixtral8x7B, "hidden_act", JsonValue::String("gelu")),
                         "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  c = ParseMixtralConfig(Json(kQwen3_8B), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"architectures\" is [\"Qwen3ForCausalLM\"]; supported "
            "architectures: \"MixtralForCausalLM\"");
}

TEST(Qwen3DenseConfig, ParsesThePublishedConfigWithoutExperts) {
  StatusOr<Qwen3MoeConfig> c = ParseQwen3Config(Json(kQwen3_8B), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(c->num_experts, 0);
  EXPECT_EQ(c->intermediate_size, 12288);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position_embeddings, 40960);
  for (int64_t layer = 0; layer < c->num_hidden_layers; ++layer)
    EXPECT_FALSE(c->IsMoeLayer(layer));
  EXPECT_EQ(c->Describe(), "36 layers, dense");
}

TEST(Qwen3DenseConfig, SharesTheDecoderFieldErrors) {
  StatusOr<Qwen3MoeConfig> c =
      ParseQwen3Config(With(kQwen3_8B, "use_sliding_window", JsonValue::Bool(true)), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"use_sliding_window\" is true; sliding-window attention is not "
            "supported");
  c = ParseQwen3Config(With(kQwen3_8B, "num_key_value_heads", JsonValue::Int(5)), "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"num_key_value_heads\" must divide num_attention_heads (32), "
            "got 5");
  c = ParseQwen3Config(Without(kQwen3_8B, "intermediate_size"), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  c = ParseQwen3Config(With(kQwen3_8B, "intermediate_size", JsonValue::Int(0)), "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"intermediate_size\" must be positive, got 0");
  // A Qwen3-MoE config is not a dense Qwen3 one, and the other way round.
  EXPECT_EQ(ParseQwen3MoeConfig(Json(kQwen3_8B), "config.json").status().code(),
            StatusCode::kUnimplemented);
}

TEST(Qwen2Config, ParsesThePublishedConfig) {
  StatusOr<Qwen2Config> c = ParseQwen2Config(Json(kQwen25_7B), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c->vocab_size, 152064);
  EXPECT_EQ(c->hidden_size, 3584);
  EXPECT_EQ(c->intermediate_size, 18944);
  EXPECT_EQ(c->num_hidden_layers, 28);
  EXPECT_EQ(c->num_attention_heads, 28);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 128);  // hidden_size / num_attention_heads
  EXPECT_EQ(c->max_position_embeddings, 32768);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->Describe(), "28 layers, dense, q/k/v bias");

  // Qwen2.5-0.5B ties its embeddings; transformers 5 writes layer_types.
  JsonValue layer_types = JsonValue::MakeArray();
  for (int i = 0; i < 28; ++i)
    layer_types.Append(JsonValue::String("full_attention"));
  JsonValue tied = With(kQwen25_7B, "tie_word_embeddings", JsonValue::Bool(true));
  JsonValue::Object members = tied.as_object();
  members.emplace_back("layer_types", layer_types);
  c = ParseQwen2Config(JsonValue::MakeObject(std::move(members)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->tie_word_embeddings);
}

TEST(Qwen2Config, DefaultsAreTransformers) {
  StatusOr<Qwen2Config> c = ParseQwen2Config(Without(kQwen25_7B, "rope_theta"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rope_theta, 10000.0);
  c = ParseQwen2Config(Without(kQwen25_7B, "rms_norm_eps"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  c = ParseQwen2Config(Without(kQwen25_7B, "max_position_embeddings"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->max_position_embeddings, 32768);
  c = ParseQwen2Config(Without(kQwen25_7B, "tie_word_embeddings"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(Qwen2Config, ErrorsNameTheField) {
  StatusOr<Qwen2Config> c = ParseQwen2Config(
      With(kQwen25_7B, "use_sliding_window", JsonValue::Bool(true)), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"use_sliding_window\" is true; sliding-window attention is not "
            "supported");
  JsonValue layer_types = JsonValue::MakeArray();
  layer_types.Append(JsonValue::String("full_attention"));
  layer_types.Append(JsonValue::String("sliding_attention"));
  c = ParseQwen2Config(With(kQwen25_7B, "layer_types", layer_types), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"layer_types\" has entry \"sliding_attention\"; only "
            "\"full_attention\" layers are supported");
  c = ParseQwen2Config(With(kQwen25_7B, "layer_types", JsonValue::String("full_attention")),
                       "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"layer_types\" must be an array of layer kinds, found a string");
  c = ParseQwen2Config(Without(kQwen25_7B, "intermediate_size"), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("\"intermediate_size\""), std::string::npos)
      << c.status().ToString();
  c = ParseQwen2Config(With(kQwen25_7B, "intermediate_size", JsonValue::Int(0)), "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"intermediate_size\" must be positive, got 0");
  c = ParseQwen2Config(With(kQwen25_7B, "hidden_act", JsonValue::String("gelu")), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  c = ParseQwen2Config(With(kQwen25_7B, "num_key_value_heads", JsonValue::Int(5)), "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"num_key_value_heads\" must divide num_attention_heads (28), "
            "got 5");
  c = ParseQwen2Config(Json(kQwen3_8B), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"architectures\" is [\"Qwen3ForCausalLM\"]; supported "
            "architectures: \"Qwen2ForCausalLM\"");
  EXPECT_EQ(ParseQwen2Config(JsonValue::Int(3), "config.json").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(Qwen2MoeConfig, ParsesThePublishedConfig) {
  StatusOr<Qwen2MoeConfig> c = ParseQwen2MoeConfig(Json(kQwen15MoeA27B), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "Qwen2MoeForCausalLM");
  EXPECT_EQ(c->vocab_size, 151936);
  EXPECT_EQ(c->hidden_size, 2048);
  EXPECT_EQ(c->intermediate_size, 5632);
  EXPECT_EQ(c->moe_intermediate_size, 1408);
  EXPECT_EQ(c->shared_expert_intermediate_size, 5632);
  EXPECT_EQ(c->num_experts, 60);
  EXPECT_EQ(c->num_experts_per_tok, 4);
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_EQ(c->decoder_sparse_step, 1);
  EXPECT_TRUE(c->mlp_only_layers.empty());
  EXPECT_TRUE(c->qkv_bias);  // absent: transformers' default
  EXPECT_EQ(c->num_hidden_layers, 24);
  EXPECT_EQ(c->num_attention_heads, 16);
  EXPECT_EQ(c->num_key_value_heads, 16);
  EXPECT_EQ(c->head_dim, 128);  // hidden_size / num_attention_heads
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  for (int64_t layer = 0; layer < 24; ++layer)
    EXPECT_TRUE(c->IsMoeLayer(layer)) << layer;
  EXPECT_EQ(c->Describe(),
            "24 layers (24 MoE): 60 experts, top-4, softmax router, shared expert 5632 with "
            "sigmoid gate, q/k/v bias");
}

// decoder_sparse_step and mlp_only_layers follow Qwen2MoeDecoderLayer's rule (the one
// Qwen3-MoE's parser reads); qkv_bias false drops the biases, norm_topk_prob renormalises.
TEST(Qwen2MoeConfig, OptionsAndDefaults) {
  JsonValue layers = JsonValue::MakeArray();
  layers.Append(JsonValue::Int(3));
  JsonValue json = With(kQwen15MoeA27B, "decoder_sparse_step", JsonValue::Int(2));
  JsonValue::Object members = json.as_object();
  members.emplace_back("mlp_only_layers", layers);
  members.emplace_back("qkv_bias", JsonValue::Bool(false));
  for (auto& [key, value] : members) {
    if (key == "norm_topk_prob") value = JsonValue::Bool(true);
    if (key == "num_hidden_layers") value = JsonValue::Int(6);
    if (key == "tie_word_embeddings") value = JsonValue::Bool(true);
  }
  StatusOr<Qwen2MoeConfig> c =
      ParseQwen2MoeConfig(JsonValue::MakeObject(std::move(members)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_TRUE(c->tie_word_embeddings);
  std::vector<int64_t> moe_layers;
  for (int64_t layer = 0; layer < c->num_hidden_layers; ++layer) {
    if (c->IsMoeLayer(layer)) moe_layers.push_back(layer);
  }
  EXPECT_EQ(moe_layers, (std::vector<int64_t>{1, 5}));
  EXPECT_EQ(c->Describe(),
            "6 layers (2 MoE): 60 experts, top-4, softmax router, renormalised, shared expert "
            "5632 with sigmoid gate");

  c = ParseQwen2MoeConfig(Without(kQwen15MoeA27B, "norm_topk_prob"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->norm_topk_prob);
  c = ParseQwen2MoeConfig(Without(kQwen15MoeA27B, "decoder_sparse_step"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->decoder_sparse_step, 1);
  c = ParseQwen2MoeConfig(Without(kQwen15MoeA27B, "tie_word_embeddings"), "config.json");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(Qwen2MoeConfig, ErrorsNameTheField) {
  StatusOr<Qwen2MoeConfig> c = ParseQwen2MoeConfig(
      With(kQwen15MoeA27B, "use_sliding_window", JsonValue::Bool(true)), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"use_sliding_window\" is true; sliding-window attention is not "
            "supported");
  JsonValue layer_types = JsonValue::MakeArray();
  layer_types.Append(JsonValue::String("sliding_attention"));
  c = ParseQwen2MoeConfig(With(kQwen15MoeA27B, "layer_types", layer_types), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"layer_types\" has entry \"sliding_attention\"; only "
            "\"full_attention\" layers are supported");
  c = ParseQwen2MoeConfig(Without(kQwen15MoeA27B, "shared_expert_intermediate_size"),
                          "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("\"shared_expert_intermediate_size\""), std::string::npos)
      << c.status().ToString();
  c = ParseQwen2MoeConfig(
      With(kQwen15MoeA27B, "shared_expert_intermediate_size", JsonValue::Int(0)), "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"shared_expert_intermediate_size\" must be positive, got 0");
  c = ParseQwen2MoeConfig(With(kQwen15MoeA27B, "qkv_bias", JsonValue::String("yes")),
                          "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("\"qkv_bias\""), std::string::npos) << c.status().ToString();
  // The expert fields are Qwen3-MoE's, with its messages.
  c = ParseQwen2MoeConfig(With(kQwen15MoeA27B, "num_experts_per_tok", JsonValue::Int(61)),
                          "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"num_experts_per_tok\" must be in [1, num_experts = 60], got "
            "61");
  JsonValue layers = JsonValue::MakeArray();
  layers.Append(JsonValue::Int(24));
  c = ParseQwen2MoeConfig(With(kQwen15MoeA27B, "mlp_only_layers", layers), "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"mlp_only_layers\" entries must be integers in [0, "
            "num_hidden_layers = 24), found 24");
  c = ParseQwen2MoeConfig(Without(kQwen15MoeA27B, "moe_intermediate_size"), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("\"moe_intermediate_size\""), std::string::npos)
      << c.status().ToString();
  c = ParseQwen2MoeConfig(Json(kQwen25_7B), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"architectures\" is [\"Qwen2ForCausalLM\"]; supported "
            "architectures: \"Qwen2MoeForCausalLM\"");
  EXPECT_EQ(ParseQwen2MoeConfig(JsonValue::Int(3), "config.json").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(Ernie4_5_MoeConfig, ParsesThePublishedConfig) {
  StatusOr<Ernie4_5_MoeConfig> c = ParseErnie4_5_MoeConfig(Json(kErnie45_21B), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "Ernie4_5_MoeForCausalLM");
  EXPECT_EQ(c->vocab_size, 103424);
  EXPECT_EQ(c->hidden_size, 2560);
  EXPECT_EQ(c->num_hidden_layers, 28);
  EXPECT_EQ(c->num_attention_heads, 20);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->intermediate_size, 12288);
  EXPECT_EQ(c->moe_intermediate_size, 1536);
  EXPECT_EQ(c->moe_num_experts, 64);
  EXPECT_EQ(c->moe_k, 6);
  EXPECT_EQ(c->moe_num_shared_experts, 2);
  EXPECT_EQ(c->moe_layer_start_index, 1);
  EXPECT_EQ(c->moe_layer_end_index, 27);  // -1: the last layer
  EXPECT_EQ(c->moe_layer_interval, 1);
  EXPECT_EQ(c->moe_norm_min, 1e-12);
  EXPECT_FALSE(c->use_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_TRUE(c->IsMoeLayer(27));
  EXPECT_EQ(c->Describe(),
            "28 layers (27 MoE): 64 experts, top-6, softmax router + score-correction bias, "
            "renormalised (norm_min 1e-12), 2 shared experts");
}

// A layer is MoE when (i + 1) % moe_layer_interval == 0 and start <= i <= end.
TEST(Ernie4_5_MoeConfig, MoeLayersFollowStartEndAndInterval) {
  JsonValue json = With(kErnie45_21B, "num_hidden_layers", JsonValue::Int(9));
  JsonValue::Object members = json.as_object();
  for (auto& [key, v] : members) {
    if (key == "moe_layer_start_index") v = JsonValue::Int(2);
    if (key == "moe_layer_end_index") v = JsonValue::Int(6);
    if (key == "moe_layer_interval") v = JsonValue::Int(2);
  }
  StatusOr<Ernie4_5_MoeConfig> c =
      ParseErnie4_5_MoeConfig(JsonValue::MakeObject(std::move(members)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<int64_t> moe;
  for (int64_t i = 0; i < c->num_hidden_layers; ++i) {
    if (c->IsMoeLayer(i)) moe.push_back(i);
  }
  EXPECT_EQ(moe, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(c->Describe().substr(0, 17), "9 layers (2 MoE):");
}

TEST(Ernie4_5_MoeConfig, DefaultsAndAliasesAreTransformers) {
  JsonValue json = Json(kErnie45_21B);
  JsonValue::Object members;
  for (const auto& [key, v] : json.as_object()) {
    if (key == "moe_num_experts") {
      members.emplace_back("num_experts", v);  // attribute_map aliases
    } else if (key == "moe_k") {
      members.emplace_back("num_experts_per_tok", v);
    } else if (key != "tie_word_embeddings" && key != "rope_theta" && key != "rms_norm_eps" &&
               key != "moe_num_shared_experts" && key != "moe_layer_start_index" &&
               key != "moe_layer_end_index" && key != "moe_layer_interval" && key != "use_bias") {
      members.emplace_back(key, v);
    }
  }
  StatusOr<Ernie4_5_MoeConfig> c =
      ParseErnie4_5_MoeConfig(JsonValue::MakeObject(std::move(members)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->moe_num_experts, 64);
  EXPECT_EQ(c->moe_k, 6);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->moe_num_shared_experts, 2);
  EXPECT_EQ(c->moe_layer_start_index, 1);
  EXPECT_EQ(c->moe_layer_end_index, 27);
  EXPECT_EQ(c->moe_layer_interval, 1);
  EXPECT_FALSE(c->use_bias);
  // transformers 5 writes rope_parameters; a use_bias model says so in Describe().
  JsonValue rope = JsonValue::MakeObject(
      {{"rope_theta", JsonValue::Double(20000.0)}, {"rope_type", JsonValue::String("default")}});
  json = With(kErnie45_21B, "rope_parameters", rope);
  members = json.as_object();
  for (auto& [key, v] : members) {
    if (key == "use_bias") v = JsonValue::Bool(true);
    if (key == "moe_num_shared_experts") v = JsonValue::Int(1);
  }
  c = ParseErnie4_5_MoeConfig(JsonValue::MakeObject(std::move(members)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_theta, 20000.0);
  EXPECT_TRUE(c->use_bias);
  EXPECT_EQ(c->Describe(),
            "28 layers (27 MoE): 64 experts, top-6, softmax router + score-correction bias, "
            "renormalised (norm_min 1e-12), 1 shared expert, use_bias");
}

TEST(Ernie4_5_MoeConfig, ErrorsNameTheField) {
  struct Case {
    std::string field;
    JsonValue value;
    StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {"moe_k", JsonValue::Int(65), StatusCode::kInvalidArgument,
       "config.json: field \"moe_k\" must be in [1, moe_num_experts = 64], got 65"},
      {"moe_num_experts", JsonValue::Int(0), StatusCode::kInvalidArgument,
       "config.json: field \"moe_num_experts\" must be positive, got 0"},
      {"moe_num_shared_experts", JsonValue::Int(-1), StatusCode::kInvalidArgument,
       "config.json: field \"moe_num_shared_experts\" must be >= 0, got -1"},
      {"moe_layer_interval", JsonValue::Int(0), StatusCode::kInvalidArgument,
       "config.json: field \"moe_layer_interval\" must be >= 1, got 0"},
      {"moe_layer_start_index", JsonValue::Int(-2), StatusCode::kInvalidArgument,
       "config.json: field \"moe_layer_start_index\" must be >= 0, got -2"},
      {"moe_layer_end_index", JsonValue::Int(-2), StatusCode::kInvalidArgument,
       "config.json: field \"moe_layer_end_index\" must be -1 (the last layer) or a layer "
       "index, got -2"},
      {"moe_norm_min", JsonValue::Double(-0.5), StatusCode::kInvalidArgument,
       "config.json: field \"moe_norm_min\" must be finite and >= 0, got -0.5"},
      {"use_bias", JsonValue::String("yes"), StatusCode::kInvalidArgument, ""},
      {"hidden_act", JsonValue::String("gelu"), StatusCode::kUnimplemented,
       "config.json: field \"hidden_act\" is \"gelu\"; only \"silu\" is supported"},
      {"rope_scaling",
       JsonValue::MakeObject(
           {{"rope_type", JsonValue::String("dynamic")}, {"factor", JsonValue::Double(2.0)}}),
       StatusCode::kUnimplemented, ""},
  };
  for (const Case& k : cases) {
    StatusOr<Ernie4_5_MoeConfig> c =
        ParseErnie4_5_MoeConfig(With(kErnie45_21B, k.field, k.value), "config.json");
    ASSERT_FALSE(c.ok()) << k.field;
    EXPECT_EQ(c.status().code(), k.code) << c.status().ToString();
    if (!k.message.empty()) {
      EXPECT_EQ(c.status().message(), k.message);
    }
    EXPECT_NE(c.status().message().find("\"" + k.field + "\""), std::string::npos)
        << c.status().ToString();
  }
  StatusOr<Ernie4_5_MoeConfig> c =
      ParseErnie4_5_MoeConfig(Without(kErnie45_21B, "moe_intermediate_size"), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("\"moe_intermediate_size\""), std::string::npos)
      << c.status().ToString();
  c = ParseErnie4_5_MoeConfig(Json(kQwen3_8B), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"architectures\" is [\"Qwen3ForCausalLM\"]; supported "
            "architectures: \"Ernie4_5_MoeForCausalLM\"");
}

// Partial RoPE: a family opts in (DecoderConfigOptions::partial_rotary) and gets the factor,
// read top level or from rope_parameters; every family that does not refuses it.
StatusOr<DecoderConfig> ParseDecoder(const JsonValue& json, const DecoderConfigOptions& options) {
  FieldReader reader(json, "config.json");
  DecoderConfig config;
  MG_RETURN_IF_ERROR(ParseDecoderConfig(reader, "Qwen3ForCausalLM", config, options));
  return config;
}

TEST(DecoderConfig, PartialRotaryIsReadWhereTheFamilyOptsIn) {
  const DecoderConfigOptions partial{.partial_rotary = true};
  StatusOr<DecoderConfig> c = ParseDecoder(Json(kQwen3_8B), partial);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->partial_rotary_factor, 1.0);
  c = ParseDecoder(With(kQwen3_8B, "partial_rotary_factor", JsonValue::Double(0.5)), partial);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->partial_rotary_factor, 0.5);
  // transformers 5 keeps it inside rope_parameters (GLM4-MoE reads it from there).
  c = ParseDecoder(
      With(kQwen3_8B, "rope_parameters",
           JsonValue::MakeObject({{"rope_type", JsonValue::String("default")},
                                  {"rope_theta", JsonValue::Double(10000.0)},
                                  {"partial_rotary_factor", JsonValue::Double(0.25)}})),
      partial);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->partial_rotary_factor, 0.25);
  EXPECT_EQ(c->rope_theta, 10000.0);
}

TEST(DecoderConfig, PartialRotaryMustRotateAnEvenCount) {
  // int(128 * 0.05) = 6 runs; int(128 * 0.01) = 1 and int(128 * 0.004) = 0 do not.
  const DecoderConfigOptions partial{.partial_rotary = true};
  StatusOr<DecoderConfig> c =
      ParseDecoder(With(kQwen3_8B, "partial_rotary_factor", JsonValue::Double(0.05)), partial);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->partial_rotary_factor, 0.05);
  c = ParseDecoder(With(kQwen3_8B, "partial_rotary_factor", JsonValue::Double(0.01)), partial);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"partial_rotary_factor\" is 0.01: int(head_dim 128 * factor) "
            "= 1 rotated values, expected an even count >= 2");
  c = ParseDecoder(With(kQwen3_8B, "partial_rotary_factor", JsonValue::Double(0.004)), partial);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("= 0 rotated values"), std::string::npos)
      << c.status().ToString();
}

// quantization_config as DeepSeek-V3 and Qwen3-FP8 publish it.
JsonValue Fp8Config(std::vector<std::pair<std::string, JsonValue>> fields) {
  JsonValue::Object q = {
      {"activation_scheme", JsonValue::String("dynamic")},
      {"fmt", JsonValue::String("e4m3")},
      {"quant_method", JsonValue::String("fp8")},
      {"weight_block_size", JsonValue::MakeArray({JsonValue::Int(128), JsonValue::Int(128)})}};
  for (auto& [key, value] : fields) {
    bool replaced = false;
    for (auto& [k, v] : q) {
      if (k == key) {
        v = value;
        replaced = true;
      }
    }
    if (!replaced) q.emplace_back(key, value);
  }
  return With(kQwen3_8B, "quantization_config", JsonValue::MakeObject(std::move(q)));
}

TEST(DecoderConfig, ReadsAnFp8BlockQuantizationConfig) {
  StatusOr<DecoderConfig> c = ParseDecoder(Json(kQwen3_8B), {});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->quantization.scheme, QuantScheme::kNone);
  c = ParseDecoder(
      Fp8Config(
          {{"modules_to_not_convert",
            JsonValue::MakeArray({JsonValue::String("lm_head"), JsonValue::String("mlp.gate")})}}),
      {});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->quantization.scheme, QuantScheme::kFp8Block);
  EXPECT_EQ(c->quantization.block_rows, 128);
  EXPECT_EQ(c->quantization.block_cols, 128);
  EXPECT_EQ(c->quantization.Quant(), (WeightQuant{QuantScheme::kFp8Block, 128, 128}));
  EXPECT_TRUE(c->quantization.NotConverted("lm_head.weight"));
  EXPECT_TRUE(c->quantization.NotConverted("model.layers.3.mlp.gate.weight"));
  EXPECT_FALSE(c->quantization.NotConverted("model.layers.3.mlp.gate_proj.weight"));
  EXPECT_FALSE(c->quantization.NotConverted("model.layers.3.mlp.experts.0.up_proj.weight"));
  // A parent module covers its children.
  c = ParseDecoder(
      Fp8Config(
          {{"modules_to_not_convert", JsonValue::MakeArray({JsonValue::String("model.layers.0")})},
           {"weight_block_size", JsonValue::MakeArray({JsonValue::Int(16), JsonValue::Int(32)})}}),
      {});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->quantization.block_rows, 16);
  EXPECT_EQ(c->quantization.block_cols, 32);
  EXPECT_TRUE(c->quantization.NotConverted("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(c->quantization.NotConverted("model.layers.01.self_attn.q_proj.weight"));
}

TEST(DecoderConfig, QuantizationErrorsNameTheField) {
  const std::string q = "config.json quantization_config: field ";
  struct Case {
    JsonValue json;
    StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {Fp8Config({{"quant_method", JsonValue::String("gptq")}}), StatusCode::kUnimplemented,
       q + "\"quant_method\" is \"gptq\"; supported: \"fp8\" (block-scaled e4m3 weights), "
           "\"mxfp4\" (OCP MXFP4 experts)"},
      {Fp8Config({{"fmt", JsonValue::String("e5m2")}}), StatusCode::kUnimplemented,
       q + "\"fmt\" is \"e5m2\"; supported: \"e4m3\""},
      {Fp8Config({{"activation_scheme", JsonValue::String("static")}}), StatusCode::kUnimplemented,
       q + "\"activation_scheme\" is \"static\"; supported: \"dynamic\" (weight-only "
           "dequantization)"},
      {Fp8Config({{"weight_block_size", JsonValue::Null()}}), StatusCode::kUnimplemented,
       q + "\"weight_block_size\" is missing; only block-scaled fp8 ([rows, cols]) is supported"},
      {Fp8Config({{"weight_block_size", JsonValue::MakeArray({JsonValue::Int(128)})}}),
       StatusCode::kInvalidArgument,
       q + "\"weight_block_size\" must be [rows, cols] of two integers >= 1, found [128]"},
      {Fp8Config(
           {{"weight_block_size", JsonValue::MakeArray({JsonValue::Int(0), JsonValue::Int(128)})}}),
       StatusCode::kInvalidArgument,
       q + "\"weight_block_size\" must be [rows, cols] of two integers >= 1, found [0,128]"},
      {Fp8Config({{"modules_to_not_convert", JsonValue::String("lm_head")}}),
       StatusCode::kInvalidArgument,
       q + "\"modules_to_not_convert\" must be an array of strings, found a string"},
      {With(kQwen3_8B, "quantization_config", JsonValue::String("fp8")),
       StatusCode::kInvalidArgument,
       "config.json: field \"quantization_config\" must be an object, found a string"},
  };
  for (const Case& c : cases) {
    StatusOr<DecoderConfig> got = ParseDecoder(c.json, {});
    EXPECT_EQ(got.status().code(), c.code) << got.status().ToString();
    EXPECT_EQ(got.status().message(), c.message);
  }
}

TEST(DecoderConfig, PartialRotaryIsRefusedUnlessTheFamilyOptsIn) {
  StatusOr<DecoderConfig> c =
      ParseDecoder(With(kQwen3_8B, "partial_rotary_factor", JsonValue::Double(0.5)), {});
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "config.json: field \"partial_rotary_factor\" is 0.5; Qwen3ForCausalLM rotates the "
            "whole head (partial rotary is not supported for this architecture)");
  // The registered families do not opt in.
  EXPECT_EQ(ParseQwen2Config(With(kQwen25_7B, "partial_rotary_factor", JsonValue::Double(0.5)),
                             "config.json")
                .status()
                .code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(ParseMixtralConfig(With(kMixtral8x7B, "partial_rotary_factor", JsonValue::Double(0.5)),
                               "config.json")
                .status()
                .code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(ParseQwen3Config(With(kQwen3_8B, "partial_rotary_factor", JsonValue::Double(0.5)),
                             "config.json")
                .status()
                .code(),
            StatusCode::kUnimplemented);
}

// The fields of Z.ai's GLM-4.5-Air config.json.
constexpr const char* kGlm45Air = R"({
  "architectures": ["Glm4MoeForCausalLM"],
  "attention_bias": true, "attention_dropout": 0.0, "pad_token_id": 151329,
  "eos_token_id": [151329, 151336, 151338], "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 4096, "partial_rotary_factor": 0.5, "initializer_range": 0.02,
  "intermediate_size": 10944, "max_position_embeddings": 131072, "model_type": "glm4_moe",
  "moe_intermediate_size": 1408, "norm_topk_prob": true, "num_attention_heads": 96,
  "n_group": 1, "topk_group": 1, "n_routed_experts": 128, "n_shared_experts": 1,
  "routed_scaling_factor": 1.0, "num_experts_per_tok": 8, "first_k_dense_replace": 1,
  "num_hidden_layers": 46, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": null, "rope_theta": 1000000, "num_nextn_predict_layers": 1,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.54.0",
  "use_cache": true, "use_qk_norm": false, "vocab_size": 151552
})";

TEST(Glm4MoeConfig, ParsesThePublishedConfig) {
  StatusOr<Glm4MoeConfig> c = ParseGlm4MoeConfig(Json(kGlm45Air), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "Glm4MoeForCausalLM");
  EXPECT_EQ(c->num_hidden_layers, 46);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->partial_rotary_factor, 0.5);
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->intermediate_size, 10944);
  EXPECT_EQ(c->moe_intermediate_size, 1408);
  EXPECT_EQ(c->n_routed_experts, 128);
  EXPECT_EQ(c->num_experts_per_tok, 8);
  EXPECT_EQ(c->n_shared_experts, 1);
  EXPECT_EQ(c->n_group, 1);
  EXPECT_EQ(c->topk_group, 1);
  EXPECT_EQ(c->first_k_dense_replace, 1);
  EXPECT_EQ(c->routed_scaling_factor, 1.0);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->use_qk_norm);
  EXPECT_EQ(c->num_nextn_predict_layers, 1);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_EQ(c->Describe(),
            "46 layers (45 MoE): 128 experts, top-8, sigmoid router with correction bias, "
            "renormalised, scaling 1.0, 1 shared expert(s), partial rotary 0.5, q/k/v bias, 1 "
            "MTP layer(s) not run");
}

// transformers 5.24's Glm4MoeConfig defaults: partial rotary 0.5 when the field is absent
// everywhere, n_group / topk_group 1, one shared expert, one dense layer, renormalised.
TEST(Glm4MoeConfig, DefaultsAreTransformers) {
  StatusOr<Glm4MoeConfig> c =
      ParseGlm4MoeConfig(Without(kGlm45Air, "partial_rotary_factor"), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->partial_rotary_factor, 0.5);
  c = ParseGlm4MoeConfig(With(kGlm45Air, "partial_rotary_factor", JsonValue::Double(1.0)),
                         "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->partial_rotary_factor, 1.0);
  for (const char* field :
       {"n_group", "topk_group", "n_shared_experts", "first_k_dense_replace", "norm_topk_prob",
        "routed_scaling_factor", "use_qk_norm", "attention_bias", "num_nextn_predict_layers"}) {
    StatusOr<Glm4MoeConfig> d = ParseGlm4MoeConfig(Without(kGlm45Air, field), "config.json");
    EXPECT_TRUE(d.ok()) << field << ": " << d.status().ToString();
  }
  StatusOr<Glm4MoeConfig> d =
      ParseGlm4MoeConfig(Without(kGlm45Air, "attention_bias"), "config.json");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->attention_bias);
  d = ParseGlm4MoeConfig(Without(kGlm45Air, "n_shared_experts"), "config.json");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->n_shared_experts, 1);
  d = ParseGlm4MoeConfig(With(kGlm45Air, "norm_topk_prob", JsonValue::Bool(false)), "config.json");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->norm_topk_prob);
  d = ParseGlm4MoeConfig(Without(kGlm45Air, "norm_topk_prob"), "config.json");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->norm_topk_prob);
  d = ParseGlm4MoeConfig(Without(kGlm45Air, "num_nextn_predict_layers"), "config.json");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->num_nextn_predict_layers, 1);  // transformers' num_mtp_layers default
  // transformers 5.24 writes num_mtp_layers' value as num_nextn_predict_layers; num_mtp_layers
  // alone is read too.
  JsonValue mtp = With(kGlm45Air, "num_nextn_predict_layers", JsonValue::Int(0));
  JsonValue::Object members = mtp.as_object();
  members.erase(std::remove_if(members.begin(), members.end(),
                               [](const auto& m) { return m.first == "num_nextn_predict_layers"; }),
                members.end());
  members.emplace_back("num_mtp_layers", JsonValue::Int(2));
  c = ParseGlm4MoeConfig(JsonValue::MakeObject(std::move(members)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_nextn_predict_layers, 2);
}

TEST(Glm4MoeConfig, ErrorsNameTheField) {
  struct Case {
    const char* field;
    JsonValue value;
    StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {"n_group", JsonValue::Int(3), StatusCode::kInvalidArgument,
       "config.json: field \"n_group\" must divide n_routed_experts = 128 and be in [1, 256], "
       "got 3"},
      {"topk_group", JsonValue::Int(2), StatusCode::kInvalidArgument,
       "config.json: field \"topk_group\" must be in [1, n_group = 1], got 2"},
      {"n_shared_experts", JsonValue::Int(0), StatusCode::kInvalidArgument,
       "config.json: field \"n_shared_experts\" must be >= 1 (Glm4MoeMoE always builds its "
       "shared experts, an MLP of moe_intermediate_size * n_shared_experts), got 0"},
      {"num_experts_per_tok", JsonValue::Int(129), StatusCode::kInvalidArgument,
       "config.json: field \"num_experts_per_tok\" must be in [1, 128] (the experts of "
       "topk_group = 1 groups of 128), got 129"},
      {"first_k_dense_replace", JsonValue::Int(47), StatusCode::kInvalidArgument,
       "config.json: field \"first_k_dense_replace\" must be in [0, num_hidden_layers = 46], "
       "got 47"},
      {"routed_scaling_factor", JsonValue::Double(0.0), StatusCode::kInvalidArgument,
       "config.json: field \"routed_scaling_factor\" must be finite and > 0, got 0.0"},
      {"hidden_act", JsonValue::String("gelu"), StatusCode::kUnimplemented,
       "config.json: field \"hidden_act\" is \"gelu\"; only \"silu\" is supported"},
  };
  for (const Case& k : cases) {
    StatusOr<Glm4MoeConfig> c =
        ParseGlm4MoeConfig(With(kGlm45Air, k.field, k.value), "config.json");
    EXPECT_EQ(c.status().code(), k.code) << k.field;
    EXPECT_EQ(c.status().message(), k.message);
  }
  // Grouped: 128 experts in 8 groups of 16, one kept: top-8 fits, top-17 does not.
  JsonValue grouped = With(kGlm45Air, "n_group", JsonValue::Int(8));
  StatusOr<Glm4MoeConfig> c = ParseGlm4MoeConfig(grouped, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->n_group, 8);
  JsonValue::Object members = grouped.as_object();
  for (auto& [key, value] : members) {
    if (key == "num_experts_per_tok") value = JsonValue::Int(17);
  }
  c = ParseGlm4MoeConfig(JsonValue::MakeObject(std::move(members)), "config.json");
  EXPECT_EQ(c.status().message(),
            "config.json: field \"num_experts_per_tok\" must be in [1, 16] (the experts of "
            "topk_group = 1 groups of 16), got 17");
  StatusOr<Glm4MoeConfig> missing =
      ParseGlm4MoeConfig(Without(kGlm45Air, "n_routed_experts"), "config.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("\"n_routed_experts\""), std::string::npos);
  EXPECT_EQ(ParseGlm4MoeConfig(Json(kQwen3_8B), "config.json").status().code(),
            StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace moegraph
