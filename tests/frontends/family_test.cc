// The family registry, the weight list the checkpoint writers share, and the weight loader's
// layouts and errors.
#include "frontends/family.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>

#include "checkpoint/safetensors.h"
#include "checkpoint/weights.h"
#include "frontends/decoder.h"
#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "frontends/weights.h"
#include "ir/op_registry.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "support/format.h"
#include "support/strings.h"
#include "tests/golden/golden_util.h"
#include "tests/testing/temp_dir.h"

namespace moegraph {
namespace {

class FamilyTest : public testing::TempDirTest {};

TEST_F(FamilyTest, RegistryFindsQwen3MoeAndListsItForOthers) {
  StatusOr<const ModelFamily*> family = FindModelFamily("Qwen3MoeForCausalLM");
  ASSERT_TRUE(family.ok());
  EXPECT_EQ((*family)->name, "qwen3_moe");
  StatusOr<const ModelFamily*> other = FindModelFamily("LlamaForCausalLM");
  EXPECT_EQ(other.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(other.status().message(),
            "no model family for architecture \"LlamaForCausalLM\"; supported architectures: "
            "\"Qwen3MoeForCausalLM\", \"Qwen3ForCausalLM\", \"MixtralForCausalLM\", "
            "\"Qwen2ForCausalLM\", \"Qwen2MoeForCausalLM\", \"Ernie4_5_MoeForCausalLM\", "
            "\"Glm4MoeForCausalLM\", \"DeepseekV3ForCausalLM\", \"GptOssForCausalLM\"");
}

TEST_F(FamilyTest, ConfigPicksTheFirstRegisteredArchitecture) {
  StatusOr<JsonValue> json =
      ParseJson(R"({"architectures": ["Foo", "Qwen3MoeForCausalLM"]})", "config.json");
  ASSERT_TRUE(json.ok());
  StatusOr<const ModelFamily*> family = FamilyForConfig(*json, "config.json");
  ASSERT_TRUE(family.ok()) << family.status().ToString();
  EXPECT_EQ((*family)->architecture, "Qwen3MoeForCausalLM");

  json = ParseJson(R"({"architectures": ["LlamaForCausalLM"]})", "config.json");
  family = FamilyForConfig(*json, "config.json");
  EXPECT_EQ(family.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(family.status().message(),
            "config.json: field \"architectures\" is [\"LlamaForCausalLM\"]; supported "
            "architectures: \"Qwen3MoeForCausalLM\", \"Qwen3ForCausalLM\", "
            "\"MixtralForCausalLM\", \"Qwen2ForCausalLM\", \"Qwen2MoeForCausalLM\", "
            "\"Ernie4_5_MoeForCausalLM\", \"Glm4MoeForCausalLM\", \"DeepseekV3ForCausalLM\", "
            "\"GptOssForCausalLM\"");
  json = ParseJson(R"({"architectures": "Qwen3MoeForCausalLM"})", "config.json");
  EXPECT_EQ(FamilyForConfig(*json, "config.json").status().code(), StatusCode::kInvalidArgument);
  json = ParseJson(R"({})", "config.json");
  EXPECT_EQ(FamilyForConfig(*json, "config.json").status().message(),
            "config.json: field \"architectures\" is missing; supported architectures: "
            "\"Qwen3MoeForCausalLM\", \"Qwen3ForCausalLM\", \"MixtralForCausalLM\", "
            "\"Qwen2ForCausalLM\", \"Qwen2MoeForCausalLM\", \"Ernie4_5_MoeForCausalLM\", "
            "\"Glm4MoeForCausalLM\", \"DeepseekV3ForCausalLM\", \"GptOssForCausalLM\"");
}

TEST_F(FamilyTest, LoadHfModelDispatchesThroughTheRegistry) {
  const std::string dir = TestDir("model");
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  StatusOr<HfModel> model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->family, "qwen3_moe");
  EXPECT_EQ(model->Info().family, "qwen3_moe");

  std::ofstream(dir + "/config.json") << R"({"architectures": ["Gemma3ForCausalLM"]})";
  model = LoadHfModel(dir);
  EXPECT_EQ(model.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(model.status().message().find(
                "is [\"Gemma3ForCausalLM\"]; supported architectures: \"Qwen3MoeForCausalLM\", "
                "\"Qwen3ForCausalLM\", \"MixtralForCausalLM\", \"Qwen2ForCausalLM\", "
                "\"Qwen2MoeForCausalLM\", \"Ernie4_5_MoeForCausalLM\""),
            std::string::npos)
      << model.status().ToString();
}

// A checkpoint tensor no weight op reads is reported, by name (compile-model warns with it).
TEST_F(FamilyTest, UnreadTensorsNamesWhatTheGraphDoesNotRead) {
  const std::string dir = TestDir("model");
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  StatusOr<HfModel> model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_TRUE(UnreadTensors(*model).empty());
  std::vector<TensorToWrite> tensors =
      MakeRandomQwen3MoeWeights(DemoModelConfig(), 1, DType::kBF16);
  for (const char* extra : {"model.layers.9.mlp.gate.weight", "model.mtp.0.norm.weight"})
    tensors.push_back(TensorToWrite{extra, DType::kF32, {2}, std::string(8, '\0')});
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}}).ok());
  model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(UnreadTensors(*model), (std::vector<std::string>{"model.layers.9.mlp.gate.weight",
                                                             "model.mtp.0.norm.weight"}));
}

