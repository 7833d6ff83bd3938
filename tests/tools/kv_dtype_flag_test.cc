// compile-model --kv-dtype and what run-model says of the KV cache it sizes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/tools/tool_util.h"

namespace moegraph {
namespace {

using testing::RunTool;
using testing::ToolRun;

class KvDtypeFlagTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "kv_dtype_flag_test_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  ToolRun Compile(const std::string& plan, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {
        "demo", "-o",           plan, "--decode-buckets", "1",         "--prefill-buckets",
        "8",    "--chunk-size", "8",  "--demo-dir",       "demo-model"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunTool("compile-model", args, dir_);
  }
  std::string dir_;
};

TEST_F(KvDtypeFlagTest, TheDtypeIsRecordedAndTheBudgetCountsItsBytes) {
  // The demo checkpoint is bf16: that is the default.
  ToolRun run = Compile("default.plan", {});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("KV cache bf16"), std::string::npos) << run.out;
  run = Compile("f32.plan", {"--kv-dtype", "f32"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("KV cache f32"), std::string::npos) << run.out;
  run = Compile("f16.plan", {"--kv-dtype", "f16"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("KV cache f16"), std::string::npos) << run.out;

  // 16 MiB buys 2x the blocks in 16 bits: the demo's 4 layers x 2 x 2 KV
  // heads x 32 dims x 16 tokens are 32 KiB per f32 block.
  const std::vector<std::string> args = {"--prompt-ids",  "1,2,3", "--max-new-tokens", "2",
                                         "--kv-cache-mb", "16"};
  for (const auto& [plan, want] :
       {std::pair<std::string, std::string>{"default.plan", "KV cache 16.00 MiB bf16 (1024 blocks"},
        {"f16.plan", "KV cache 16.00 MiB f16 (1024 blocks"},
        {"f32.plan", "KV cache 16.00 MiB f32 (512 blocks"}}) {
    std::vector<std::string> a = {plan};
    a.insert(a.end(), args.begin(), args.end());
    run = RunTool("run-model", a, dir_);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.out.find(want), std::string::npos) << run.out;
  }
}

TEST_F(KvDtypeFlagTest, OtherValuesAreAClearError) {
  for (const char* bad : {"f8", "i32", "BF16", ""}) {
    const ToolRun run = Compile("x.plan", {"--kv-dtype", bad});
    EXPECT_EQ(run.exit_code, 1) << bad;
    EXPECT_NE(run.err.find(std::string("--kv-dtype: expected f32, f16 or bf16, got '") + bad + "'"),
              std::string::npos)
        << run.err;
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/x.plan"));
  }
  const ToolRun help = RunTool("compile-model", {"--help"}, dir_);
  EXPECT_NE(help.out.find("--kv-dtype"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace moegraph
