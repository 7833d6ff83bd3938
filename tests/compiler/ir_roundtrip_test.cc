// parse(print(g)) == g for every graph the project builds: the generic graph of
// every golden model and the demo model, and every key's graph after every
// pass of the pipeline.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "compiler/pipeline.h"
#include "frontends/decoder.h"
#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "tests/golden/golden_util.h"

namespace moegraph {
namespace {

void ExpectRoundTrip(const Graph& graph, const std::string& what) {
  const std::string text = PrintGraph(graph);
  StatusOr<Graph> parsed = ParseGraph(text, what);
  ASSERT_TRUE(parsed.ok()) << what << ": " << parsed.status().ToString();
  std::string why;
  EXPECT_TRUE(StructurallyEqual(graph, *parsed, &why)) << what << ": " << why;
  EXPECT_EQ(PrintGraph(*parsed), text) << what;
  EXPECT_TRUE(Verify(*parsed).ok()) << what;
}

void RoundTripModel(const std::string& dir) {
  StatusOr<HfModel> model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ExpectRoundTrip(model->graph, dir + " (generic)");
  KeySetOptions keys;
  keys.chunk_size = 8;
  keys.max_chunks = 3;
  keys.expert_parallel = 2;
  keys.prefill_buckets = {8, 24};
  keys.decode_buckets = {1, 4};
  StatusOr<std::vector<SpecKey>> all = EnumerateKeys(keys);
  ASSERT_TRUE(all.ok());
  for (const SpecKey& key : *all) {
    for (const std::string& pass : PipelinePassNames()) {
      PipelineOptions options;
      options.chunk_size = keys.chunk_size;
      options.stop_after = pass;
      // Rank 1 of 2's programs (its experts, the dispatch and combine).
      options.expert_parallel = ExpertParallelFor(keys, /*rank=*/1, key.phase);
      WeightTable weights;
      KeyProgram program;
      StatusOr<Graph> graph = RunPipeline(model->graph, key, options, weights, &program);
      ASSERT_TRUE(graph.ok()) << graph.status().ToString();
      ExpectRoundTrip(*graph, key.ToString() + " after " + pass);
    }
  }
}

TEST(IrRoundTrip, EveryGoldenModelAndEveryPassOutput) {
  for (const std::string& name : testing::GoldenCases())
    RoundTripModel(testing::GoldenDir(name));
}

// Attention with sinks and a window (layer 0; layer 1 full, sinks only) survives every pass
// of every key: each pass's output round-trips, and the lowered program's attention steps
// keep the sinks operand and their window.
TEST(IrRoundTrip, AttentionSinksAndWindowSurviveEveryPass) {
  DecoderConfig c;
  c.architecture = "Test";
  c.vocab_size = 23;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 3;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  const DecoderAttention attention{.sinks = true, .layer_windows = {5, 0}};
  const int64_t hidden = c.hidden_size, inter = 24;
  const std::vector<WeightSpec> list = DecoderWeightList(
      c, attention, [&](int64_t, const std::string& p, std::vector<WeightSpec>& w) {
        w.push_back({p + "mlp.gate_proj.weight", {inter, hidden}, WeightInit::kLinear});
        w.push_back({p + "mlp.up_proj.weight", {inter, hidden}, WeightInit::kLinear});
        w.push_back({p + "mlp.down_proj.weight", {hidden, inter}, WeightInit::kLinear});
      });
  const std::string dir =
      ::testing::TempDir() + "/ir-roundtrip-sinks-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(
      WriteSafetensors(dir + "/model.safetensors", MakeRandomWeights(list, 5, DType::kF32), {})
          .ok());
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  DecoderBuilder d(c, *checkpoint, "sinks_window");
  auto ffn = [&](int64_t, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    MlpWeights m;
    MG_ASSIGN_OR_RETURN(m.gate, d.weights().Plain(p + "mlp.gate_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(m.up, d.weights().Plain(p + "mlp.up_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(m.down, d.weights().Plain(p + "mlp.down_proj.weight", {hidden, inter}));
    return BuildMlp(d.builder(), MlpOptions{}, m, x, l + "mlp");
  };
  StatusOr<Graph> generic = std::move(d).Build(attention, ffn);
  ASSERT_TRUE(generic.ok()) << generic.status().ToString();
  ExpectRoundTrip(*generic, "sinks_window (generic)");
  KeySetOptions keys;
  keys.chunk_size = 8;
  keys.max_chunks = 3;
  keys.prefill_buckets = {8, 24};
  keys.decode_buckets = {1, 4};
  StatusOr<std::vector<SpecKey>> all = EnumerateKeys(keys);
  ASSERT_TRUE(all.ok());
  for (const SpecKey& key : *all) {
    for (const std::string& pass : PipelinePassNames()) {
      PipelineOptions options;
      options.chunk_size = keys.chunk_size;
      options.stop_after = pass;
      WeightTable weights;
      KeyProgram program;
      StatusOr<Graph> graph = RunPipeline(*generic, key, options, weights, &program);
      ASSERT_TRUE(graph.ok()) << graph.status().ToString();
      ExpectRoundTrip(*graph, key.ToString() + " after " + pass);
      if (pass != PipelinePassNames().back()) continue;
      int attention_steps = 0;
      for (const KernelStep& step : program.steps) {
        if (step.kernel != "attention") continue;
        AttentionParams params;
        ASSERT_TRUE(DecodeParams(step.ints, step.floats, params));
        EXPECT_EQ(step.inputs.size(), 4u) << key.ToString();  // q, k, v, sinks
        EXPECT_EQ(params.window, params.layer == 0 ? 5 : 0) << key.ToString();
        ++attention_steps;
      }
      EXPECT_EQ(attention_steps, 2) << key.ToString();
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(IrRoundTrip, DemoModel) {
  const std::string dir = ::testing::TempDir() + "/ir-roundtrip-demo-" + std::to_string(::getpid());
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  RoundTripModel(dir);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moegraph