// The demo checkpoint is written from the family's weight list, and the graph the family builds
// reads exactly the tensors of that list (nothing more, nothing missing).
TEST_F(FamilyTest, WeightListIsTheCheckpointTheGraphReads) {
  const Qwen3MoeConfig config = DemoModelConfig();
  StatusOr<const ModelFamily*> family = FindModelFamily(config.architecture);
  ASSERT_TRUE(family.ok());
  const std::vector<WeightSpec> list = (*family)->weight_list(config);
  const std::string dir = TestDir("model");
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok());
  std::set<std::string> listed;
  for (const WeightSpec& w : list) {
    listed.insert(w.name);
    StatusOr<const SafetensorsTensor*> t = checkpoint->Get(w.name);
    ASSERT_TRUE(t.ok()) << w.name;
    EXPECT_EQ((*t)->shape, w.shape) << w.name;
  }
  EXPECT_EQ(listed.size(), list.size());
  EXPECT_EQ(checkpoint->TensorNames().size(), list.size());

  StatusOr<HfModel> model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(TensorsRead(model->graph), listed);
}

// Every family's golden checkpoint in the published layout is exactly its weight list (names
// and shapes, file order aside), and is exactly what its graph reads.
class FamilyGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyGoldenTest, WeightListMatchesThePublishedCheckpoint) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(GetParam()));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<const ModelFamily*> family = FindModelFamily(model->decoder().architecture);
  ASSERT_TRUE(family.ok());
  EXPECT_EQ((*family)->name, model->family);
  const std::set<std::string> read = TensorsRead(model->graph);
  std::set<std::string> stored;
  for (const std::string& name : model->checkpoint.TensorNames())
    stored.insert(name);
  EXPECT_EQ(read, stored);
  EXPECT_TRUE(UnreadTensors(*model).empty());
  if (GetParam().find("fused") != std::string::npos) return;  // transformers' in-memory layout
  std::set<std::string> listed;
  for (const WeightSpec& w : (*family)->weight_list(model->config)) {
    listed.insert(w.name);
    StatusOr<const SafetensorsTensor*> t = model->checkpoint.Get(w.name);
    ASSERT_TRUE(t.ok()) << w.name;
    EXPECT_EQ((*t)->shape, w.shape) << w.name;
    // An FP8 checkpoint adds each quantized linear's scales next to it.
    if (model->checkpoint.Get(ScaleTensorName(w.name)).ok()) {
      listed.insert(ScaleTensorName(w.name));
    }
  }
  EXPECT_EQ(listed, stored);
}

// FastDeploy PR 5138's bug class: an MLP or MoE block (a shared expert, a dense layer) built
// without the step's ForwardMeta. In every family's graph each such op takes %meta, and the same
// graph with %meta dropped from one of them does not verify.
TEST_P(FamilyGoldenTest, EveryMetaOpTakesMetaAndDroppingItIsRejected) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(GetParam()));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  int blocks = 0, shared_experts = 0;
  for (const Op& op : model->graph.ops()) {
    if (!op.def->Has(kNeedsForwardMeta)) continue;
    ASSERT_FALSE(op.operands.empty()) << op.def->name;
    EXPECT_EQ(op.operands[0], model->graph.inputs()[0]) << op.def->name << " without %meta";
    if (op.def->name == "mlp" || op.def->name == "moe") ++blocks;
    const std::string& result = model->graph.value(op.results[0]).name;
    if (op.def->name == "mlp" && result.ends_with(".shared")) ++shared_experts;
  }
  EXPECT_EQ(blocks - shared_experts, model->decoder().num_hidden_layers)
      << "one FFN block per layer, plus its shared expert";
  if (model->family == "qwen2_moe") {
    EXPECT_GT(shared_experts, 0) << "Qwen2-MoE's shared experts";
  }
  const std::string text = PrintGraph(model->graph);
  // The first dense-or-shared MLP, the first MoE and the first shared expert (Qwen2-MoE).
  for (const std::string kind : {"mlp(%meta, ", "moe(%meta, ", ".shared = mlp(%meta, "}) {
    const size_t at = text.find(kind);
    if (at == std::string::npos) continue;
    const std::string call = kind.substr(kind.size() - 11);  // "mlp(%meta, " or "moe(%meta, "
    std::string broken = text;
    broken.replace(at + kind.size() - call.size(), call.size(), call.substr(0, 4));  // no %meta
    StatusOr<Graph> parsed = ParseGraph(broken, "broken.ir");
    const Status status = parsed.ok() ? Verify(*parsed) : parsed.status();
    EXPECT_FALSE(status.ok()) << GetParam() << ": " << kind << "without %meta verified";
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, FamilyGoldenTest, ::testing::ValuesIn(testing::GoldenCases()));

