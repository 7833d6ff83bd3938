// fuzz-seeds OUT_DIR: writes the seed corpora of the fuzz targets, all drawn
// from the demo model, into OUT_DIR/<target>/ (generated at CI time rather
// than committed: they follow the formats as they change).
#include <cstdio>
#include <filesystem>
#include <string>

#include "compiler/pipeline.h"
#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "fuzz/fuzz_common.h"
#include "ir/printer.h"
#include "plan/plan_file.h"
#include "support/mapped_file.h"

namespace moegraph::fuzz {
namespace {

namespace fs = std::filesystem;

void Seed(const std::string& dir, const std::string& name, std::string_view bytes) {
  fs::create_directories(dir);
  WriteFileOrDie(dir + "/" + name, bytes);
}

std::string WithSelector(uint8_t selector, std::string_view rest) {
  return std::string(1, static_cast<char>(selector)) + std::string(rest);
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz-seeds OUT_DIR\n");
    return 1;
  }
  const std::string out = argv[1];
  StatusOr<HfModel> model = LoadHfModel(DemoModelDir());
  if (!model.ok()) {
    std::fprintf(stderr, "fuzz-seeds: %s\n", model.status().ToString().c_str());
    return 1;
  }

  const std::string plan = SerializePlan(SmallDemoPlan());
  Seed(out + "/plan", "demo.plan", plan);
  Seed(out + "/plan_engine", "demo.plan", plan);
  Seed(out + "/plan", "demo-int8.plan", SerializePlan(SmallDemoInt8Plan()));

  // A small file whole; the demo checkpoint's header with its data cut off
  // (rejected, after the whole header parses); and the index.json.
  const auto kFile = static_cast<uint8_t>(SafetensorsInput::kFile);
  Seed(out + "/safetensors", "small.safetensors", WithSelector(kFile, SmallSafetensorsFile()));
  StatusOr<std::string> demo_file = ReadFileToString(DemoModelDir() + "/model.safetensors");
  if (!demo_file.ok() || demo_file->size() < 8) return 1;
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i)
    header_bytes = (header_bytes << 8) | static_cast<uint8_t>((*demo_file)[i]);
  Seed(out + "/safetensors", "demo-header.safetensors",
       WithSelector(kFile, std::string_view(*demo_file).substr(0, 8 + header_bytes)));
  Seed(out + "/safetensors", "index.json",
       WithSelector(static_cast<uint8_t>(SafetensorsInput::kIndex), ShardedCheckpointIndex()));

  Seed(out + "/config", "demo-config.json", model->config_text);
  Qwen3MoeConfig tied = DemoModelConfig();
  tied.tie_word_embeddings = true;
  tied.norm_topk_prob = true;
  tied.mlp_only_layers = {0};
  tied.num_hidden_layers = 2;
  Seed(out + "/config", "tied-config.json", tied.ToJson());

  // The generic graph for each key, and one key's graph halfway down the pipeline.
  const std::string generic = PrintGraph(model->graph);
  for (int k = 0; k < kNumIrKeys; ++k)
    Seed(out + "/ir", "generic-" + std::to_string(k) + ".mgir", WithSelector(k, generic));
  PipelineOptions options;
  options.chunk_size = 16;
  options.stop_after = "moe-lower";
  WeightTable weights;
  StatusOr<Graph> lowered = RunPipeline(model->graph, IrKey(0), options, weights, nullptr);
  if (lowered.ok()) Seed(out + "/ir", "moe-lower-0.mgir", WithSelector(0, PrintGraph(*lowered)));
  std::printf("fuzz-seeds: wrote the seed corpora to %s\n", out.c_str());
  return 0;
}

}  // namespace
}  // namespace moegraph::fuzz

int main(int argc, char** argv) {
  return moegraph::fuzz::Main(argc, argv);
}
