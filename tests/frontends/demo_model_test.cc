// Tests for the built-in demo model checkpoint.
#include "frontends/demo_model.h"
#include "tests/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "frontends/family.h"
#include "frontends/hf_model.h"
#include "support/half.h"
#include "support/mapped_file.h"
#include "tokenizer/generation_config.h"
#include "tokenizer/tokenizer.h"

namespace moegraph {
namespace {

class DemoModelTest : public testing::TempDirTest {};

// Every tensor name the demo model must have, with its shape.
std::map<std::string, std::vector<int64_t>> ExpectedShapes() {
  std::map<std::string, std::vector<int64_t>> shapes;
  shapes["model.embed_tokens.weight"] = {512, 128};
  shapes["model.norm.weight"] = {128};
  shapes["lm_head.weight"] = {512, 128};
  for (int layer = 0; layer < 4; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    shapes[p + "input_layernorm.weight"] = {128};
    shapes[p + "post_attention_layernorm.weight"] = {128};
    shapes[p + "self_attn.q_proj.weight"] = {128, 128};
    shapes[p + "self_attn.k_proj.weight"] = {64, 128};
    shapes[p + "self_attn.v_proj.weight"] = {64, 128};
    shapes[p + "self_attn.o_proj.weight"] = {128, 128};
    shapes[p + "self_attn.q_norm.weight"] = {32};
    shapes[p + "self_attn.k_norm.weight"] = {32};
    if (layer == 2) {  // mlp_only_layers
      shapes[p + "mlp.gate_proj.weight"] = {256, 128};
      shapes[p + "mlp.up_proj.weight"] = {256, 128};
      shapes[p + "mlp.down_proj.weight"] = {128, 256};
    } else {
      shapes[p + "mlp.gate.weight"] = {8, 128};
      for (int e = 0; e < 8; ++e) {
        const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
        shapes[x + "gate_proj.weight"] = {64, 128};
        shapes[x + "up_proj.weight"] = {64, 128};
        shapes[x + "down_proj.weight"] = {128, 64};
      }
    }
  }
  return shapes;
}

std::vector<float> ToF32(const SafetensorsTensor& tensor) {
  std::vector<float> out(tensor.bytes / DTypeBytes(tensor.dtype));
  for (size_t i = 0; i < out.size(); ++i) {
    if (tensor.dtype == DType::kF32) {
      std::memcpy(&out[i], tensor.data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, tensor.data + 2 * i, 2);
      out[i] = tensor.dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
    }
  }
  return out;
}

void MeanAndStddev(const std::vector<float>& values, double& mean, double& stddev) {
  double sum = 0, sum_sq = 0;
  for (float v : values)
    sum += v;
  mean = sum / static_cast<double>(values.size());
  for (float v : values)
    sum_sq += (v - mean) * (v - mean);
  stddev = std::sqrt(sum_sq / static_cast<double>(values.size()));
}

TEST_F(DemoModelTest, ConfigMatchesTheSpec) {
  Qwen3MoeConfig config = DemoModelConfig();
  EXPECT_EQ(config.vocab_size, 512);
  EXPECT_EQ(config.hidden_size, 128);
  EXPECT_EQ(config.head_dim * config.num_attention_heads, 128);
  EXPECT_EQ(config.num_key_value_heads, 2);
  EXPECT_EQ(config.num_experts, 8);
  EXPECT_EQ(config.num_experts_per_tok, 2);
  EXPECT_TRUE(config.norm_topk_prob);
  EXPECT_EQ(config.mlp_only_layers, std::vector<int64_t>{2});
  EXPECT_EQ(config.max_position_embeddings, 2048);
  EXPECT_TRUE(config.IsMoeLayer(0));
  EXPECT_FALSE(config.IsMoeLayer(2));
  // It is a valid config.
  StatusOr<JsonValue> json = ParseJson(config.ToJson(), "demo");
  ASSERT_TRUE(json.ok());
  StatusOr<Qwen3MoeConfig> parsed = ParseQwen3MoeConfig(*json, "demo");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, config);
}

TEST_F(DemoModelTest, WritesAHuggingFaceDirectoryWithEveryWeight) {
  const std::string dir = root_ + "/new/nested";  // parents are created
  ASSERT_TRUE(WriteDemoModel(dir).ok());

  StatusOr<Qwen3MoeConfig> config = LoadQwen3MoeConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Qwen3MoeConfig expected_config = DemoModelConfig();
  expected_config.torch_dtype = "bfloat16";
  EXPECT_EQ(*config, expected_config);

  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  const auto expected = ExpectedShapes();
  EXPECT_EQ(checkpoint->TensorNames().size(), expected.size());
  for (const auto& [name, shape] : expected) {
    StatusOr<const SafetensorsTensor*> tensor = checkpoint->Get(name);
    ASSERT_TRUE(tensor.ok()) << tensor.status().ToString();
    EXPECT_EQ((*tensor)->shape, shape) << name;
    EXPECT_EQ((*tensor)->dtype, DType::kBF16) << name;
  }

  // The bf16 file holds the f32 weights rounded to bf16.
  for (const TensorToWrite& f32 :
       MakeRandomQwen3MoeWeights(DemoModelConfig(), DemoModelOptions().seed, DType::kF32)) {
    std::vector<float> stored = ToF32(**checkpoint->Get(f32.name));
    ASSERT_EQ(stored.size() * 4, f32.bytes.size());
    for (size_t i = 0; i < stored.size(); ++i) {
      float value;
      std::memcpy(&value, f32.bytes.data() + 4 * i, 4);
      ASSERT_EQ(stored[i], Bf16ToF32(F32ToBf16(value))) << f32.name << "[" << i << "]";
    }
  }
}

TEST_F(DemoModelTest, ValuesHaveTheIntendedScale) {
  const Qwen3MoeConfig config = DemoModelConfig();
  std::map<std::string, TensorToWrite> weights;
  for (TensorToWrite& w : MakeRandomQwen3MoeWeights(config, 7, DType::kF32)) {
    weights.emplace(w.name, std::move(w));
  }
  auto stats = [&](const std::string& name, double& mean, double& stddev) {
    const TensorToWrite& w = weights.at(name);
    std::vector<float> values(w.bytes.size() / 4);
    std::memcpy(values.data(), w.bytes.data(), w.bytes.size());
    MeanAndStddev(values, mean, stddev);
  };
  double mean, stddev;
  stats("model.embed_tokens.weight", mean, stddev);
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(stddev, 1.0, 0.02);
  stats("model.layers.0.self_attn.q_proj.weight", mean, stddev);  // fan_in 128
  EXPECT_NEAR(stddev, 1.0 / std::sqrt(128.0), 0.005);
  stats("model.layers.1.mlp.experts.3.down_proj.weight", mean, stddev);  // fan_in 64
  EXPECT_NEAR(stddev, 1.0 / 8.0, 0.005);
  stats("model.layers.2.mlp.down_proj.weight", mean, stddev);  // fan_in 256
  EXPECT_NEAR(stddev, 1.0 / 16.0, 0.003);
  stats("model.norm.weight", mean, stddev);
  EXPECT_NEAR(mean, 1.0, 0.03);
  EXPECT_NEAR(stddev, 0.1, 0.02);
}

// Biases (Qwen2's q/k/v projections) are centred on 0, with the norm weights' spread.
TEST_F(DemoModelTest, BiasesAreSmallAroundZero) {
  const std::vector<TensorToWrite> weights = MakeRandomWeights(
      {{"b", {4096}, WeightInit::kBias}, {"n", {4096}, WeightInit::kNorm}}, 7, DType::kF32);
  ASSERT_EQ(weights.size(), 2u);
  std::vector<float> bias(4096), norm(4096);
  std::memcpy(bias.data(), weights[0].bytes.data(), weights[0].bytes.size());
  std::memcpy(norm.data(), weights[1].bytes.data(), weights[1].bytes.size());
  double mean, stddev;
  MeanAndStddev(bias, mean, stddev);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(stddev, 0.1, 0.01);
  MeanAndStddev(norm, mean, stddev);
  EXPECT_NEAR(mean, 1.0, 0.01);
  EXPECT_NEAR(stddev, 0.1, 0.01);
}

TEST_F(DemoModelTest, SameSeedIsByteIdenticalAndOtherSeedsDiffer) {
  const std::string a = TestDir("a"), b = TestDir("b"), c = TestDir("c");
  ASSERT_TRUE(WriteDemoModel(a).ok());
  ASSERT_TRUE(WriteDemoModel(b).ok());
  ASSERT_TRUE(WriteDemoModel(c, {.seed = 1}).ok());
  StatusOr<std::string> weights_a = ReadFileToString(a + "/model.safetensors");
  StatusOr<std::string> weights_b = ReadFileToString(b + "/model.safetensors");
  StatusOr<std::string> weights_c = ReadFileToString(c + "/model.safetensors");
  ASSERT_TRUE(weights_a.ok() && weights_b.ok() && weights_c.ok());
  EXPECT_TRUE(*weights_a == *weights_b);
  EXPECT_EQ(*ReadFileToString(a + "/config.json"), *ReadFileToString(b + "/config.json"));
  EXPECT_EQ(weights_a->size(), weights_c->size());
  EXPECT_FALSE(*weights_a == *weights_c);

  // Every tensor differs between seeds, not just some.
  StatusOr<Checkpoint> ca = Checkpoint::Open(a), cc = Checkpoint::Open(c);
  ASSERT_TRUE(ca.ok() && cc.ok());
  for (const std::string& name : ca->TensorNames()) {
    const SafetensorsTensor* ta = *ca->Get(name);
    const SafetensorsTensor* tc = *cc->Get(name);
    EXPECT_NE(std::memcmp(ta->data, tc->data, ta->bytes), 0) << name;
  }
}

uint64_t Fnv1a(const std::string& bytes) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ull;
  }
  return hash;
}