// A bf16 checkpoint written from Ernie's weight list keeps the router and the score-correction
// bias f32 (as transformers does; the moe op takes only an f32 bias), and loads.
TEST_F(FamilyTest, ErnieWeightListWritesALoadableBf16Checkpoint) {
  const std::string golden = testing::GoldenDir("ernie_moe_shared2_bias");
  StatusOr<HfModel> reference = LoadHfModel(golden);
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  StatusOr<const ModelFamily*> family = FindModelFamily("Ernie4_5_MoeForCausalLM");
  ASSERT_TRUE(family.ok());
  const std::string dir = TestDir("ernie_bf16");
  const std::vector<TensorToWrite> tensors =
      MakeRandomWeights((*family)->weight_list(reference->config), 11, DType::kBF16);
  int f32 = 0;
  for (const TensorToWrite& t : tensors) {
    const bool routing = t.name.ends_with(".mlp.gate.weight") ||
                         t.name.ends_with(".mlp.moe_statics.e_score_correction_bias");
    EXPECT_EQ(t.dtype, routing ? DType::kF32 : DType::kBF16) << t.name;
    f32 += routing ? 1 : 0;
  }
  EXPECT_EQ(f32, 4);  // two MoE layers
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors, {}).ok());
  std::ifstream in(golden + "/config.json", std::ios::binary);
  std::ofstream(dir + "/config.json", std::ios::binary) << in.rdbuf();
  StatusOr<HfModel> model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(TensorsRead(model->graph), TensorsRead(reference->graph));
}

// ---- DecoderBuilder ----------------------------------------------------------------

// o_bias and lm_head_bias (Ernie 4.5's use_bias): self_attn.o_proj.bias after each o projection
// and lm_head.bias after the LM head, tied or not (tying shares lm_head.weight only), with a
// biased dense MLP; the graph reads exactly the weight list.
TEST_F(FamilyTest, DecoderLoadsOAndLmHeadBiasesTiedOrNot) {
  for (bool tied : {false, true}) {
    DecoderConfig c;
    c.architecture = "Test";
    c.vocab_size = 37;
    c.hidden_size = 12;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 3;
    c.num_key_value_heads = 1;
    c.head_dim = 4;
    c.tie_word_embeddings = tied;
    const DecoderAttention variant{.qkv_bias = true, .o_bias = true, .lm_head_bias = true};
    const int64_t hidden = c.hidden_size, inter = 10;
    const std::vector<WeightSpec> list = DecoderWeightList(
        c, variant, [&](int64_t, const std::string& p, std::vector<WeightSpec>& w) {
          w.push_back({p + "mlp.gate_proj.weight", {inter, hidden}, WeightInit::kLinear});
          w.push_back({p + "mlp.up_proj.weight", {inter, hidden}, WeightInit::kLinear});
          w.push_back({p + "mlp.down_proj.weight", {hidden, inter}, WeightInit::kLinear});
          w.push_back({p + "mlp.gate_proj.bias", {inter}, WeightInit::kBias});
          w.push_back({p + "mlp.up_proj.bias", {inter}, WeightInit::kBias});
          w.push_back({p + "mlp.down_proj.bias", {hidden}, WeightInit::kBias});
        });
    const std::string dir = TestDir(tied ? "tied" : "untied");
    ASSERT_TRUE(
        WriteSafetensors(dir + "/model.safetensors", MakeRandomWeights(list, 7, DType::kF32), {})
            .ok());
    StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
    DecoderBuilder d(c, *checkpoint, "test");
    auto ffn = [&](int64_t, const std::string& p, const std::string& l,
                   ValueId x) -> StatusOr<ValueId> {
      WeightLoader& w = d.weights();
      MlpWeights m;
      MG_ASSIGN_OR_RETURN(m.gate, w.Plain(p + "mlp.gate_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(m.up, w.Plain(p + "mlp.up_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(m.down, w.Plain(p + "mlp.down_proj.weight", {hidden, inter}));
      MG_ASSIGN_OR_RETURN(m.gate_bias, w.Plain(p + "mlp.gate_proj.bias", {inter}));
      MG_ASSIGN_OR_RETURN(m.up_bias, w.Plain(p + "mlp.up_proj.bias", {inter}));
      MG_ASSIGN_OR_RETURN(m.down_bias, w.Plain(p + "mlp.down_proj.bias", {hidden}));
      return BuildMlp(d.builder(), MlpOptions{.bias = true}, m, x, l + "mlp");
    };
    StatusOr<Graph> graph = std::move(d).Build(variant, ffn);
    ASSERT_TRUE(graph.ok()) << graph.status().ToString();
    std::set<std::string> listed;
    for (const WeightSpec& w : list)
      listed.insert(w.name);
    EXPECT_EQ(TensorsRead(*graph), listed);
    EXPECT_EQ(listed.count("lm_head.weight"), tied ? 0u : 1u);
    const std::string text = PrintGraph(*graph);
    for (const char* piece :
         {"%l1.o_bias = bias_add(%l1.o, %l1.self_attn.o_proj.bias)",
          "%l1.h_attn = add(%l0.h, %l1.o_bias)",
          "%l1.mlp = mlp(%meta, %l1.mlp_in, %l1.mlp.gate_proj, %l1.mlp.up_proj, %l1.mlp.down_proj, "
          "%l1.mlp.gate_proj.bias, %l1.mlp.up_proj.bias, %l1.mlp.down_proj.bias)",
          tied ? "%logits = linear(%last, %embed_tokens)" : "%logits = linear(%last, %lm_head)",
          "%logits_bias = bias_add(%logits, %lm_head.bias) : tensor<B x 37 x f32>",
          "return %logits_bias"}) {
      EXPECT_NE(text.find(piece), std::string::npos) << piece << "\n" << text;
    }
  }
}

// ---- WeightLoader ----------------------------------------------------------------

TensorToWrite Tensor(const std::string& name, std::vector<int64_t> shape,
                     DType dtype = DType::kF32) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return {name, dtype, std::move(shape),
          std::string(static_cast<size_t>(n) * DTypeBytes(dtype), '\0')};
}

class WeightLoaderTest : public testing::TempDirTest {
 protected:
  Checkpoint Write(std::vector<TensorToWrite> tensors) {
    const std::string dir = TestDir("ckpt");
    EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors, {}).ok());
    StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
    EXPECT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
    file_ = dir + "/model.safetensors";
    return std::move(*checkpoint);
  }
  std::string file_;
};

