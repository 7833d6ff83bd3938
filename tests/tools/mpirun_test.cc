// run-model as one rank per process under mpirun (Open MPI), on plans of compile-model --ep:
// each prompt's greedy tokens equal one process's, the dispatch log shows the empty chunks
// and the empty forward, and bad input on one rank ends every rank, promptly, with its
// message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/golden/golden_util.h"
#include "tests/tools/tool_util.h"

namespace moegraph {
namespace {

using testing::RunTool;
using testing::ToolRun;

// Runs build/bin/run-model under `mpirun -np ranks` (bounded: a hang fails the test).
ToolRun MpiRun(int ranks, const std::vector<std::string>& args, const std::string& dir,
               const std::string& env = "") {
  const std::string launcher = env + " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " +
                               "OMP_NUM_THREADS=1 timeout 120 " + MOEGRAPH_MPIEXEC +
                               " --oversubscribe -np " + std::to_string(ranks);
  return RunTool("run-model", args, dir, launcher);
}

// "sequence N: ..." lines by N, without the " [rank R]" an mpirun run appends.
std::map<int, std::string> SequenceLines(const std::string& out) {
  std::map<int, std::string> lines;
  size_t at = 0;
  while ((at = out.find("sequence ", at)) != std::string::npos) {
    const size_t end = out.find('\n', at);
    std::string line = out.substr(at, end - at);
    at = end;
    if (line.find(" text: ") != std::string::npos) continue;
    const size_t rank = line.find(" [rank ");
    if (rank != std::string::npos) line.resize(rank);
    lines[std::stoi(line.substr(9))] = line;
  }
  return lines;
}

class MpirunTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "mpirun_test_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  ToolRun Compile(const std::string& model, int ranks, const std::string& plan) {
    return RunTool("compile-model",
                   {model, "-o", plan, "--ep", std::to_string(ranks), "--chunk-size", "8",
                    "--max-chunks", "8", "--prefill-buckets", "8,16,64", "--decode-buckets",
                    "1,2,4", "--max-prefill-seqs", "4", "--kv-dtype", "f32", "-q"},
                   dir_);
  }
  std::string dir_;
};