TEST_F(DemoModelTest, ValuesArePinned) {
  // Guards the generator against accidental changes, which would silently change every golden
  // output computed from the demo model. The generator uses only integer arithmetic and
  // correctly rounded IEEE operations, so these hold on every platform.
  const Qwen3MoeConfig config = DemoModelConfig();
  std::vector<TensorToWrite> weights = MakeRandomQwen3MoeWeights(config, 20261129, DType::kF32);
  ASSERT_EQ(weights[0].name, "model.embed_tokens.weight");
  float first[3];
  std::memcpy(first, weights[0].bytes.data(), sizeof(first));
  EXPECT_EQ(first[0], 0.392049164f);
  EXPECT_EQ(first[1], -0.711360276f);
  EXPECT_EQ(first[2], -1.80164182f);

  const std::string dir = TestDir("pinned");
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  StatusOr<std::string> file = ReadFileToString(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->size(), 2053040u);
  EXPECT_EQ(Fnv1a(*file), 0xaaf3ba259a14e997ull);
}

TEST_F(DemoModelTest, Float32AndTiedEmbeddings) {
  Qwen3MoeConfig config = DemoModelConfig();
  config.tie_word_embeddings = true;
  std::vector<TensorToWrite> weights = MakeRandomQwen3MoeWeights(config, 3, DType::kF32);
  for (const TensorToWrite& w : weights) {
    EXPECT_NE(w.name, "lm_head.weight");
    EXPECT_EQ(w.dtype, DType::kF32);
  }
  EXPECT_EQ(weights.size(), ExpectedShapes().size() - 1);

  const std::string dir = TestDir("f32");
  ASSERT_TRUE(WriteDemoModel(dir, {.seed = 5, .dtype = DType::kF32}).ok());
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ((*checkpoint->Get("lm_head.weight"))->dtype, DType::kF32);
  EXPECT_EQ(LoadQwen3MoeConfig(dir + "/config.json")->torch_dtype, "float32");

  Status bad = WriteDemoModel(TestDir("i32"), {.dtype = DType::kI32});
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(), "demo model dtype must be f32, f16 or bf16, got i32");
}