// DecoderBuilder hands the config's partial_rotary_factor and DecoderAttention's
// rope_interleaved to every layer's rope ops; the defaults add no attribute.
using DecoderBuilderTest = WeightLoaderTest;

TEST_F(DecoderBuilderTest, PassesPartialAndInterleavedRopeToEveryLayer) {
  DecoderConfig config;
  config.architecture = "Test";
  config.vocab_size = 8;
  config.hidden_size = 16;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.num_key_value_heads = 1;
  config.head_dim = 8;
  const DecoderFfnWeights no_ffn = [](int64_t, const std::string&, std::vector<WeightSpec>&) {};
  const DecoderBuilder::Ffn identity = [](int64_t, const std::string&, const std::string&,
                                          ValueId x) -> StatusOr<ValueId> { return x; };
  struct Case {
    double factor;
    bool interleaved;
    std::string attrs;
  };
  const Case cases[] = {
      {1.0, false, "{head_dim = 8, theta = 10000.0}"},
      {0.5, true, "{head_dim = 8, interleaved = 1, rotary_dim = 4, theta = 10000.0}"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.attrs);
    config.partial_rotary_factor = c.factor;
    const DecoderAttention attention{.rope_interleaved = c.interleaved};
    Checkpoint ckpt = Write(MakeRandomWeights(DecoderWeightList(config, attention, no_ffn),
                                              /*seed=*/3, DType::kF32));
    DecoderBuilder builder(config, ckpt, "t");
    StatusOr<Graph> g = std::move(builder).Build(attention, identity);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    for (const char* layer : {"l0", "l1"}) {
      for (const char* x : {"q", "k"}) {
        const std::string op = Format("= rope(%meta, %{}.{}) {}", layer, x, c.attrs);
        EXPECT_NE(text.find(op), std::string::npos) << op << "\n" << text;
      }
    }
  }
}

