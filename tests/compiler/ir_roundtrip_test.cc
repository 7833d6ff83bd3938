// parse(print(g)) == g for every graph the project builds: the generic graph of
// every golden model and the demo model, and every key's graph after every
// pass of the pipeline.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "compiler/pipeline.h"
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

TEST(IrRoundTrip, DemoModel) {
  const std::string dir = ::testing::TempDir() + "/ir-roundtrip-demo-" + std::to_string(::getpid());
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  RoundTripModel(dir);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moegraph
