// compile-model and run-model as a person uses them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

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
                // An f32 KV cache: the block counts below are f32's (the bf16
                // default is kv_dtype_flag_test's).
                {"demo", "-o", "demo.plan", "--decode-buckets", "1,2", "--prefill-buckets", "8,16",
                 "--chunk-size", "8", "--max-chunks", "2", "--kv-dtype", "f32"},
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

// Comma-separated token ids 1..n (mod the demo vocabulary).
std::string Ids(int n, int first = 1) {
  std::string ids;
  for (int i = 0; i < n; ++i)
    ids += (i ? "," : "") + std::to_string((first + 7 * i) % 512);
  return ids;
}

TEST_F(RunModelTest, OutOfRangeFlagsNameTheFlagTheRangeAndTheValue) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      // These used to wrap to 1, 1 MiB, or abort on bad_alloc.
      {{"--max-new-tokens", "4294967297"},
       "--max-new-tokens: 4294967297 is outside the range [1, 1048576]"},
      {{"--kv-cache-mb", "17592186044417"},
       "--kv-cache-mb: 17592186044417 is outside the range [1, "},
      {{"--kv-cache-mb", "100000000"}, "--kv-cache-mb: 100000000 is outside the range [1, "},
      {{"--kv-cache-mb", "0"}, "--kv-cache-mb: 0 is outside the range [1, "},
      {{"--max-new-tokens", "0"}, "--max-new-tokens: 0 is outside the range [1, 1048576]"},
      {{"--max-new-tokens", "1e3"}, "--max-new-tokens: '1e3' is not an integer"},
      {{"--temperature", "nan"}, "--temperature: nan is not a finite number"},
      {{"--temperature", "inf"}, "--temperature: inf is not a finite number"},
      {{"--temperature", "-1"}, "--temperature: -1 is outside the range [0, 100]"},
      {{"--top-p", "0"}, "--top-p: 0 is outside the range (0, 1]"},
      {{"--top-p", "1.5"}, "--top-p: 1.5 is outside the range (0, 1]"},
      {{"--top-p", "nan"}, "--top-p: nan is not a finite number"},
      {{"--top-k", "-1"}, "--top-k: -1 is outside the range [0, 2147483647]"},
      {{"--seed", "-1"}, "--seed: '-1' is not an integer in [0, 18446744073709551615]"},
      {{"--threads", "100000"}, "--threads: 100000 is outside the range [1, "},
      {{"--threads", "0"}, "--threads: 0 is outside the range [1, "},
      {{"--stop-ids", "1,,2"}, "--stop-ids: item 2 of '1,,2' is empty"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"demo.plan"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const ToolRun run = Run(args);
    EXPECT_EQ(run.exit_code, 1) << c.expected;
    EXPECT_NE(run.err.find(c.expected), std::string::npos) << run.err;
    EXPECT_EQ(run.out, "") << "refused before loading the plan: " << c.expected;
  }
}

TEST_F(RunModelTest, ThreadsAreBoundedByTheCoresTheProcessMayUse) {
  if (std::system("command -v taskset >/dev/null 2>&1") != 0) GTEST_SKIP() << "no taskset";
  // Pinned to one core, two threads are refused; one runs.
  ToolRun run = Run({"demo.plan", "--threads", "2", "--max-new-tokens", "1"}, "taskset -c 0");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--threads: 2 is outside the range [1, 1]"), std::string::npos) << run.err;
  run = Run({"demo.plan", "--threads", "1", "--max-new-tokens", "1"}, "taskset -c 0");
  EXPECT_EQ(run.exit_code, 0) << run.err;
}