// DecoderAttention's sinks load self_attn.sinks [num_heads] (listed, read) as each layer's
// attention operand; layer_windows sets each layer's window (0: no attribute); a list that is
// not one per layer is refused.
TEST_F(DecoderBuilderTest, PassesSinksAndLayerWindowsToEachLayer) {
  DecoderConfig config;
  config.architecture = "Test";
  config.vocab_size = 8;
  config.hidden_size = 16;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.num_key_value_heads = 1;
  config.head_dim = 8;
  const DecoderFfnWeights no_ffn = [](int64_t, const std::string&, std::vector<WeightSpec>&) {};
  const DecoderBuilder::Ffn identity = [](int64_t, const std::string&, const std::string&,
                                          ValueId x) -> StatusOr<ValueId> { return x; };
  const DecoderAttention attention{.sinks = true, .layer_windows = {5, 0}};
  const std::vector<WeightSpec> list = DecoderWeightList(config, attention, no_ffn);
  Checkpoint ckpt = Write(MakeRandomWeights(list, /*seed=*/3, DType::kF32));
  DecoderBuilder builder(config, ckpt, "t");
  StatusOr<Graph> g = std::move(builder).Build(attention, identity);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  std::set<std::string> listed;
  for (const WeightSpec& w : list)
    listed.insert(w.name);
  EXPECT_EQ(TensorsRead(*g), listed);
  EXPECT_EQ(listed.count("model.layers.1.self_attn.sinks"), 1u);
  const std::string text = PrintGraph(*g);
  for (const char* piece :
       {"attention(%meta, %l0.q_rope, %l0.k_rope, %l0.v, %l0.self_attn.sinks) {head_dim = 8, "
        "layer = 0, num_heads = 2, num_kv_heads = 1, scale = 0.35355339059327373, window = 5}",
        "attention(%meta, %l1.q_rope, %l1.k_rope, %l1.v, %l1.self_attn.sinks) {head_dim = 8, "
        "layer = 1, num_heads = 2, num_kv_heads = 1, scale = 0.35355339059327373} :"}) {
    EXPECT_NE(text.find(piece), std::string::npos) << piece << "\n" << text;
  }
  const DecoderAttention short_list{.layer_windows = {5}};
  DecoderBuilder refused(config, ckpt, "t");
  StatusOr<Graph> bad = std::move(refused).Build(short_list, identity);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "DecoderAttention::layer_windows has 1 entries, expected one per layer (2)");
}