// The demo directory carries a real tokenizer of exactly the model's vocab, whose
// <|endoftext|> is the eos of generation_config.json.
TEST_F(DemoModelTest, WritesATokenizerOfTheModelsVocab) {
  const std::string dir = root_ + "/with-tokenizer";
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  EXPECT_EQ(*ReadFileToString(dir + "/tokenizer.json"), std::string(DemoTokenizerJson()));
  StatusOr<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->vocab_size(), DemoModelConfig().vocab_size);
  for (int32_t id = 0; id < tok->vocab_size(); ++id)
    EXPECT_TRUE(tok->IdToToken(id).has_value()) << "no token has id " << id;
  EXPECT_EQ(tok->TokenToId("<|endoftext|>"), kDemoEosTokenId);
  EXPECT_TRUE(tok->IsSpecial(kDemoEosTokenId));
  // Byte-level: every string round-trips, and "Hello" has merges.
  const std::string text = "Hello world! \xe6\x88\x91\xe4\xbb\xac 123\n";
  StatusOr<std::vector<int32_t>> ids = tok->Encode(text, /*add_special_tokens=*/true);
  ASSERT_TRUE(ids.ok());
  EXPECT_LT(ids->size(), text.size());
  EXPECT_EQ(*tok->Decode(*ids, /*skip_special_tokens=*/false), text);

  StatusOr<tokenizer::GenerationConfig> generation =
      tokenizer::ReadGenerationConfig(dir + "/generation_config.json");
  ASSERT_TRUE(generation.ok()) << generation.status().ToString();
  EXPECT_EQ(generation->eos_token_ids, std::vector<int32_t>{kDemoEosTokenId});
  StatusOr<tokenizer::TokenizerConfig> config =
      tokenizer::ReadTokenizerConfig(dir + "/tokenizer_config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->add_bos_token, false);
  EXPECT_EQ(config->eos_token, "<|endoftext|>");
}

