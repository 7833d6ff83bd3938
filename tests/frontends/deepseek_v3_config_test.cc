// DeepseekV3ForCausalLM config.json parsing: the published config's fields, transformers'
// defaults, q_lora_rank null, the MTP layer count and the errors naming the field.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "frontends/deepseek_v3_config.h"
#include "support/json.h"

namespace moegraph {
namespace {

// deepseek-ai/DeepSeek-V3's config.json without its quantization_config and with rope_scaling
// null (YaRN waits for scaled RoPE; the FP8 weights are another issue's).
constexpr const char* kDeepseekV3 = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 1,
  "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168,
  "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
  "max_position_embeddings": 163840, "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
  "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 128,
  "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 10000,
  "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": false,
  "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
  "transformers_version": "4.46.3", "use_cache": true, "v_head_dim": 128, "vocab_size": 129280
})";

JsonValue Json() {
  StatusOr<JsonValue> json = ParseJson(kDeepseekV3, "config.json");
  EXPECT_TRUE(json.ok());
  return json.ok() ? *json : JsonValue::Null();
}

JsonValue With(const std::string& field, JsonValue value) {
  JsonValue::Object members = Json().as_object();
  bool replaced = false;
  for (auto& [key, v] : members) {
    if (key == field) {
      v = value;
      replaced = true;
    }
  }
  if (!replaced) members.emplace_back(field, std::move(value));
  return JsonValue::MakeObject(std::move(members));
}

JsonValue Without(const std::string& field) {
  const JsonValue json = Json();
  JsonValue::Object members;
  for (const auto& [key, v] : json.as_object()) {
    if (key != field) members.emplace_back(key, v);
  }
  return JsonValue::MakeObject(std::move(members));
}

TEST(DeepseekV3Config, ParsesThePublishedConfig) {
  StatusOr<DeepseekV3Config> c = ParseDeepseekV3Config(Json(), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->architecture, "DeepseekV3ForCausalLM");
  EXPECT_EQ(c->num_hidden_layers, 61);
  EXPECT_EQ(c->q_lora_rank, 1536);
  EXPECT_EQ(c->kv_lora_rank, 512);
  EXPECT_EQ(c->qk_nope_head_dim, 128);
  EXPECT_EQ(c->qk_rope_head_dim, 64);
  EXPECT_EQ(c->v_head_dim, 128);
  EXPECT_EQ(c->qk_head_dim(), 192);
  EXPECT_DOUBLE_EQ(c->Scale(), 1.0 / std::sqrt(192.0));
  EXPECT_EQ(c->n_routed_experts, 256);
  EXPECT_EQ(c->num_experts_per_tok, 8);
  EXPECT_EQ(c->n_group, 8);
  EXPECT_EQ(c->topk_group, 4);
  EXPECT_EQ(c->first_k_dense_replace, 3);
  EXPECT_EQ(c->routed_scaling_factor, 2.5);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_TRUE(c->rope_interleave);  // absent: transformers' default
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->num_nextn_predict_layers, 1);
  EXPECT_FALSE(c->IsMoeLayer(2));
  EXPECT_TRUE(c->IsMoeLayer(3));
  EXPECT_EQ(c->Describe(),
            "61 layers (58 MoE): 256 experts, top-8, sigmoid router with correction bias, 8 "
            "groups keep 4, renormalised, scaling 2.5, 1 shared expert(s), partial rotary 1.0, 1 "
            "MTP layer(s) not run; MLA: 128 heads, q_lora_rank 1536, kv_lora_rank 512, qk_nope "
            "128, qk_rope 64 (interleaved), v_head 128");
}

TEST(DeepseekV3Config, QLoraRankNullIsAPlainQProjAndAbsentIsTheDefault) {
  StatusOr<DeepseekV3Config> c =
      ParseDeepseekV3Config(With("q_lora_rank", JsonValue::Null()), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->q_lora_rank, 0);
  c = ParseDeepseekV3Config(Without("q_lora_rank"), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->q_lora_rank, 1536);
  c = ParseDeepseekV3Config(With("rope_interleave", JsonValue::Bool(false)), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->rope_interleave);
  c = ParseDeepseekV3Config(Without("num_nextn_predict_layers"), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_nextn_predict_layers, 1);  // transformers' num_mtp_layers default
}

TEST(DeepseekV3Config, ErrorsNameTheField) {
  struct Case {
    const char* field;
    JsonValue value;
    StatusCode code;
    std::string message;
  };
  const Case cases[] = {
      {"qk_rope_head_dim", JsonValue::Int(63), StatusCode::kInvalidArgument,
       "config.json: field \"qk_rope_head_dim\" must be even (RoPE rotates pairs), got 63"},
      {"kv_lora_rank", JsonValue::Int(0), StatusCode::kInvalidArgument,
       "config.json: field \"kv_lora_rank\" must be in [1, 4096], got 0"},
      {"v_head_dim", JsonValue::Int(5000), StatusCode::kInvalidArgument,
       "config.json: field \"v_head_dim\" must be in [1, 4096], got 5000"},
      {"q_lora_rank", JsonValue::Int(0), StatusCode::kInvalidArgument, ""},
      {"n_group", JsonValue::Int(3), StatusCode::kInvalidArgument,
       "config.json: field \"n_group\" must divide n_routed_experts = 256 and be in [1, 256], "
       "got 3"},
      {"topk_group", JsonValue::Int(9), StatusCode::kInvalidArgument,
       "config.json: field \"topk_group\" must be in [1, n_group = 8], got 9"},
      {"hidden_act", JsonValue::String("gelu"), StatusCode::kUnimplemented,
       "config.json: field \"hidden_act\" is \"gelu\"; only \"silu\" is supported"},
  };
  for (const Case& k : cases) {
    StatusOr<DeepseekV3Config> c = ParseDeepseekV3Config(With(k.field, k.value), "config.json");
    EXPECT_EQ(c.status().code(), k.code) << k.field;
    if (!k.message.empty()) {
      EXPECT_EQ(c.status().message(), k.message);
    }
    EXPECT_NE(c.status().message().find(k.field), std::string::npos) << c.status().ToString();
  }
  // YaRN (the published rope_scaling) is refused naming the field until scaled RoPE lands.
  JsonValue::Object yarn;
  yarn.emplace_back("type", JsonValue::String("yarn"));
  yarn.emplace_back("factor", JsonValue::Double(40.0));
  yarn.emplace_back("original_max_position_embeddings", JsonValue::Int(4096));
  StatusOr<DeepseekV3Config> c = ParseDeepseekV3Config(
      With("rope_scaling", JsonValue::MakeObject(std::move(yarn))), "config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(c.status().message().find("rope_scaling"), std::string::npos) << c.status().ToString();
}

}  // namespace
}  // namespace moegraph