TEST_F(RunModelTest, EmptyPromptIdsAreErrorsNotABuiltInPrompt) {
  struct Case {
    std::string ids, expected;
  };
  const std::vector<Case> cases = {
      {"", "--prompt-ids: empty"},
      {"1,2;;3", "--prompt-ids: prompt 2 of 3 is empty"},
      {"1,2;", "--prompt-ids: prompt 2 of 2 is empty"},
      {";1,2", "--prompt-ids: prompt 1 of 2 is empty"},
      {"1,,2", "--prompt-ids: prompt 1 of 1: item 2 of '1,,2' is empty"},
      {"1,2;3,x", "--prompt-ids: prompt 2 of 2: 'x' is not an integer"},
      {"1;4294967297", "--prompt-ids: prompt 2 of 2: 4294967297 is outside the range"},
  };
  for (const Case& c : cases) {
    const ToolRun run = Run({"demo.plan", "--prompt-ids", c.ids});
    EXPECT_EQ(run.exit_code, 1) << c.ids;
    EXPECT_NE(run.err.find(c.expected), std::string::npos) << c.ids << ": " << run.err;
    EXPECT_EQ(run.out.find("sequence 0"), std::string::npos) << c.ids << ": " << run.out;
  }
  // Three prompts stay three, numbered as given.
  const ToolRun run = Run({"demo.plan", "--prompt-ids", "1,2;3;4,5,6", "--max-new-tokens", "1"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("sequence 1: prompt 1 tokens"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("sequence 2: prompt 3 tokens"), std::string::npos) << run.out;
}

TEST_F(RunModelTest, ContextEndIsReportedAndTooLongPromptsAreRefusedUpFront) {
  // A 256-token prefill bucket keeps the long prompt to a few steps.
  const ToolRun compiled = RunTool("compile-model",
                                   {"demo", "-o", "context.plan", "-q", "--prefill-buckets",
                                    "16,256", "--decode-buckets", "1", "--max-chunks", "1"},
                                   *dir_);
  ASSERT_EQ(compiled.exit_code, 0) << compiled.err;
  // The demo model's context is 2048 positions: 2040 prompt tokens leave room
  // for 9 generated tokens (8 of them fed back), fewer than the 16 asked.
  const ToolRun run = Run({"context.plan", "--prompt-ids", Ids(2040), "--max-new-tokens", "16"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string line = GeneratedLine(run.out, 0);
  EXPECT_EQ(std::count(line.begin(), line.end(), ','), 8) << line;
  EXPECT_NE(line.find("(the model's context ended: max_position_embeddings 2048)"),
            std::string::npos)
      << line;
  const ToolRun ok = Run({"demo.plan", "--prompt-ids", "1,2,3", "--max-new-tokens", "2"});
  EXPECT_EQ(ok.out.find("context ended"), std::string::npos) << ok.out;

  const ToolRun refused =
      Run({"demo.plan", "--prompt-ids", "1,2;" + Ids(2049), "--trace", "refused.json"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("request 1: its prompt of 2049 tokens does not fit the model's "
                             "context of 2048 positions (max_position_embeddings)"),
            std::string::npos)
      << refused.err;
  EXPECT_EQ(refused.out.find("tokens in"), std::string::npos) << "no step ran: " << refused.out;
  EXPECT_FALSE(std::filesystem::exists(*dir_ + "/refused.json"));
}

TEST_F(RunModelTest, PromptsThatDoNotFitTheKvCacheTogetherWaitForBlocks) {
  // --kv-cache-mb 1 holds 32 blocks of 16 tokens; each 200-token prompt with
  // 16 new tokens may take 14 of them, so two run and the third waits.
  const std::string prompts = Ids(200, 1) + ";" + Ids(200, 2) + ";" + Ids(200, 3);
  const ToolRun together =
      Run({"demo.plan", "--prompt-ids", prompts, "--kv-cache-mb", "1", "--max-new-tokens", "16"});
  ASSERT_EQ(together.exit_code, 0) << together.err;
  EXPECT_NE(together.out.find("(32 blocks of 16 tokens)"), std::string::npos) << together.out;
  for (int s = 0; s < 3; ++s) {
    const ToolRun alone = Run({"demo.plan", "--prompt-ids", Ids(200, s + 1), "--kv-cache-mb", "1",
                               "--max-new-tokens", "16"});
    ASSERT_EQ(alone.exit_code, 0) << alone.err;
    const std::string line = GeneratedLine(together.out, s);
    ASSERT_FALSE(line.empty()) << together.out;
    EXPECT_EQ(line.substr(line.find(':')), GeneratedLine(alone.out, 0).substr(line.find(':')));
  }
  // One prompt that could never fit is refused before any work.
  const ToolRun never =
      Run({"demo.plan", "--prompt-ids", Ids(600), "--kv-cache-mb", "1", "--max-new-tokens", "16"});
  EXPECT_EQ(never.exit_code, 1);
  EXPECT_NE(never.err.find("request 0 needs up to 39 KV cache blocks of 16 tokens"),
            std::string::npos)
      << never.err;
  EXPECT_NE(never.err.find("the whole cache has 32"), std::string::npos) << never.err;
}

TEST_F(RunModelTest, CompileModelNeverOverwritesTheModelOrANonPlanFile) {
  const std::string model = *dir_ + "/demo-model";
  const std::string weights = model + "/model.safetensors", config = model + "/config.json";
  ASSERT_TRUE(std::filesystem::exists(weights));
  const std::string weights_before = testing::ReadFile(weights);
  const std::string config_before = testing::ReadFile(config);
  for (const std::string& target : {weights, config}) {
    const ToolRun run = RunTool("compile-model", {model, "-o", target, "-q"}, *dir_);
    EXPECT_EQ(run.exit_code, 1) << target;
    EXPECT_NE(run.err.find("refusing to write the plan to " + target +
                           ": it is a file of the input model directory " + model),
              std::string::npos)
        << run.err;
  }
  // Through a symbolic link, and with MODEL=demo writing the same directory.
  std::filesystem::create_symlink(weights, *dir_ + "/weights-link");
  ToolRun run = RunTool("compile-model", {model, "-o", "weights-link", "-q"}, *dir_);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("it is a file (" + weights + ") of the input model directory"),
            std::string::npos)
      << run.err;
  EXPECT_EQ(testing::ReadFile(weights), weights_before);
  EXPECT_EQ(testing::ReadFile(config), config_before);

  // Any existing file that is not a plan.
  std::ofstream(*dir_ + "/notes.txt") << "keep me\n";
  run = RunTool("compile-model", {"demo", "-o", "notes.txt", "-q"}, *dir_);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("refusing to overwrite notes.txt: it exists and is not a moegraph plan "
                         "(no \"MGPL\" file identifier at byte 4)"),
            std::string::npos)
      << run.err;
  EXPECT_EQ(testing::ReadFile(*dir_ + "/notes.txt"), "keep me\n");

  // An earlier plan is overwritten.
  run = RunTool("compile-model",
                {"demo", "-o", "demo.plan", "-q", "--decode-buckets", "1,2", "--prefill-buckets",
                 "8,16", "--chunk-size", "8", "--max-chunks", "2"},
                *dir_);
  EXPECT_EQ(run.exit_code, 0) << run.err;
}

TEST_F(RunModelTest, CompileModelFlagsAreRanged) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      // 4294967297 used to wrap to 1; 2000 chunks of 1 row did not finish.
      {{"--chunk-size", "4294967297"}, "--chunk-size: 4294967297 is outside the range [1, 65536]"},
      {{"--max-chunks", "2000"}, "--max-chunks: 2000 is outside the range [1, 256]"},
      {{"--max-chunks", "0"}, "--max-chunks: 0 is outside the range [1, 256]"},
      {{"--expert-parallel", "2"}, "unknown option '--expert-parallel'"},
      {{"--ep", "0"}, "--ep: 0 is outside the range [1, 4096]"},
      {{"--max-prefill-seqs", "x"}, "--max-prefill-seqs: 'x' is not an integer"},
      {{"--decode-buckets", "1,,2"}, "--decode-buckets: item 2 of '1,,2' is empty"},
      {{"--prefill-buckets", "16,4294967312"},
       "--prefill-buckets: 4294967312 is outside the range [1, 1048576]"},
      {{"--print-ir-after", "("}, "--print-ir-after: '(' is not a valid regular expression"},
      {{"--bogus"}, "unknown option '--bogus'"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"demo", "-o", "ranged.plan", "-q"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const ToolRun run = RunTool("compile-model", args, *dir_);
    EXPECT_EQ(run.exit_code, 1) << c.expected;
    EXPECT_NE(run.err.find(c.expected), std::string::npos) << run.err;
  }
  EXPECT_FALSE(std::filesystem::exists(*dir_ + "/ranged.plan"));
}

TEST_F(RunModelTest, HelpDocumentsEveryFlag) {
  const ToolRun run = Run({"--help"});
  ASSERT_EQ(run.exit_code, 0);
  for (const char* flag : {"--prompt-ids", "--max-new-tokens", "--eager", "--bench", "--trace",
                           "--temperature", "--top-k", "--top-p", "--seed", "--stop-ids",
                           "--threads", "--kv-cache-mb", "--model-dir"}) {
    EXPECT_NE(run.out.find(flag), std::string::npos) << flag;
  }
  EXPECT_NE(run.out.find("(range [1, 1048576])"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("(range (0, 1])"), std::string::npos) << run.out;
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
