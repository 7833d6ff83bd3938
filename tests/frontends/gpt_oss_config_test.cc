// Config parsing of GPT-OSS (GptOssForCausalLM): the published gpt-oss-20b config.json, the
// fields the engine cannot run yet, transformers' defaults and the errors.
#include "frontends/gpt_oss_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace moegraph {
namespace {

// OpenAI's gpt-oss-20b config.json (MXFP4 experts, YaRN).
constexpr const char* kGptOss20B = R"({
  "architectures": ["GptOssForCausalLM"], "attention_bias": true, "attention_dropout": 0.0,
  "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2880, "initial_context_length": 4096, "initializer_range": 0.02,
  "intermediate_size": 2880,
  "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention"],
  "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64,
  "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 8,
  "num_local_experts": 32, "output_router_logits": false, "pad_token_id": 199999,
  "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn",
    "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
    "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false},
  "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128,
  "swiglu_limit": 7.0, "tie_word_embeddings": false, "transformers_version": "4.55.0.dev0",
  "use_cache": true, "vocab_size": 201088
})";

JsonValue Json(const char* text) {
  StatusOr<JsonValue> json = ParseJson(text, "config.json");
  EXPECT_TRUE(json.ok());
  return *json;
}

JsonValue Json(const std::string& text) {
  return Json(text.c_str());
}

// The published config with `field` set to `value` (JSON text), or removed when `value` is
// empty.
JsonValue Edited(const std::string& field, const std::string& value) {
  JsonValue json = Json(kGptOss20B);
  JsonValue::Object members;
  for (const auto& [key, v] : json.as_object()) {
    if (key != field) members.emplace_back(key, v);
  }
  if (!value.empty()) members.emplace_back(field, Json(value));
  return JsonValue::MakeObject(std::move(members));
}

// gpt-oss-20b unquantized and with plain RoPE: what the engine runs today.
JsonValue Runnable() {
  JsonValue json = Edited("quantization_config", "");
  JsonValue::Object members;
  for (const auto& [key, v] : json.as_object()) {
    if (key != "rope_scaling") members.emplace_back(key, v);
  }
  members.emplace_back("rope_parameters",
                       Json(R"({"rope_type": "default", "rope_theta": 150000})"));
  return JsonValue::MakeObject(std::move(members));
}

JsonValue RunnableWith(const std::string& field, const std::string& value) {
  JsonValue json = Runnable();
  JsonValue::Object members;
  for (const auto& [key, v] : json.as_object()) {
    if (key != field) members.emplace_back(key, v);
  }
  if (!value.empty()) members.emplace_back(field, Json(value));
  return JsonValue::MakeObject(std::move(members));
}