// ---- Family demos (compile-model demo --family NAME) -------------------------------------

// Every registered family has a demo: its config.json parses back to that family at the demo
// sizes, and its checkpoint is the family's weight list, the whole graph built from it.
TEST_F(DemoModelTest, EveryFamilyHasADemo) {
  for (const ModelFamily& family : ModelFamilies()) {
    const std::string name(family.name);
    SCOPED_TRACE(name);
    EXPECT_FALSE(family.demo_config.empty());
    const std::string dir = TestDir(DemoDirName(name));
    ASSERT_TRUE(WriteDemoModel(dir, {.dtype = DType::kF32, .family = name}).ok());
    StatusOr<HfModel> model = LoadHfModel(dir);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_EQ(model->family, name);
    const DecoderConfig& c = model->decoder();
    EXPECT_EQ(c.architecture, family.architecture);
    EXPECT_EQ(c.vocab_size, DemoModelConfig().vocab_size);  // the demo tokenizer's
    EXPECT_EQ(c.hidden_size, 128);
    EXPECT_EQ(c.num_hidden_layers, 4);
    EXPECT_EQ(c.torch_dtype, "float32");
    EXPECT_EQ(*ReadFileToString(dir + "/tokenizer.json"), std::string(DemoTokenizerJson()));
    EXPECT_TRUE(std::filesystem::exists(dir + "/generation_config.json"));
    StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
    std::vector<std::string> listed;
    for (const WeightSpec& w : family.weight_list(model->config))
      listed.push_back(w.name);
    EXPECT_EQ(checkpoint->TensorNames().size(), listed.size());
  }
}

// The qwen3_moe family's demo is the built-in demo: the same config and the same weights.
TEST_F(DemoModelTest, TheQwen3MoeFamilyDemoIsTheBuiltInDemo) {
  const std::string builtin = TestDir("builtin"), family = TestDir("family");
  ASSERT_TRUE(WriteDemoModel(builtin).ok());
  ASSERT_TRUE(WriteDemoModel(family, {.family = "qwen3_moe"}).ok());
  EXPECT_EQ(*ReadFileToString(builtin + "/model.safetensors"),
            *ReadFileToString(family + "/model.safetensors"));
  StatusOr<Qwen3MoeConfig> a = LoadQwen3MoeConfig(builtin + "/config.json");
  StatusOr<Qwen3MoeConfig> b = LoadQwen3MoeConfig(family + "/config.json");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b);
  // Other families and seeds differ.
  const std::string qwen2 = TestDir("qwen2");
  ASSERT_TRUE(WriteDemoModel(qwen2, {.family = "qwen2"}).ok());
  EXPECT_NE(*ReadFileToString(qwen2 + "/config.json"), *ReadFileToString(family + "/config.json"));
}

TEST_F(DemoModelTest, AnUnknownFamilyListsTheNames) {
  const std::string dir = root_ + "/unknown";
  const Status status = WriteDemoModel(dir, {.family = "llama"});
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "unknown model family \"llama\"; families: " + ModelFamilyNames());
  EXPECT_FALSE(std::filesystem::exists(dir)) << "nothing is written";
  for (const ModelFamily& family : ModelFamilies())
    EXPECT_NE(ModelFamilyNames().find(family.name), std::string::npos);
  EXPECT_EQ(DemoDirName(""), "demo-model");
  EXPECT_EQ(DemoDirName("mixtral"), "demo-model-mixtral");
}

TEST_F(DemoModelTest, ResolveModelArgumentWritesAndChecksTheFamilysDemo) {
  const std::string dir = root_ + "/resolved";
  StatusOr<std::string> resolved = ResolveModelArgument("demo", dir, "mixtral");
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(*resolved, dir);
  EXPECT_EQ(LoadHfModel(dir)->family, "mixtral");
  EXPECT_TRUE(ResolveModelArgument("demo", dir, "mixtral").ok()) << "reused";
  StatusOr<std::string> other = ResolveModelArgument("demo", dir, "qwen2");
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(other.status().message(), dir +
                                          " holds a mixtral model, not the qwen2 demo; choose "
                                          "another --demo-dir or remove it");
  EXPECT_EQ(ResolveModelArgument("demo", root_ + "/x", "llama").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(ResolveModelArgument("/models/m", dir, "qwen2").status().message(),
            "--family qwen2 applies to MODEL 'demo' only, got '/models/m'");
  EXPECT_EQ(*ResolveModelArgument("/models/m", dir), "/models/m");
}

}  // namespace
}  // namespace moegraph
