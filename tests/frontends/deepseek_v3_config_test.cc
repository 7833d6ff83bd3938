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
// null (YaRN's published values are the YarnRope tests').
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
}

JsonValue Yarn(const char* field, double mscale, double mscale_all_dim) {
  JsonValue::Object yarn;
  yarn.emplace_back(std::string(field) == "rope_scaling" ? "type" : "rope_type",
                    JsonValue::String("yarn"));
  yarn.emplace_back("beta_fast", JsonValue::Int(32));
  yarn.emplace_back("beta_slow", JsonValue::Int(1));
  yarn.emplace_back("factor", JsonValue::Double(40.0));
  if (mscale != 0) yarn.emplace_back("mscale", JsonValue::Double(mscale));
  if (mscale_all_dim != 0) yarn.emplace_back("mscale_all_dim", JsonValue::Double(mscale_all_dim));
  yarn.emplace_back("original_max_position_embeddings", JsonValue::Int(4096));
  return With(field, JsonValue::MakeObject(std::move(yarn)));
}

// The published rope_scaling (yarn, factor 40 over 4096, mscale = mscale_all_dim = 1) as
// rope_scaling (transformers 4) or rope_parameters (5): the softmax scale is
// qk_head_dim^-0.5 * (0.1 ln 40 + 1)^2 (yarn_apply_mscale).
TEST(DeepseekV3Config, ParsesThePublishedYarn) {
  for (const char* field : {"rope_scaling", "rope_parameters"}) {
    SCOPED_TRACE(field);
    StatusOr<DeepseekV3Config> c = ParseDeepseekV3Config(Yarn(field, 1.0, 1.0), "config.json");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->rope.type, RopeType::kYarn);
    EXPECT_EQ(c->rope.factor, 40.0);
    EXPECT_EQ(c->rope.original_max_position_embeddings, 4096);
    EXPECT_EQ(c->rope.beta_fast, 32.0);
    EXPECT_EQ(c->rope.beta_slow, 1.0);
    EXPECT_EQ(c->rope.mscale, 1.0);
    EXPECT_EQ(c->rope.mscale_all_dim, 1.0);
    const double mscale = 0.1 * std::log(40.0) + 1.0;
    EXPECT_DOUBLE_EQ(c->Scale(), mscale * mscale / std::sqrt(192.0));
  }
}

// mscale != mscale_all_dim: the rope's attention factor is their get_mscale ratio, the softmax
// scale takes mscale_all_dim alone; without mscale_all_dim the scale is unscaled and the
// attention factor 0.1 ln(factor) + 1.
TEST(DeepseekV3Config, YarnMscaleTermsSplitBetweenRopeAndScale) {
  const double m = 0.1 * std::log(40.0) + 1.0;
  StatusOr<DeepseekV3Config> c =
      ParseDeepseekV3Config(Yarn("rope_scaling", 0.707, 1.0), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->Scale(), m * m / std::sqrt(192.0));
  StatusOr<RopeOpScaling> op = RopeScalingForOp(c->rope, c->qk_rope_head_dim);
  ASSERT_TRUE(op.ok()) << op.status().ToString();
  EXPECT_DOUBLE_EQ(op->attention_factor, (0.0707 * std::log(40.0) + 1.0) / m);

  c = ParseDeepseekV3Config(Yarn("rope_scaling", 0, 0), "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->Scale(), 1.0 / std::sqrt(192.0));
  op = RopeScalingForOp(c->rope, c->qk_rope_head_dim);
  ASSERT_TRUE(op.ok()) << op.status().ToString();
  EXPECT_DOUBLE_EQ(op->attention_factor, m);
}

// Dynamic NTK is refused naming the field; an unknown type lists the supported ones.
TEST(DeepseekV3Config, RefusesRopeTypesTheRopeOpLacks) {
  for (const char* type : {"dynamic", "longrope"}) {
    SCOPED_TRACE(type);
    JsonValue::Object rope;
    rope.emplace_back("type", JsonValue::String(type));
    rope.emplace_back("factor", JsonValue::Double(4.0));
    StatusOr<DeepseekV3Config> c = ParseDeepseekV3Config(
        With("rope_scaling", JsonValue::MakeObject(std::move(rope))), "config.json");
    EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented) << c.status().ToString();
    EXPECT_NE(c.status().message().find("config.json: field \"rope_scaling\""), std::string::npos)
        << c.status().ToString();
  }
}

}  // namespace
}  // namespace moegraph