TEST_F(WeightLoaderTest, ResolvesPlainStackedAndFusedLayouts) {
  Checkpoint ckpt = Write(
      {Tensor("w", {3, 5}), Tensor("a.experts.0.gate_proj.weight", {2, 5}),
       Tensor("a.experts.0.up_proj.weight", {2, 5}), Tensor("a.experts.0.down_proj.weight", {5, 2}),
       Tensor("a.experts.1.gate_proj.weight", {2, 5}), Tensor("a.experts.1.up_proj.weight", {2, 5}),
       Tensor("a.experts.1.down_proj.weight", {5, 2}),
       Tensor("b.experts.gate_up_proj", {2, 4, 5}, DType::kBF16),
       Tensor("b.experts.down_proj", {2, 5, 2}, DType::kBF16)});
  GraphBuilder b("t");
  WeightLoader loader(ckpt, b);
  ASSERT_TRUE(loader.Plain("w", {3, 5}).ok());
  StatusOr<ExpertWeights> stacked = loader.Experts("a.", 2, 2, 5);
  ASSERT_TRUE(stacked.ok()) << stacked.status().ToString();
  StatusOr<ExpertWeights> fused = loader.Experts("b.", 2, 2, 5);
  ASSERT_TRUE(fused.ok()) << fused.status().ToString();
  for (ValueId v : {stacked->gate, stacked->up, stacked->down, fused->gate, fused->up, fused->down})
    b.Output(v);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  EXPECT_NE(text.find("weight() {experts = 2, name = \"a.experts.{e}.gate_proj.weight\"} : "
                      "tensor<2 x 2 x 5 x f32>"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("weight() {experts = 2, name = \"b.experts.gate_up_proj\"} : "
                      "tensor<2 x 2 x 5 x bf16>"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("weight() {experts = 2, name = \"b.experts.gate_up_proj\", row_offset = 2} "
                      ": tensor<2 x 2 x 5 x bf16>"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("weight() {experts = 2, name = \"b.experts.down_proj\"} : "
                      "tensor<2 x 5 x 2 x bf16>"),
            std::string::npos)
      << text;
}

// Ernie's e_score_correction_bias is stored [1, E]; the graph reads it as [E], and the weight
// resolves to the same bytes.
TEST_F(WeightLoaderTest, SqueezedDropsLeadingUnitDims) {
  Checkpoint ckpt = Write({Tensor("bias", {1, 5}), Tensor("w", {2, 5})});
  GraphBuilder b("t");
  WeightLoader loader(ckpt, b);
  StatusOr<ValueId> bias = loader.Squeezed("bias", {1, 5}, {5});
  ASSERT_TRUE(bias.ok()) << bias.status().ToString();
  StatusOr<ValueId> wrong = loader.Squeezed("w", {2, 5}, {5});
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong.status().message(),
            file_ + ": tensor 'w' [2, 5] is not [5] with leading size-1 dims");
  EXPECT_EQ(loader.Squeezed("bias", {5}, {5}).status().code(), StatusCode::kInvalidArgument);
  b.Output(*bias);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const Op& op = g->ops()[0];
  StatusOr<ResolvedWeight> resolved = ResolveWeight(op, g->type(op.results[0]), ckpt);
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(resolved->shape, (std::vector<int64_t>{5}));
  ASSERT_EQ(resolved->slices.size(), 1u);
  EXPECT_EQ(resolved->slices[0].bytes, 5 * sizeof(float));
  // Other shapes still disagree.
  StatusOr<ResolvedWeight> other = ResolveWeight(
      op, Type::Tensor(DType::kF32, {Dim::Static(1), Dim::Static(1), Dim::Static(5)}), ckpt);
  EXPECT_FALSE(other.ok());
}

TEST_F(WeightLoaderTest, ErrorsNameTheTensorAndWhatWasExpected) {
  Checkpoint ckpt =
      Write({Tensor("w", {3, 5}), Tensor("ids", {4}, DType::kI32), Tensor("e.0", {2, 2}),
             Tensor("e.1", {2, 2}, DType::kF16), Tensor("fused", {2, 4, 5})});
  GraphBuilder b("t");
  WeightLoader loader(ckpt, b);
  StatusOr<ValueId> missing = loader.Plain("nope", {1});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);

  StatusOr<ValueId> shape = loader.Plain("w", {5, 3});
  EXPECT_EQ(shape.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(shape.status().message(),
            file_ + ": tensor 'w' has shape [3, 5] but config.json implies [5, 3]");

  StatusOr<ValueId> dtype = loader.Plain("ids", {4});
  EXPECT_EQ(dtype.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(dtype.status().message(),
            file_ + ": tensor 'ids' has dtype I32; supported: F32, BF16, F16");

  StatusOr<ValueId> mixed = loader.Stacked("e.{e}", 2, {2, 2});
  EXPECT_EQ(mixed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mixed.status().message(),
            file_ +
                ": tensor 'e.1' is F16 but expert 0 is F32; all experts of a layer must "
                "share a dtype");

  StatusOr<ValueId> rows = loader.FusedRows("fused", {2, 4, 5}, 2, 4);
  EXPECT_EQ(rows.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rows.status().message(),
            file_ + ": tensor 'fused' [2, 4, 5]: rows [2, 6) are not inside its second dimension");
}

// ---- quantized weights -----------------------------------------------------------

// FP8 block-quantized tensors as DeepSeek-V3 / Qwen3-FP8 store them: F8_E4M3 weights with
// F32 `<name>_scale_inv` [ceil(N / 16), ceil(K / 16)], on sizes that leave partial edge blocks.
class QuantizedWeightTest : public WeightLoaderTest {
 protected:
  Checkpoint WriteFp8() {
    std::vector<TensorToWrite> t = {Tensor("q.weight", {37, 50}, DType::kFp8E4M3),
                                    Tensor("q.weight_scale_inv", {3, 4}),
                                    Tensor("norm.weight", {50}),
                                    Tensor("skip.weight", {37, 50}, DType::kFp8E4M3),
                                    Tensor("skip.weight_scale_inv", {3, 4}),
                                    Tensor("bad.weight", {37, 50}, DType::kFp8E4M3),
                                    Tensor("bad.weight_scale_inv", {3, 3}),
                                    Tensor("f.experts.gate_up_proj", {2, 64, 50}, DType::kFp8E4M3),
                                    Tensor("f.experts.gate_up_proj_scale_inv", {2, 4, 4})};
    for (int e = 0; e < 2; ++e) {
      const std::string p = "x.experts." + std::to_string(e) + ".down_proj.weight";
      t.push_back(Tensor(p, {37, 50}, DType::kFp8E4M3));
      t.push_back(Tensor(p + "_scale_inv", {3, 4}));
    }
    // Distinct scale bytes, to see which slice a pointer lands on.
    for (TensorToWrite& tensor : t) {
      for (size_t i = 0; i < tensor.bytes.size(); ++i)
        tensor.bytes[i] = static_cast<char>(i * 7 + tensor.name.size());
    }
    return Write(std::move(t));
  }
  QuantizationConfig Fp8(std::vector<std::string> skip = {}) {
    return QuantizationConfig{QuantScheme::kFp8Block, 16, 16, std::move(skip)};
  }
};

TEST_F(QuantizedWeightTest, LoaderRecordsOneValueThatNamesItsScales) {
  Checkpoint ckpt = WriteFp8();
  GraphBuilder b("t");
  WeightLoader loader(ckpt, b, Fp8());
  StatusOr<ValueId> q = loader.Plain("q.weight", {37, 50});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  StatusOr<ValueId> norm = loader.Plain("norm.weight", {50});
  ASSERT_TRUE(norm.ok()) << norm.status().ToString();
  StatusOr<ValueId> down = loader.Stacked("x.experts.{e}.down_proj.weight", 2, {37, 50});
  ASSERT_TRUE(down.ok()) << down.status().ToString();
  StatusOr<ValueId> up = loader.FusedRows("f.experts.gate_up_proj", {2, 64, 50}, 32, 32);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  for (ValueId v : {*q, *norm, *down, *up})
    b.Output(v);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  for (const char* want :
       {"weight() {block_cols = 16, block_rows = 16, name = \"q.weight\", quant = \"fp8_block\", "
        "scale = \"q.weight_scale_inv\"} : tensor<37 x 50 x fp8e4m3>",
        "weight() {name = \"norm.weight\"} : tensor<50 x f32>",
        "weight() {block_cols = 16, block_rows = 16, experts = 2, name = "
        "\"x.experts.{e}.down_proj.weight\", quant = \"fp8_block\", scale = "
        "\"x.experts.{e}.down_proj.weight_scale_inv\"} : tensor<2 x 37 x 50 x fp8e4m3>",
        "weight() {block_cols = 16, block_rows = 16, experts = 2, name = "
        "\"f.experts.gate_up_proj\", quant = \"fp8_block\", row_offset = 32, scale = "
        "\"f.experts.gate_up_proj_scale_inv\"} : tensor<2 x 32 x 50 x fp8e4m3>"}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  EXPECT_TRUE(Verify(*g).ok()) << Verify(*g).ToString();

  // Resolved and bound together: one TensorArg with its scale pointers.
  StatusOr<WeightArgs> args = WeightArgs::FromCheckpoint(*g, ckpt);
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  const TensorArg* qa = args->Find(*q);
  ASSERT_NE(qa, nullptr);
  EXPECT_EQ(qa->dtype, DType::kFp8E4M3);
  EXPECT_EQ(qa->quant, (WeightQuant{QuantScheme::kFp8Block, 16, 16}));
  EXPECT_EQ(qa->scales, ckpt.Get("q.weight_scale_inv").value()->data);
  EXPECT_EQ(qa->data, ckpt.Get("q.weight").value()->data);
  EXPECT_EQ(args->Find(*norm)->scales, nullptr);
  EXPECT_FALSE(args->Find(*norm)->quant.quantized());
  const TensorArg* da = args->Find(*down);
  ASSERT_NE(da->expert_scales, nullptr);
  for (int e = 0; e < 2; ++e) {
    const std::string name = "x.experts." + std::to_string(e) + ".down_proj.weight_scale_inv";
    EXPECT_EQ(da->expert_scale(e), ckpt.Get(name).value()->data) << e;
  }
  // The fused tensor's up half: rows 32.. of each expert, scale rows 2.. of its [4, 4] scales.
  const TensorArg* ua = args->Find(*up);
  const SafetensorsTensor* fused_scales = ckpt.Get("f.experts.gate_up_proj_scale_inv").value();
  for (int e = 0; e < 2; ++e) {
    EXPECT_EQ(ua->expert_scale(e), fused_scales->data + (e * 4 + 2) * 4 * sizeof(float)) << e;
  }
  const Op& op = g->ops()[3];
  StatusOr<ResolvedWeight> resolved = ResolveWeight(op, g->type(op.results[0]), ckpt);
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  ASSERT_EQ(resolved->scale_slices.size(), 2u);
  EXPECT_EQ(resolved->scale_slices[1].bytes, 2 * 4 * sizeof(float));
  EXPECT_EQ(resolved->scale_slices[1].offset,
            fused_scales->file_offset + (4 + 2) * 4 * sizeof(float));
}

TEST_F(QuantizedWeightTest, ErrorsNameTheTensorsAndTheBlocks) {
  Checkpoint ckpt = WriteFp8();
  GraphBuilder b("t");
  WeightLoader loader(ckpt, b, Fp8({"skip"}));
  StatusOr<ValueId> bad = loader.Plain("bad.weight", {37, 50});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            file_ +
                ": scale tensor 'bad.weight_scale_inv' is F32 [3, 3], expected F32 [3, 4] "
                "(weight_block_size [16, 16] over [37, 50])");
  StatusOr<ValueId> skip = loader.Plain("skip.weight", {37, 50});
  EXPECT_EQ(skip.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(skip.status().message(),
            file_ +
                ": tensor 'skip.weight' has dtype F8_E4M3; supported: F32, BF16, F16, and "
                "F8_E4M3 with scales 'skip.weight_scale_inv' under a quantization_config of "
                "quant_method \"fp8\" (this module is in modules_to_not_convert)");
  // Rows of a fused tensor must start on a scale block.
  StatusOr<ValueId> rows = loader.FusedRows("f.experts.gate_up_proj", {2, 64, 50}, 24, 24);
  EXPECT_EQ(rows.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(rows.status().message(),
            file_ +
                ": tensor 'f.experts.gate_up_proj': rows from 24 do not start on a scale "
                "block of 16 rows");
  // Without a quantization_config an fp8 tensor is not read.
  GraphBuilder b2("t");
  WeightLoader plain(ckpt, b2);
  EXPECT_EQ(plain.Plain("q.weight", {37, 50}).status().code(), StatusCode::kUnimplemented);
  // A scale tensor that disagrees with the graph's blocks fails at resolve, naming both.
  Op op;
  op.def = LookupOp("weight");
  op.attrs = {{"name", std::string("q.weight")},
              {"quant", std::string("fp8_block")},
              {"scale", std::string("q.weight_scale_inv")},
              {"block_rows", int64_t{32}},
              {"block_cols", int64_t{16}}};
  const Type type = Type::Tensor(DType::kFp8E4M3, {Dim::Static(37), Dim::Static(50)});
  StatusOr<ResolvedWeight> resolved = ResolveWeight(op, type, ckpt);
  EXPECT_EQ(resolved.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(resolved.status().message(),
            file_ +
                ": scale tensor 'q.weight_scale_inv' of 'q.weight' has shape [3, 4], "
                "expected [2, 4] (blocks of 32 x 16 over [37, 50])");
}

TEST_F(QuantizedWeightTest, Mxfp4ExpertsAreOneValueOverThePackedBlocks) {
  // GPT-OSS's layout: [E, N, K / 32, 16] code bytes and [E, N, K / 32] e8m0 scales.
  Checkpoint ckpt = Write({Tensor("m.gate_up_proj_blocks", {2, 6, 2, 16}, DType::kU8),
                           Tensor("m.gate_up_proj_scales", {2, 6, 2}, DType::kU8),
                           Tensor("m.down_proj_blocks", {2, 64, 1, 16}, DType::kU8),
                           Tensor("m.down_proj_scales", {2, 64, 2}, DType::kU8),
                           Tensor("s.gate_up_proj_blocks", {2, 6, 2, 16}, DType::kU8),
                           Tensor("s.gate_up_proj_scales", {2, 6, 2}, DType::kU8)});
  GraphBuilder b("t");
  const QuantizationConfig mxfp4{QuantScheme::kMxfp4, 1, 32, {"s"}};
  WeightLoader loader(ckpt, b, mxfp4);
  StatusOr<ValueId> gu = loader.Mxfp4Experts("m.gate_up_proj", {2, 6, 64});
  ASSERT_TRUE(gu.ok()) << gu.status().ToString();
  b.Output(*gu);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string want =
      "weight() {block_cols = 32, block_rows = 1, experts = 2, name = "
      "\"m.gate_up_proj_blocks\", quant = \"mxfp4\", scale = \"m.gate_up_proj_scales\"} : "
      "tensor<2 x 6 x 64 x mxfp4>";
  EXPECT_NE(PrintGraph(*g).find(want), std::string::npos) << PrintGraph(*g);
  EXPECT_TRUE(Verify(*g).ok()) << Verify(*g).ToString();
  // Bound: per-expert pointers 6 x 32 bytes apart, scales 6 x 2 bytes apart.
  StatusOr<WeightArgs> args = WeightArgs::FromCheckpoint(*g, ckpt);
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  const TensorArg* a = args->Find(*gu);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kMxfp4);
  EXPECT_EQ(a->quant, (WeightQuant{QuantScheme::kMxfp4, 1, 32}));
  const SafetensorsTensor* blocks = ckpt.Get("m.gate_up_proj_blocks").value();
  const SafetensorsTensor* scales = ckpt.Get("m.gate_up_proj_scales").value();
  for (int e = 0; e < 2; ++e) {
    EXPECT_EQ(a->expert(e), blocks->data + e * 6 * 32) << e;
    EXPECT_EQ(a->expert_scale(e), scales->data + e * 6 * 2) << e;
  }
  const Op& op = g->ops()[0];
  StatusOr<ResolvedWeight> resolved = ResolveWeight(op, g->type(op.results[0]), ckpt);
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(resolved->slices[1].bytes, 6u * 32u);
  EXPECT_EQ(resolved->scale_slices[1].bytes, 6u * 2u);

  // Errors name the tensor and the layout expected.
  GraphBuilder b2("t");
  WeightLoader bad(ckpt, b2, mxfp4);
  EXPECT_EQ(bad.Mxfp4Experts("m.down_proj", {2, 64, 64}).status().message(),
            file_ +
                ": tensor 'm.down_proj_blocks' is U8 [2, 64, 1, 16], expected U8 [2, 64, 2, 16] "
                "(MXFP4 blocks of 32 inputs over [2, 64, 64])");
  EXPECT_EQ(bad.Mxfp4Experts("m.down_proj", {2, 64, 32}).status().message(),
            file_ +
                ": scale tensor 'm.down_proj_scales' is U8 [2, 64, 2], expected U8 [2, 64, 1] "
                "(one e8m0 scale per 32 inputs)");
  EXPECT_EQ(bad.Mxfp4Experts("m.gate_up_proj", {2, 6, 48}).status().message(),
            file_ +
                ": tensor 'm.gate_up_proj_blocks': config.json implies experts [2, 6, 48], but "
                "MXFP4 needs [E, N, K] with K a multiple of 32");
  EXPECT_NE(bad.Mxfp4Experts("s.gate_up_proj", {2, 6, 64})
                .status()
                .message()
                .find("modules_to_not_convert"),
            std::string::npos);
  GraphBuilder b3("t");
  WeightLoader unquantized(ckpt, b3);
  EXPECT_NE(unquantized.Mxfp4Experts("m.gate_up_proj", {2, 6, 64})
                .status()
                .message()
                .find("does not say quant_method \"mxfp4\""),
            std::string::npos);
}

}  // namespace
}  // namespace moegraph
