// Quantized checkpoints in their published formats through compile-model and run-model as a
// person runs them: each compiles and generates transformers' greedy tokens. dsv3_fp8 is
// DeepSeek-V3 with every linear F8_E4M3 with weight_scale_inv (kv_b_proj included),
// qwen3_moe_fp8 the Qwen3-FP8 layout, gpt_oss_mxfp4 GPT-OSS with MXFP4 experts
// (*_blocks / *_scales).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "tests/golden/golden_util.h"
#include "tests/tools/tool_util.h"

namespace moegraph {
namespace {

using testing::RunTool;
using testing::ToolRun;

std::string Join(const std::vector<int32_t>& ids, size_t count) {
  std::string out;
  for (size_t i = 0; i < count && i < ids.size(); ++i)
    out += (i ? "," : "") + std::to_string(ids[i]);
  return out;
}

// The ids after "generated " on run-model's "sequence <seq>: prompt N tokens -> generated
// a,b,c" line.
std::string GeneratedIds(const std::string& out, int seq) {
  const size_t at = out.find("sequence " + std::to_string(seq) + ":");
  if (at == std::string::npos) return "";
  const std::string line = out.substr(at, out.find('\n', at) - at);
  const size_t ids = line.find("generated ");
  return ids == std::string::npos ? "" : line.substr(ids + 10);
}

class QuantizedCheckpointTest : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedCheckpointTest, CompilesAndGeneratesTheGoldenTokens) {
  const std::string name = GetParam();
  const testing::Golden golden = testing::LoadGolden(name);
  ASSERT_GE(golden.sequences.size(), 2u) << golden.dir;
  const std::string dir =
      ::testing::TempDir() + "quantized_checkpoint_test_" + name + "_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  // An f32 KV cache: the golden's tokens are transformers' f32 ones.
  const ToolRun compiled =
      RunTool("compile-model",
              {golden.dir, "-o", name + ".plan", "--decode-buckets", "1,2", "--prefill-buckets",
               "8,16", "--chunk-size", "8", "--max-chunks", "2", "--kv-dtype", "f32", "-q"},
              dir);
  ASSERT_EQ(compiled.exit_code, 0) << compiled.err;
  // Prompts of 5 and 17 tokens (the second prefilled over two steps), 32 new tokens each.
  const std::string prompts =
      Join(golden.sequences[0].prompt, 100) + ";" + Join(golden.sequences[1].prompt, 100);
  const ToolRun run = RunTool(
      "run-model", {name + ".plan", "--prompt-ids", prompts, "--max-new-tokens", "32"}, dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(GeneratedIds(run.out, s), Join(golden.sequences[s].generated, 32))
        << "sequence " << s << "\n"
        << run.out;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

INSTANTIATE_TEST_SUITE_P(Goldens, QuantizedCheckpointTest,
                         ::testing::Values("dsv3_fp8", "qwen3_moe_fp8", "gpt_oss_mxfp4"));

}  // namespace
}  // namespace moegraph
