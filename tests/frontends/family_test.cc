// The family registry, the weight list the checkpoint writers share, and the weight loader's
// layouts and errors.
#include "frontends/family.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>

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

// The names of the tensors a graph's weight ops read (experts expanded).
std::set<std::string> TensorsRead(const Graph& graph) {
  std::set<std::string> read;
  for (const Op& op : graph.ops()) {
    if (op.def->name != "weight") continue;
    const std::string name = op.StringAttr("name");
    const int64_t experts = op.IntAttr("experts", 0);
    if (experts == 0) {
      read.insert(name);
    } else {
      for (int64_t e = 0; e < experts; ++e)
        read.insert(ExpandExpertName(name, e));
    }
  }
  return read;
}

TEST_F(FamilyTest, RegistryFindsQwen3MoeAndListsItForOthers) {
  StatusOr<const ModelFamily*> family = FindModelFamily("Qwen3MoeForCausalLM");
  ASSERT_TRUE(family.ok());
  EXPECT_EQ((*family)->name, "qwen3_moe");
  StatusOr<const ModelFamily*> other = FindModelFamily("LlamaForCausalLM");
  EXPECT_EQ(other.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(other.status().message(),
            "no model family for architecture \"LlamaForCausalLM\"; supported architectures: "
            "\"Qwen3MoeForCausalLM\", \"Qwen3ForCausalLM\", \"MixtralForCausalLM\", "
            "\"Qwen2ForCausalLM\", \"Glm4MoeForCausalLM\"");
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
            "\"MixtralForCausalLM\", \"Qwen2ForCausalLM\", \"Glm4MoeForCausalLM\"");
  json = ParseJson(R"({"architectures": "Qwen3MoeForCausalLM"})", "config.json");
  EXPECT_EQ(FamilyForConfig(*json, "config.json").status().code(), StatusCode::kInvalidArgument);
  json = ParseJson(R"({})", "config.json");
  EXPECT_EQ(FamilyForConfig(*json, "config.json").status().message(),
            "config.json: field \"architectures\" is missing; supported architectures: "
            "\"Qwen3MoeForCausalLM\", \"Qwen3ForCausalLM\", \"MixtralForCausalLM\", "
            "\"Qwen2ForCausalLM\", \"Glm4MoeForCausalLM\"");
}

TEST_F(FamilyTest, LoadHfModelDispatchesThroughTheRegistry) {
  const std::string dir = TestDir("model");
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  StatusOr<HfModel> model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->family, "qwen3_moe");
  EXPECT_EQ(model->Info().family, "qwen3_moe");

  std::ofstream(dir + "/config.json") << R"({"architectures": ["DeepseekV3ForCausalLM"]})";
  model = LoadHfModel(dir);
  EXPECT_EQ(model.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(model.status().message().find(
                "is [\"DeepseekV3ForCausalLM\"]; supported architectures: \"Qwen3MoeForCausalLM\", "
                "\"Qwen3ForCausalLM\", \"MixtralForCausalLM\", \"Qwen2ForCausalLM\""),
            std::string::npos)
      << model.status().ToString();
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
  if (GetParam().find("fused") != std::string::npos) return;  // transformers' in-memory layout
  std::set<std::string> listed;
  for (const WeightSpec& w : (*family)->weight_list(model->config)) {
    listed.insert(w.name);
    StatusOr<const SafetensorsTensor*> t = model->checkpoint.Get(w.name);
    ASSERT_TRUE(t.ok()) << w.name;
    EXPECT_EQ((*t)->shape, w.shape) << w.name;
  }
  EXPECT_EQ(listed, stored);
}

// FastDeploy PR 5138's bug class: an MLP or MoE block (a shared expert, a dense layer) built
// without the step's ForwardMeta. In every family's graph each such op takes %meta, and the same
// graph with %meta dropped from one of them does not verify.
TEST_P(FamilyGoldenTest, EveryMetaOpTakesMetaAndDroppingItIsRejected) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(GetParam()));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  int blocks = 0;
  for (const Op& op : model->graph.ops()) {
    if (!op.def->Has(kNeedsForwardMeta)) continue;
    ASSERT_FALSE(op.operands.empty()) << op.def->name;
    EXPECT_EQ(op.operands[0], model->graph.inputs()[0]) << op.def->name << " without %meta";
    // A shared expert (an mlp beside its layer's moe, "lN.moe.shared") takes %meta too.
    const bool shared = model->graph.value(op.results[0]).name.ends_with(".shared");
    if ((op.def->name == "mlp" || op.def->name == "moe") && !shared) ++blocks;
  }
  EXPECT_EQ(blocks, model->decoder().num_hidden_layers) << "one FFN block per layer";
  const std::string text = PrintGraph(model->graph);
  for (const std::string kind : {"mlp(%meta, ", "moe(%meta, "}) {
    const size_t at = text.find(kind);
    if (at == std::string::npos) continue;
    std::string broken = text;
    broken.replace(at, kind.size(), kind.substr(0, 4));  // "mlp(" without %meta
    StatusOr<Graph> parsed = ParseGraph(broken, "broken.ir");
    const Status status = parsed.ok() ? Verify(*parsed) : parsed.status();
    EXPECT_FALSE(status.ok()) << GetParam() << ": " << kind << "without %meta verified";
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, FamilyGoldenTest, ::testing::ValuesIn(testing::GoldenCases()));

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

}  // namespace
}  // namespace moegraph
