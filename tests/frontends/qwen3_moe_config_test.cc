// Tests for Qwen3-MoE config.json parsing, validation and writing.
#include "frontends/qwen3_moe_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "support/mapped_file.h"

namespace moegraph {
namespace {

// Qwen/Qwen3-30B-A3B's config.json, verbatim.
constexpr const char* kQwen3_30B_A3B = R"({
  "architectures": [
    "Qwen3MoeForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "decoder_sparse_step": 1,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 6144,
  "max_position_embeddings": 40960,
  "max_window_layers": 48,
  "mlp_only_layers": [],
  "model_type": "qwen3_moe",
  "moe_intermediate_size": 768,
  "norm_topk_prob": true,
  "num_attention_heads": 32,
  "num_experts": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 48,
  "num_key_value_heads": 4,
  "output_router_logits": false,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.001,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

JsonValue Qwen3Json() {
  StatusOr<JsonValue> json = ParseJson(kQwen3_30B_A3B, "config.json");
  EXPECT_TRUE(json.ok());
  return *json;
}

StatusOr<Qwen3MoeConfig> ParseWith(const std::string& field, JsonValue value) {
  JsonValue json = Qwen3Json();
  json.Set(field, std::move(value));
  return ParseQwen3MoeConfig(json, "config.json");
}

StatusOr<Qwen3MoeConfig> ParseWithout(const std::string& field) {
  const JsonValue json = Qwen3Json();
  JsonValue::Object members;
  for (const auto& member : json.as_object()) {
    if (member.first != field) members.push_back(member);
  }
  return ParseQwen3MoeConfig(JsonValue::MakeObject(std::move(members)), "config.json");
}

TEST(Qwen3MoeConfigTest, ParsesQwen3_30B_A3B) {
  StatusOr<Qwen3MoeConfig> config = ParseQwen3MoeConfig(Qwen3Json(), "config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->architecture, "Qwen3MoeForCausalLM");
  EXPECT_EQ(config->vocab_size, 151936);
  EXPECT_EQ(config->hidden_size, 2048);
  EXPECT_EQ(config->intermediate_size, 6144);
  EXPECT_EQ(config->moe_intermediate_size, 768);
  EXPECT_EQ(config->num_hidden_layers, 48);
  EXPECT_EQ(config->num_attention_heads, 32);
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_EQ(config->num_experts, 128);
  EXPECT_EQ(config->num_experts_per_tok, 8);
  EXPECT_EQ(config->decoder_sparse_step, 1);
  EXPECT_EQ(config->max_position_embeddings, 40960);
  EXPECT_TRUE(config->mlp_only_layers.empty());
  EXPECT_TRUE(config->norm_topk_prob);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_EQ(config->rms_norm_eps, 1e-6);
  EXPECT_EQ(config->rope_theta, 1e6);
  EXPECT_EQ(config->torch_dtype, "bfloat16");
  for (int64_t layer = 0; layer < 48; ++layer)
    EXPECT_TRUE(config->IsMoeLayer(layer)) << layer;
}

TEST(Qwen3MoeConfigTest, Defaults) {
  JsonValue json = JsonValue::MakeObject({
      {"architectures", JsonValue::MakeArray({JsonValue::String("Qwen3MoeForCausalLM")})},
      {"vocab_size", JsonValue::Int(100)},
      {"hidden_size", JsonValue::Int(64)},
      {"intermediate_size", JsonValue::Int(96)},
      {"moe_intermediate_size", JsonValue::Int(32)},
      {"num_hidden_layers", JsonValue::Int(3)},
      {"num_attention_heads", JsonValue::Int(4)},
      {"num_key_value_heads", JsonValue::Int(2)},
      {"num_experts", JsonValue::Int(4)},
      {"num_experts_per_tok", JsonValue::Int(2)},
      {"head_dim", JsonValue::Null()},  // null means "use the default"
  });
  StatusOr<Qwen3MoeConfig> config = ParseQwen3MoeConfig(json, "tiny.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->head_dim, 16);  // hidden_size / num_attention_heads
  EXPECT_EQ(config->decoder_sparse_step, 1);
  EXPECT_EQ(config->max_position_embeddings, 32768);
  EXPECT_TRUE(config->mlp_only_layers.empty());
  EXPECT_FALSE(config->norm_topk_prob);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_EQ(config->rms_norm_eps, 1e-6);
  EXPECT_EQ(config->rope_theta, 10000.0);
  EXPECT_EQ(config->torch_dtype, "");
}

TEST(Qwen3MoeConfigTest, IsMoeLayerFollowsHuggingFace) {
  Qwen3MoeConfig config;
  config.num_hidden_layers = 6;
  config.num_experts = 4;
  config.decoder_sparse_step = 2;
  config.mlp_only_layers = {3};
  // (layer + 1) % 2 == 0 -> layers 1, 3, 5; layer 3 is forced dense.
  const bool expected[] = {false, true, false, false, false, true};
  for (int64_t layer = 0; layer < 6; ++layer) {
    EXPECT_EQ(config.IsMoeLayer(layer), expected[layer]) << layer;
  }
  config.num_experts = 0;
  for (int64_t layer = 0; layer < 6; ++layer)
    EXPECT_FALSE(config.IsMoeLayer(layer));
}

struct BadCase {
  std::string field;
  JsonValue value;  // null: remove the field
  StatusCode code;
  std::string expected;  // the whole message
};

TEST(Qwen3MoeConfigTest, RejectsBadValuesNamingFileAndField) {
  auto i = [](int64_t v) { return JsonValue::Int(v); };
  auto d = [](double v) { return JsonValue::Double(v); };
  auto s = [](const char* v) { return JsonValue::String(v); };
  const auto kInvalid = StatusCode::kInvalidArgument;
  const auto kUnimplemented = StatusCode::kUnimplemented;
  const BadCase cases[] = {
      {"architectures", JsonValue::MakeArray({s("LlamaForCausalLM")}), kUnimplemented,
       "config.json: field \"architectures\" is [\"LlamaForCausalLM\"]; supported architectures: "
       "\"Qwen3MoeForCausalLM\""},
      {"architectures", JsonValue(), kUnimplemented,
       "config.json: field \"architectures\" is missing; supported architectures: "
       "\"Qwen3MoeForCausalLM\""},
      {"architectures", s("Qwen3MoeForCausalLM"), kInvalid,
       "config.json: field \"architectures\" must be an array of strings, found a string"},
      {"vocab_size", JsonValue(), kInvalid,
       "config.json: field \"vocab_size\" is required (an integer)"},
      {"num_experts_per_tok", JsonValue(), kInvalid,
       "config.json: field \"num_experts_per_tok\" is required (an integer)"},
      {"hidden_size", s("2048"), kInvalid,
       "config.json: field \"hidden_size\" must be an integer, found a string"},
      {"hidden_size", d(2048.5), kInvalid,
       "config.json: field \"hidden_size\" must be an integer, found a non-integer number"},
      {"num_hidden_layers", i(0), kInvalid,
       "config.json: field \"num_hidden_layers\" must be positive, got 0"},
      {"vocab_size", i(-1), kInvalid, "config.json: field \"vocab_size\" must be positive, got -1"},
      {"moe_intermediate_size", i(0), kInvalid,
       "config.json: field \"moe_intermediate_size\" must be positive, got 0"},
      {"max_position_embeddings", i(0), kInvalid,
       "config.json: field \"max_position_embeddings\" must be positive, got 0"},
      {"num_key_value_heads", i(5), kInvalid,
       "config.json: field \"num_key_value_heads\" must divide num_attention_heads (32), got 5"},
      {"head_dim", i(127), kInvalid,
       "config.json: field \"head_dim\" must be even (RoPE rotates pairs), got 127"},
      {"head_dim", i(0), kInvalid, "config.json: field \"head_dim\" must be positive, got 0"},
      {"num_experts_per_tok", i(129), kInvalid,
       "config.json: field \"num_experts_per_tok\" must be in [1, num_experts = 128], got 129"},
      {"num_experts_per_tok", i(0), kInvalid,
       "config.json: field \"num_experts_per_tok\" must be in [1, num_experts = 128], got 0"},
      {"num_experts", i(-1), kInvalid, "config.json: field \"num_experts\" must be >= 0, got -1"},
      {"decoder_sparse_step", i(0), kInvalid,
       "config.json: field \"decoder_sparse_step\" must be >= 1, got 0"},
      {"mlp_only_layers", JsonValue::MakeArray({i(0), i(48)}), kInvalid,
       "config.json: field \"mlp_only_layers\" entries must be integers in [0, "
       "num_hidden_layers = 48), found 48"},
      {"mlp_only_layers", JsonValue::MakeArray({i(-1)}), kInvalid,
       "config.json: field \"mlp_only_layers\" entries must be integers in [0, "
       "num_hidden_layers = 48), found -1"},
      {"mlp_only_layers", i(3), kInvalid,
       "config.json: field \"mlp_only_layers\" must be an array of layer indices, found an "
       "integer"},
      {"rms_norm_eps", d(0.0), kInvalid,
       "config.json: field \"rms_norm_eps\" must be positive, got 0.0"},
      {"rms_norm_eps", s("1e-6"), kInvalid,
       "config.json: field \"rms_norm_eps\" must be a number, found a string"},
      {"rope_theta", d(-1.0), kInvalid,
       "config.json: field \"rope_theta\" must be positive, got -1.0"},
      {"norm_topk_prob", i(1), kInvalid,
       "config.json: field \"norm_topk_prob\" must be true or false, found an integer"},
      {"torch_dtype", i(16), kInvalid,
       "config.json: field \"torch_dtype\" must be a string, found an integer"},
      {"hidden_act", s("gelu"), kUnimplemented,
       "config.json: field \"hidden_act\" is \"gelu\"; only \"silu\" is supported"},
      {"attention_bias", JsonValue::Bool(true), kUnimplemented,
       "config.json: field \"attention_bias\" is true; attention projections without bias only"},
      {"use_sliding_window", JsonValue::Bool(true), kUnimplemented,
       "config.json: field \"use_sliding_window\" is true; sliding-window attention is not "
       "supported"},
      {"rope_scaling", s("linear"), kInvalid,
       "config.json: field \"rope_scaling\" must be null or an object, found a string"},
      // Dynamic NTK is parsed, then refused: its table grows with the sequence.
      {"rope_scaling", JsonValue::MakeObject({{"type", s("dynamic")}, {"factor", d(2.0)}}),
       kUnimplemented,
       "config.json: field \"rope_scaling\" has rope_type \"dynamic\" ({\"type\":\"dynamic\","
       "\"factor\":2.0}); NTK-aware RoPE rescales theta with the sequence length, and the rope "
       "op rotates by one fixed table (default, linear, yarn and llama3 run)"},
      {"rope_scaling", JsonValue::MakeObject({{"rope_type", s("longrope")}}), kUnimplemented,
       "config.json: field \"rope_scaling\" has rope_type \"longrope\"; supported: default, "
       "linear, dynamic, yarn, llama3"},
      {"rope_scaling", JsonValue::MakeObject({{"rope_type", s("linear")}}), kInvalid,
       "config.json: field \"rope_scaling\" rope_type \"linear\" needs a factor"},
      {"rope_scaling", JsonValue::MakeObject({{"rope_type", s("linear")}, {"factor", d(0.5)}}),
       kInvalid, "config.json: field \"rope_scaling\" factor must be >= 1, got 0.5"},
      {"partial_rotary_factor", d(0.5), kUnimplemented,
       "config.json: field \"partial_rotary_factor\" is 0.5; Qwen3MoeForCausalLM rotates the "
       "whole head (partial rotary is not supported for this architecture)"},
  };
  for (const BadCase& c : cases) {
    StatusOr<Qwen3MoeConfig> config =
        c.value.is_null() ? ParseWithout(c.field) : ParseWith(c.field, c.value);
    ASSERT_FALSE(config.ok()) << c.expected;
    EXPECT_EQ(config.status().code(), c.code) << c.expected;
    EXPECT_EQ(config.status().message(), c.expected);
  }
  StatusOr<Qwen3MoeConfig> not_object = ParseQwen3MoeConfig(JsonValue::MakeArray(), "config.json");
  EXPECT_EQ(not_object.status().message(), "config.json: expected a JSON object, found an array");
}

TEST(Qwen3MoeConfigTest, HeadDimDefaultNeedsDivisibleHiddenSize) {
  JsonValue json = Qwen3Json();
  json.Set("hidden_size", JsonValue::Int(2050));
  json.Set("head_dim", JsonValue::Null());
  StatusOr<Qwen3MoeConfig> config = ParseQwen3MoeConfig(json, "config.json");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(),
            "config.json: field \"head_dim\" is absent and hidden_size (2050) is not a multiple "
            "of num_attention_heads (32); give head_dim explicitly");
}

TEST(Qwen3MoeConfigTest, AcceptsUnscaledRopeParameters) {
  // transformers 5 moves rope_theta into rope_parameters.
  JsonValue json = Qwen3Json();
  json.Set("rope_parameters", JsonValue::MakeObject({{"rope_type", JsonValue::String("default")},
                                                     {"rope_theta", JsonValue::Double(5e5)}}));
  json.Set("rope_scaling", JsonValue::MakeObject({{"type", JsonValue::String("default")}}));
  StatusOr<Qwen3MoeConfig> config = ParseQwen3MoeConfig(json, "config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->rope_theta, 5e5);
}

TEST(Qwen3MoeConfigTest, AcceptsWhatTransformers5Writes) {
  // Qwen3MoeConfig.from_pretrained(<demo model>).save_pretrained() with transformers 5.24:
  // num_local_experts, dtype and rope_parameters replace num_experts, torch_dtype, rope_theta.
  constexpr const char* kSaved = R"({
  "architectures": [
    "Qwen3MoeForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": null,
  "decoder_sparse_step": 1,
  "dtype": "float32",
  "eos_token_id": null,
  "head_dim": 32,
  "hidden_act": "silu",
  "hidden_size": 128,
  "initializer_range": 0.02,
  "intermediate_size": 256,
  "max_position_embeddings": 2048,
  "max_window_layers": 4,
  "mlp_only_layers": [
    2
  ],
  "model_type": "qwen3_moe",
  "moe_intermediate_size": 64,
  "norm_topk_prob": true,
  "num_attention_heads": 4,
  "num_experts_per_tok": 2,
  "num_hidden_layers": 4,
  "num_key_value_heads": 2,
  "num_local_experts": 8,
  "output_router_logits": false,
  "pad_token_id": null,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {
    "rope_theta": 10000.0,
    "rope_type": "default"
  },
  "router_aux_loss_coef": 0.001,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "transformers_version": "5.24.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 512
})";
  StatusOr<JsonValue> json = ParseJson(kSaved, "config.json");
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  StatusOr<Qwen3MoeConfig> config = ParseQwen3MoeConfig(*json, "config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->num_experts, 8);
  EXPECT_EQ(config->torch_dtype, "float32");
  EXPECT_EQ(config->rope_theta, 10000.0);
  EXPECT_EQ(config->mlp_only_layers, std::vector<int64_t>{2});
  EXPECT_TRUE(config->norm_topk_prob);
}

TEST(Qwen3MoeConfigTest, ZeroExpertsMeansAllLayersDense) {
  StatusOr<Qwen3MoeConfig> config = ParseWith("num_experts", JsonValue::Int(0));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_FALSE(config->IsMoeLayer(0));
}

TEST(Qwen3MoeConfigTest, ToJsonRoundTrips) {
  StatusOr<Qwen3MoeConfig> config = ParseQwen3MoeConfig(Qwen3Json(), "config.json");
  ASSERT_TRUE(config.ok());
  config->mlp_only_layers = {0, 47};
  config->decoder_sparse_step = 2;
  config->tie_word_embeddings = true;
  const std::string text = config->ToJson();
  StatusOr<JsonValue> json = ParseJson(text, "written.json");
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(json->Find("model_type")->as_string(), "qwen3_moe");
  EXPECT_EQ(json->Find("hidden_act")->as_string(), "silu");
  EXPECT_TRUE(json->Find("rope_scaling")->is_null());
  EXPECT_FALSE(json->Find("use_sliding_window")->as_bool());
  EXPECT_FALSE(json->Find("attention_bias")->as_bool());
  EXPECT_EQ(json->Find("rope_theta")->Dump(), "1000000.0");
  EXPECT_EQ(json->Find("rms_norm_eps")->Dump(), "1e-06");
  StatusOr<Qwen3MoeConfig> back = ParseQwen3MoeConfig(*json, "written.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *config);
  EXPECT_EQ(back->ToJson(), text);
}

TEST(Qwen3MoeConfigTest, LoadsFromFile) {
  const std::string path =
      ::testing::TempDir() + "qwen3_moe_config_test_" + std::to_string(::getpid()) + "_config.json";
  ASSERT_TRUE(WriteFileAtomically(path, kQwen3_30B_A3B).ok());
  StatusOr<Qwen3MoeConfig> config = LoadQwen3MoeConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->vocab_size, 151936);

  ASSERT_TRUE(WriteFileAtomically(path, "{\"vocab_size\": 1,}").ok());
  StatusOr<Qwen3MoeConfig> broken = LoadQwen3MoeConfig(path);
  EXPECT_EQ(broken.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(broken.status().message(),
            path + ":1:18: expected '\"' to start an object key, found '}'");
  EXPECT_EQ(LoadQwen3MoeConfig(path + ".missing").status().code(), StatusCode::kNotFound);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace moegraph
