// compile-model / graph-dump `demo --family NAME`: every registered family's demo is written,
// compiled with small options and runs a prefill and a decode step through the Engine with
// finite logits; an unknown name is an error listing the names.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "frontends/family.h"
#include "plan/plan_file.h"
#include "runtime/engine.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/tool_util.h"

namespace moegraph {
namespace {

using testing::ReadFile;
using testing::RunTool;
using testing::ToolRun;

std::vector<std::string> FamilyNames() {
  std::vector<std::string> names;
  for (const ModelFamily& family : ModelFamilies())
    names.emplace_back(family.name);
  return names;
}

// Small keys: one decode bucket, one prefill bucket, one chunk.
std::vector<std::string> CompileArgs(const std::string& plan,
                                     const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      "demo", "-o",           plan, "--decode-buckets", "1", "--prefill-buckets",
      "8",    "--chunk-size", "8",  "--max-chunks",     "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

class DemoFamilyTest : public testing::TempDirTest,
                       public ::testing::WithParamInterface<std::string> {};

TEST_P(DemoFamilyTest, CompilesAndRunsADecodeStep) {
  const std::string family = GetParam();
  const std::string dir = TestDir("run");
  const ToolRun run = RunTool("compile-model", CompileArgs("demo.plan", {"--family", family}), dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // The default demo directory names the family; the summary names it too.
  const std::string model_dir = dir + "/demo-model-" + family;
  EXPECT_NE(run.err.find("demo model: demo-model-" + family), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("(" + family + ": "), std::string::npos) << run.err;
  StatusOr<const ModelFamily*> registered = FindModelFamilyByName(family);
  ASSERT_TRUE(registered.ok()) << registered.status().ToString();
  const std::string config = ReadFile(model_dir + "/config.json");
  EXPECT_NE(config.find("\"" + std::string((*registered)->architecture) + "\""), std::string::npos)
      << config;
  EXPECT_TRUE(std::filesystem::exists(model_dir + "/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(model_dir + "/tokenizer.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/demo-model")) << "the built-in demo's directory";

  EngineOptions options;
  options.num_threads = 2;
  options.kv_cache_bytes = 16ull << 20;
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(dir + "/demo.plan", options);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  EXPECT_EQ((*engine)->plan().model.family, family);
  const int32_t vocab = (*engine)->plan().model.vocab_size;
  EXPECT_EQ(vocab, 512);
  StatusOr<StepLogits> prefill = (*engine)->Step({SequenceStep{1, {3, 141, 59, 26, 5}, 0}});
  ASSERT_TRUE(prefill.ok()) << prefill.status().ToString();
  StatusOr<StepLogits> decode = (*engine)->Step({SequenceStep{1, {35}, 5}});
  ASSERT_TRUE(decode.ok()) << decode.status().ToString();
  EXPECT_EQ((*engine)->last_key().phase, MoePhase::kDecode);
  for (const StepLogits* logits : {&*prefill, &*decode}) {
    ASSERT_EQ(logits->num_seqs, 1);
    ASSERT_EQ(logits->data.size(), static_cast<size_t>(vocab));
    float max_abs = 0;
    for (float v : logits->data) {
      ASSERT_TRUE(std::isfinite(v));
      max_abs = std::max(max_abs, std::fabs(v));
    }
    EXPECT_GT(max_abs, 0.0f) << "random weights give nonzero logits";
  }
}

// graph-dump builds the same demo; a second run reuses the directory.
TEST_P(DemoFamilyTest, GraphDumpPrintsTheFamilysGraph) {
  const std::string family = GetParam();
  const std::string dir = TestDir("dump");
  for (int run_index = 0; run_index < 2; ++run_index) {
    const ToolRun run = RunTool("graph-dump", {"demo", "--family", family}, dir);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(run.out.rfind("graph @", 0), 0u) << run.out.substr(0, 200);
    // Every family's layers attend over the KV cache: GQA, or latent attention (DeepSeek-V3).
    EXPECT_TRUE(run.out.find("= attention(%meta") != std::string::npos ||
                run.out.find("= mla_attention(%meta") != std::string::npos)
        << run.out.substr(0, 200);
  }
  EXPECT_TRUE(std::filesystem::exists(dir + "/demo-model-" + family + "/config.json"));
}

INSTANTIATE_TEST_SUITE_P(Families, DemoFamilyTest, ::testing::ValuesIn(FamilyNames()),
                         [](const auto& info) { return info.param; });

class DemoFamilyErrorTest : public testing::TempDirTest {};

TEST_F(DemoFamilyErrorTest, UnknownFamilyListsTheNames) {
  const std::string dir = TestDir("bad");
  const std::string names = ModelFamilyNames();
  for (const char* tool : {"compile-model", "graph-dump"}) {
    const std::vector<std::string> args =
        std::string(tool) == "compile-model"
            ? CompileArgs("x.plan", {"--family", "llama"})
            : std::vector<std::string>{"demo", "--family", "llama"};
    const ToolRun run = RunTool(tool, args, dir);
    EXPECT_EQ(run.exit_code, 1) << tool;
    EXPECT_NE(run.err.find("--family: unknown model family \"llama\"; families: " + names),
              std::string::npos)
        << tool << ": " << run.err;
    EXPECT_FALSE(std::filesystem::exists(dir + "/demo-model-llama")) << tool;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.plan"));
  for (const std::string& family : FamilyNames())
    EXPECT_NE(names.find(family), std::string::npos) << names;
}

TEST_F(DemoFamilyErrorTest, FamilyAppliesToTheDemoOnly) {
  const std::string dir = TestDir("model");
  const ToolRun run =
      RunTool("compile-model", {"some/model", "-o", "x.plan", "--family", "qwen2"}, dir);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--family qwen2 applies to MODEL 'demo' only, got 'some/model'"),
            std::string::npos)
      << run.err;
  const ToolRun dump = RunTool("graph-dump", {"x.plan", "--family", "qwen2"}, dir);
  EXPECT_EQ(dump.exit_code, 1);
  EXPECT_NE(dump.err.find("--family qwen2 applies to INPUT 'demo' only, got 'x.plan'"),
            std::string::npos)
      << dump.err;
}

// A --demo-dir that holds another family's demo is not silently reused.
TEST_F(DemoFamilyErrorTest, ADemoDirOfAnotherFamilyIsRefused) {
  const std::string dir = TestDir("mixed");
  ToolRun run = RunTool("graph-dump", {"demo", "--family", "qwen2", "--demo-dir", "shared"}, dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  run = RunTool("graph-dump", {"demo", "--family", "mixtral", "--demo-dir", "shared"}, dir);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("shared holds a qwen2 model, not the mixtral demo; choose another "
                         "--demo-dir or remove it"),
            std::string::npos)
      << run.err;
}

TEST_F(DemoFamilyErrorTest, HelpNamesTheOptionAndTheFamilies) {
  const std::string dir = TestDir("help");
  for (const char* tool : {"compile-model", "graph-dump"}) {
    const ToolRun help = RunTool(tool, {"--help"}, dir);
    EXPECT_EQ(help.exit_code, 0) << tool;
    EXPECT_NE(help.out.find("--family"), std::string::npos) << help.out;
    EXPECT_NE(help.out.find(ModelFamilyNames()), std::string::npos) << help.out;
  }
}

}  // namespace
}  // namespace moegraph
