// compile-model and run-model as a person uses them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "support/json.h"
#include "tests/tools/tool_util.h"

namespace moegraph {
namespace {

using testing::RunTool;
using testing::ToolRun;

class RunModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "run_model_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(*dir_);
    const ToolRun compiled =
        RunTool("compile-model",
                {"demo", "-o", "demo.plan", "--decode-buckets", "1,2", "--prefill-buckets", "8,16",
                 "--chunk-size", "8", "--max-chunks", "2"},
                *dir_);
    ASSERT_EQ(compiled.exit_code, 0) << compiled.err;
    ASSERT_NE(compiled.out.find("wrote demo.plan: 4 keys"), std::string::npos) << compiled.out;
    ASSERT_NE(compiled.err.find("[4/4]"), std::string::npos) << "progress on stderr";
  }
  static void TearDownTestSuite() {
    std::error_code ignored;
    std::filesystem::remove_all(*dir_, ignored);
    delete dir_;
  }
  static ToolRun Run(const std::vector<std::string>& args, const std::string& env = "") {
    return RunTool("run-model", args, *dir_, env);
  }
  static std::string* dir_;
};
std::string* RunModelTest::dir_ = nullptr;

std::string GeneratedLine(const std::string& out, int seq) {
  const std::string tag = "sequence " + std::to_string(seq) + ":";
  const size_t at = out.find(tag);
  return at == std::string::npos ? "" : out.substr(at, out.find('\n', at) - at);
}

TEST_F(RunModelTest, GeneratesAndEagerGivesTheSameTokens) {
  // 20 prompt tokens: prefilled over two steps (largest prefill bucket 16).
  const std::string prompt = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20;7,7";
  const ToolRun replay = Run({"demo.plan", "--prompt-ids", prompt, "--max-new-tokens", "6"});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  const ToolRun eager =
      Run({"demo.plan", "--prompt-ids", prompt, "--max-new-tokens", "6", "--eager"});
  ASSERT_EQ(eager.exit_code, 0) << eager.err;
  for (int s = 0; s < 2; ++s) {
    const std::string line = GeneratedLine(replay.out, s);
    ASSERT_FALSE(line.empty()) << replay.out;
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), 5) << line;
    EXPECT_EQ(line, GeneratedLine(eager.out, s));
  }
  EXPECT_NE(replay.err.find("capturing 4/4"), std::string::npos) << "capture progress";
}

TEST_F(RunModelTest, DispatchLogSaysWhichKeyAndWhy) {
  const ToolRun run =
      Run({"demo.plan", "--prompt-ids", "1,2,3", "--max-new-tokens", "2"}, "MOEGRAPH_LOG=dispatch");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("[moegraph:dispatch] phase=prefill,chunks=1,max_chunks=1,tokens=8,seqs=8 "
                         "for 3 tokens in 1 sequences (a prompt is in the batch"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("[moegraph:dispatch] phase=decode,chunks=1,max_chunks=1,tokens=1,seqs=1 "
                         "for 1 tokens in 1 sequences (all decoding one token"),
            std::string::npos)
      << run.err;
}

TEST_F(RunModelTest, TraceIsChromeTraceJson) {
  const ToolRun run =
      Run({"demo.plan", "--prompt-ids", "1,2,3", "--max-new-tokens", "3", "--trace", "trace.json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  StatusOr<JsonValue> trace = ParseJson(testing::ReadFile(*dir_ + "/trace.json"), "trace.json");
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  const JsonValue* events = trace->Find("traceEvents");
  ASSERT_NE(events, nullptr);
  int steps = 0, kernels = 0;
  for (const JsonValue& e : events->as_array()) {
    const std::string cat = e.Find("cat")->as_string();
    steps += cat == "step";
    kernels += cat == "kernel";
    EXPECT_EQ(e.Find("ph")->as_string(), "X");
    EXPECT_GE(e.Find("dur")->as_double(), 0.0);
  }
  EXPECT_EQ(steps, 3) << "one prefill and two decode steps";
  EXPECT_GT(kernels, 3 * 20);
}

TEST_F(RunModelTest, BenchPrintsLatencyThroughputAndOverhead) {
  const ToolRun run = Run({"demo.plan", "--bench", "--threads", "1"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* want : {"replay us", "eager us", "dispatch", "tokens/s", "decode batch 1",
                           "replay vs eager", "peak RSS", "load + capture"}) {
    EXPECT_NE(run.out.find(want), std::string::npos) << want << "\n" << run.out;
  }
}

TEST_F(RunModelTest, ErrorsAreClearAndNeverCrash) {
  ToolRun run = Run({"missing.plan"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("missing.plan"), std::string::npos) << run.err;
  run = Run({"demo.plan", "--prompt-ids", "1,99999"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("token id 99999 is outside the vocabulary [0, 512)"), std::string::npos)
      << run.err;
  run = Run({"demo.plan", "--prompt-ids", "1,x"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--prompt-ids"), std::string::npos) << run.err;
  run = Run({"demo.plan", "--no-such-flag"});
  EXPECT_EQ(run.exit_code, 1);
  run = RunTool("compile-model", {"demo"}, *dir_);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("missing -o PLAN"), std::string::npos) << run.err;
  run = RunTool("compile-model", {"/nonexistent/model", "-o", "x.plan"}, *dir_);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("/nonexistent/model"), std::string::npos) << run.err;
}

TEST_F(RunModelTest, HelpDocumentsEveryFlag) {
  const ToolRun run = Run({"--help"});
  ASSERT_EQ(run.exit_code, 0);
  for (const char* flag : {"--prompt-ids", "--max-new-tokens", "--eager", "--bench", "--trace",
                           "--temperature", "--top-k", "--top-p", "--seed", "--stop-ids",
                           "--threads", "--kv-cache-mb", "--model-dir"}) {
    EXPECT_NE(run.out.find(flag), std::string::npos) << flag;
  }
  const ToolRun compile = RunTool("compile-model", {"--help"}, *dir_);
  ASSERT_EQ(compile.exit_code, 0);
  for (const char* flag : {"--output", "--chunk-size", "--max-chunks", "--decode-buckets",
                           "--prefill-buckets", "--phases", "--print-ir-before", "--print-ir-after",
                           "--print-ir-after-change", "--dump-dir", "--no-fuse"}) {
    EXPECT_NE(compile.out.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace moegraph
