// Config parsing of the families past Qwen3-MoE: dense Qwen3, Mixtral and Qwen2 (the shared decoder
// fields are read by one parser, so their errors read the same in every family).
#include <gtest/gtest.h>

#include <string>

#include "frontends/decoder_config.h"
#include "frontends/mixtral_config.h"
#include "frontends/qwen2_config.h"
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

}  // namespace
}  // namespace moegraph