void ExpectError(const JsonValue& json, StatusCode code, const std::string& field) {
  StatusOr<GptOssConfig> c = ParseGptOssConfig(json, "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), code) << c.status().ToString();
  EXPECT_NE(c.status().message().find(field), std::string::npos) << c.status().ToString();
}

TEST(GptOssConfig, ThePublishedConfigReadsItsMxfp4Experts) {
  StatusOr<GptOssConfig> c = ParseGptOssConfig(Json(kGptOss20B), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const QuantizationConfig& q = c->quantization;
  EXPECT_EQ(q.scheme, QuantScheme::kMxfp4);
  EXPECT_EQ(q.block_rows, 1);
  EXPECT_EQ(q.block_cols, 32);
  // "model.layers.*.self_attn" covers every layer's attention; the experts are converted.
  EXPECT_TRUE(q.NotConverted("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(q.NotConverted("model.layers.23.self_attn.sinks"));
  EXPECT_TRUE(q.NotConverted("model.layers.7.mlp.router.weight"));
  EXPECT_TRUE(q.NotConverted("model.embed_tokens.weight"));
  EXPECT_TRUE(q.NotConverted("lm_head.weight"));
  EXPECT_FALSE(q.NotConverted("model.layers.7.mlp.experts.gate_up_proj_blocks"));
  EXPECT_FALSE(q.NotConverted("model.layers.self_attn.q_proj.weight"));
}

TEST(GptOssConfig, Fp8IsNotAGptOssFormat) {
  ExpectError(
      Edited("quantization_config", R"({"quant_method": "fp8", "weight_block_size": [128, 128]})"),
      StatusCode::kUnimplemented, "quantization_config");
}

TEST(GptOssConfig, ReadsThePublishedYarn) {
  StatusOr<GptOssConfig> c = ParseGptOssConfig(Edited("quantization_config", ""), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope.type, RopeType::kYarn);
  EXPECT_EQ(c->rope.factor, 32.0);
  EXPECT_EQ(c->rope.beta_fast, 32.0);
  EXPECT_EQ(c->rope.beta_slow, 1.0);
  EXPECT_FALSE(c->rope.truncate);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 4096);
}

TEST(GptOssConfig, AbsentRopeParametersAreTransformersYarn) {
  JsonValue json = Edited("quantization_config", "");
  JsonValue::Object members;
  for (const auto& [key, v] : json.as_object()) {
    if (key != "rope_scaling") members.emplace_back(key, v);
  }
  StatusOr<GptOssConfig> c =
      ParseGptOssConfig(JsonValue::MakeObject(std::move(members)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope.type, RopeType::kYarn);
  EXPECT_EQ(c->rope.factor, 32.0);
  EXPECT_EQ(c->rope.beta_fast, 32.0);
  EXPECT_EQ(c->rope.beta_slow, 1.0);
  EXPECT_FALSE(c->rope.truncate);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 4096);
  // An explicit default rope stays plain.
  StatusOr<GptOssConfig> plain = ParseGptOssConfig(Runnable(), "config.json");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->rope.type, RopeType::kDefault);
}

// moegraph-bench's bench-gptoss: gpt-oss-20b's per-layer shapes and YaRN, two layers (one
// sliding, one full), a 32000-token vocabulary.
TEST(GptOssConfig, TheBenchConfigHasGptOss20bLayers) {
  std::ifstream in(std::string(MOEGRAPH_TEST_DATA_DIR) + "/../../bench/configs/bench-gptoss.json");
  ASSERT_TRUE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  StatusOr<GptOssConfig> c = ParseGptOssConfig(Json(text.str()), "bench-gptoss.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  StatusOr<GptOssConfig> published =
      ParseGptOssConfig(Edited("quantization_config", ""), "config.json");
  ASSERT_TRUE(published.ok()) << published.status().ToString();
  EXPECT_EQ(c->hidden_size, published->hidden_size);
  EXPECT_EQ(c->intermediate_size, published->intermediate_size);
  EXPECT_EQ(c->num_attention_heads, published->num_attention_heads);
  EXPECT_EQ(c->num_key_value_heads, published->num_key_value_heads);
  EXPECT_EQ(c->head_dim, published->head_dim);
  EXPECT_EQ(c->num_local_experts, published->num_local_experts);
  EXPECT_EQ(c->num_experts_per_tok, published->num_experts_per_tok);
  EXPECT_EQ(c->sliding_window, published->sliding_window);
  EXPECT_EQ(c->rope, published->rope);
  EXPECT_EQ(c->num_hidden_layers, 2);
  EXPECT_TRUE(c->IsSlidingLayer(0));
  EXPECT_FALSE(c->IsSlidingLayer(1));
}

TEST(GptOssConfig, ParsesTheShapesLayerTypesAndExpertFields) {
  StatusOr<GptOssConfig> c = ParseGptOssConfig(Runnable(), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "GptOssForCausalLM");
  EXPECT_EQ(c->hidden_size, 2880);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->num_attention_heads, 64);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->intermediate_size, 2880);
  EXPECT_EQ(c->num_local_experts, 32);
  EXPECT_EQ(c->num_experts_per_tok, 4);
  EXPECT_EQ(c->sliding_window, 128);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_theta, 150000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->swiglu_alpha, 1.702);  // not in the published config: transformers' default
  EXPECT_EQ(c->swiglu_limit, 7.0);
  ASSERT_EQ(c->sliding_layers.size(), 24u);
  for (int64_t layer = 0; layer < 24; ++layer)
    EXPECT_EQ(c->IsSlidingLayer(layer), layer % 2 == 0) << layer;
  EXPECT_EQ(c->Describe(),
            "24 layers (12 sliding, window 128): 32 experts, top-4, router and expert biases, "
            "clamped SwiGLU (alpha 1.702, limit 7.0), attention sinks, q/k/v/o bias");
}

TEST(GptOssConfig, LayerTypesDefaultToSlidingOnEvenLayers) {
  StatusOr<GptOssConfig> c = ParseGptOssConfig(RunnableWith("layer_types", ""), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  for (int64_t layer = 0; layer < 24; ++layer)
    EXPECT_EQ(c->IsSlidingLayer(layer), layer % 2 == 0) << layer;
  c = ParseGptOssConfig(
      RunnableWith(
          "layer_types",
          R"(["full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention"])"),
      "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->IsSlidingLayer(0));
  EXPECT_TRUE(c->IsSlidingLayer(1));
  EXPECT_TRUE(c->IsSlidingLayer(23));
}

TEST(GptOssConfig, SwigluAlphaAndLimitAreRead) {
  StatusOr<GptOssConfig> c = ParseGptOssConfig(RunnableWith("swiglu_limit", "5.5"), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->swiglu_limit, 5.5);
  c = ParseGptOssConfig(RunnableWith("swiglu_alpha", "1.5"), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->swiglu_alpha, 1.5);
}

TEST(GptOssConfig, BadValuesNameTheirField) {
  ExpectError(RunnableWith("num_experts_per_tok", "33"), StatusCode::kInvalidArgument,
              "num_experts_per_tok");
  ExpectError(RunnableWith("swiglu_limit", "0"), StatusCode::kInvalidArgument, "swiglu_limit");
  ExpectError(RunnableWith("layer_types", R"(["sliding_attention"])"), StatusCode::kInvalidArgument,
              "layer_types");
  ExpectError(
      RunnableWith(
          "layer_types",
          R"(["full_attention", "full_attention", "full_attention", "chunked_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention"])"),
      StatusCode::kInvalidArgument, "layer_types");
  ExpectError(RunnableWith("sliding_window", "null"), StatusCode::kInvalidArgument,
              "sliding_window");
  ExpectError(RunnableWith("sliding_window", "0"), StatusCode::kInvalidArgument, "sliding_window");
  ExpectError(RunnableWith("num_local_experts", ""), StatusCode::kInvalidArgument,
              "num_local_experts");
  ExpectError(RunnableWith("hidden_act", R"("gelu")"), StatusCode::kUnimplemented, "hidden_act");
}

}  // namespace
}  // namespace moegraph