TEST_P(MpirunTest, RanksGiveOneProcesssTokens) {
  const auto& [name, ranks] = GetParam();
  const std::string model = testing::GoldenDir(name);
  ASSERT_EQ(Compile(model, 1, "one.plan").exit_code, 0);
  const ToolRun compiled = Compile(model, ranks, "ep.plan");
  ASSERT_EQ(compiled.exit_code, 0) << compiled.err;
  // Prompt 0 is 40 tokens (5 chunks of 8) while the others are short: with 3 ranks and 2
  // prompts, rank 2 has none and runs the empty forward every step.
  std::string long_prompt;
  for (int i = 0; i < 40; ++i)
    long_prompt += (i ? "," : "") + std::to_string((i * 7 + 1) % 150);
  const std::string prompts = ranks == 3 ? long_prompt + ";5,6,7" : long_prompt + ";5,6,7;9;3,1";
  const std::vector<std::string> args = {"ep.plan", "--prompt-ids", prompts, "--max-new-tokens",
                                         "6",       "--threads",    "1"};
  std::vector<std::string> one_args = args;
  one_args[0] = "one.plan";
  const ToolRun want = RunTool("run-model", one_args, dir_);
  ASSERT_EQ(want.exit_code, 0) << want.err;
  const ToolRun got = MpiRun(ranks, args, dir_, "MOEGRAPH_LOG=dispatch");
  ASSERT_EQ(got.exit_code, 0) << got.out << got.err;
  const std::map<int, std::string> want_lines = SequenceLines(want.out);
  ASSERT_EQ(want_lines.size(), ranks == 3 ? 2u : 4u) << want.out;
  EXPECT_EQ(SequenceLines(got.out), want_lines) << got.out;
  EXPECT_NE(got.out.find("[rank 1]"), std::string::npos) << got.out;
  EXPECT_NE(got.err.find("empty MoE chunks for the other ranks"), std::string::npos) << got.err;
  if (ranks == 3) {
    EXPECT_NE(got.err.find("the empty forward"), std::string::npos) << got.err;
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, MpirunTest,
                         ::testing::Combine(::testing::ValuesIn(testing::MoeGoldenCases()),
                                            ::testing::Values(2, 3)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_np" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST_F(MpirunTest, BadInputOnOneRankEndsEveryRankWithItsMessage) {
  ASSERT_EQ(Compile(testing::GoldenDir("odd_norm_topk"), 3, "ep.plan").exit_code, 0);
  // Prompt 2 (rank 2's) holds a token past the vocabulary.
  const ToolRun got =
      MpiRun(3, {"ep.plan", "--prompt-ids", "1,2;3;4,99999", "--threads", "1"}, dir_);
  EXPECT_NE(got.exit_code, 0);
  EXPECT_NE(got.exit_code, 124) << "timed out: a rank hung";
  EXPECT_NE(got.err.find("rank 2 of 3: request 2: token id 99999 is outside the vocabulary"),
            std::string::npos)
      << got.err;
}

TEST_F(MpirunTest, AnExpertParallelPlanWithoutMpirunSaysHowToRunIt) {
  ASSERT_EQ(Compile(testing::GoldenDir("odd_norm_topk"), 2, "ep.plan").exit_code, 0);
  const ToolRun got = RunTool("run-model", {"ep.plan"}, dir_);
  EXPECT_EQ(got.exit_code, 1);
  EXPECT_NE(got.err.find("the plan is for 2 expert-parallel ranks (compile-model --ep 2) but no "
                         "communicator was given: run it as `mpirun -np 2 run-model ...`"),
            std::string::npos)
      << got.err;
}

TEST_F(MpirunTest, CompileModelNamesEachRanksPrograms) {
  const ToolRun compiled =
      RunTool("compile-model",
              {testing::GoldenDir("odd_norm_topk"), "-o", "ep.plan", "--ep", "2",
               "--prefill-buckets", "16", "--decode-buckets", "1", "--max-chunks", "1"},
              dir_);
  ASSERT_EQ(compiled.exit_code, 0) << compiled.err;
  EXPECT_NE(compiled.err.find("compiling 2 keys for each of 2 expert-parallel ranks"),
            std::string::npos)
      << compiled.err;
  EXPECT_NE(compiled.err.find("[4/4] rank 1 phase=decode"), std::string::npos) << compiled.err;
  EXPECT_NE(compiled.out.find("wrote ep.plan: 2 keys x 2 expert-parallel ranks"), std::string::npos)
      << compiled.out;
  const ToolRun too_many = RunTool(
      "compile-model", {testing::GoldenDir("odd_norm_topk"), "-o", "ep.plan", "--ep", "9"}, dir_);
  EXPECT_EQ(too_many.exit_code, 1);
  EXPECT_NE(too_many.err.find("9 expert-parallel ranks for "), std::string::npos) << too_many.err;
  EXPECT_NE(too_many.err.find("every rank must own one"), std::string::npos) << too_many.err;
}

// A rank killed in the middle of a generation ends the job: the other ranks do not wait for
// it in a collective (mpirun ends them), within seconds, not at the test's timeout.
TEST_F(MpirunTest, ARankThatDiesEndsTheJobPromptly) {
  const ToolRun compiled =
      RunTool("compile-model", {"demo", "-o", "kill.plan", "--ep", "3", "-q"}, dir_);
  ASSERT_EQ(compiled.exit_code, 0) << compiled.err;
  // Long enough to be killed in the middle: 3000 tokens per sequence.
  const std::string run =
      std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ") +
      "OMP_NUM_THREADS=1 timeout 120 " + MOEGRAPH_MPIEXEC + " --oversubscribe -np 3 " +
      MOEGRAPH_BIN_DIR +
      "/run-model kill.plan --prompt-ids '1,2;3;4' --max-new-tokens 3000 "
      "--ignore-eos --threads 1 >kill.out 2>kill.err";
  // Killed once rank 0 has captured its keys (its progress on stderr), so in the generation.
  const std::string script =
      "cd " + testing::ShellQuote(dir_) + " && { (" + run +
      "; echo $? > kill.rc) & for i in $(seq 300); do grep -q capturing kill.err 2>/dev/null && "
      "break; sleep 0.1; done; sleep 0.5; pkill -9 -n -f 'run-model kill.plan'; wait; }";
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(std::system(script.c_str()), 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string rc = testing::ReadFile(dir_ + "/kill.rc");
  EXPECT_NE(rc, "0\n") << testing::ReadFile(dir_ + "/kill.out");
  EXPECT_NE(rc, "124\n") << "timed out: the other ranks waited for the dead one";
  EXPECT_LT(seconds, 60) << testing::ReadFile(dir_ + "/kill.err");
  EXPECT_NE(testing::ReadFile(dir_ + "/kill.err").find("exited on signal 9"), std::string::npos)
      << testing::ReadFile(dir_ + "/kill.err");
}

// Text prompts: the demo model's gibberish (random weights) holds control bytes, and every
// rank's texts reach rank 0 whole, as one process prints them.
TEST_F(MpirunTest, TextPromptsPrintOneProcesssTexts) {
  const ToolRun compiled =
      RunTool("compile-model", {"demo", "-o", "text.plan", "--ep", "3", "-q"}, dir_);
  ASSERT_EQ(compiled.exit_code, 0) << compiled.err;
  ASSERT_EQ(RunTool("compile-model", {"demo", "-o", "one.plan", "-q"}, dir_).exit_code, 0);
  const std::vector<std::string> args = {
      "text.plan",           "--prompt",         "Hello", "--prompt",  "Bonjour", "--prompt",
      "The quick brown fox", "--max-new-tokens", "12",    "--threads", "1",       "--ids"};
  std::vector<std::string> one_args = args;
  one_args[0] = "one.plan";
  const ToolRun want = RunTool("run-model", one_args, dir_);
  ASSERT_EQ(want.exit_code, 0) << want.err;
  const ToolRun got = MpiRun(3, args, dir_);
  ASSERT_EQ(got.exit_code, 0) << got.out << got.err;
  // "sequence N text: ..." up to the next "sequence " line, by N.
  const auto texts = [](const std::string& out) {
    std::map<int, std::string> by_id;
    size_t at = 0;
    while ((at = out.find(" text: ", at)) != std::string::npos) {
      const size_t start = out.rfind("sequence ", at);
      const size_t end = out.find("\nsequence ", at);
      by_id[std::stoi(out.substr(start + 9))] = out.substr(at, end - at);
      at = end == std::string::npos ? out.size() : end;
    }
    return by_id;
  };
  const std::map<int, std::string> want_texts = texts(want.out);
  ASSERT_EQ(want_texts.size(), 3u) << want.out;
  EXPECT_EQ(texts(got.out), want_texts) << got.out;
  EXPECT_EQ(SequenceLines(got.out), SequenceLines(want.out)) << got.out;
}

}  // namespace
}  // namespace moegraph
