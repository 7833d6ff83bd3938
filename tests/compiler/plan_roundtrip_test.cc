// Compile -> write -> read gives back the same plan; a corrupted real plan is
// an error, never a crash.
#include <gtest/gtest.h>
#include <unistd.h>

#include "compiler/compile_model.h"
#include "plan/plan_file.h"
#include "runtime/program_check.h"
#include "support/mapped_file.h"
#include "tests/golden/golden_util.h"

namespace moegraph {
namespace {

StatusOr<Plan> CompileGolden(const std::string& name) {
  MG_ASSIGN_OR_RETURN(HfModel model, LoadHfModel(testing::GoldenDir(name)));
  CompileModelOptions options;
  options.keys.prefill_buckets = {8, 64};
  options.keys.decode_buckets = {1, 4};
  options.keys.chunk_size = 16;
  return CompileModel(model, options);
}

TEST(PlanRoundTrip, CompiledPlanSurvivesTheFile) {
  StatusOr<Plan> plan = CompileGolden("odd_norm_topk_fused");
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const std::string path =
      ::testing::TempDir() + "/roundtrip-" + std::to_string(::getpid()) + ".plan";
  ASSERT_TRUE(WritePlanFile(*plan, path).ok());
  StatusOr<Plan> read = ReadPlanFile(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(*read == *plan);
  EXPECT_EQ(read->programs.size(), plan->programs.size());
  EXPECT_GT(read->weights.size(), 0u);
}

TEST(PlanRoundTrip, CorruptedRealPlansAreErrors) {
  StatusOr<Plan> plan = CompileGolden("odd_no_norm_tied");
  ASSERT_TRUE(plan.ok());
  const std::string bytes = SerializePlan(*plan);
  int rejected = 0;
  for (size_t cut = 0; cut < bytes.size(); cut += 97) {
    rejected += !DeserializePlan(std::string_view(bytes).substr(0, cut), "cut.plan").ok();
  }
  EXPECT_EQ(rejected, static_cast<int>((bytes.size() + 96) / 97));
  uint64_t state = 12345;
  for (int i = 0; i < 300; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    std::string flipped = bytes;
    flipped[(state >> 33) % flipped.size()] ^= static_cast<char>(1u << ((state >> 20) % 8));
    StatusOr<Plan> p = DeserializePlan(flipped, "flipped.plan");
    if (p.ok()) {
      EXPECT_TRUE(ValidatePlan(*p, "flipped.plan").ok());
    }
  }
  std::string wrong_id = bytes;
  wrong_id[4] = 'X';
  StatusOr<Plan> p = DeserializePlan(wrong_id, "wrong.plan");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("wrong.plan"), std::string::npos);
}

// A plan whose steps break their ops' shape rules must never reach a kernel.
TEST(PlanRoundTrip, StepsAreReverifiedAgainstTheRegistry) {
  StatusOr<Plan> plan = CompileGolden("odd_norm_topk");
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(CheckPlanPrograms(*plan).ok());
  auto find = [](Plan& p, const std::string& kernel) -> KernelStep& {
    for (KernelStep& s : p.programs[0].steps) {
      if (s.kernel == kernel) return s;
    }
    return p.programs[0].steps[0];
  };
  Plan bad_shape = *plan;
  find(bad_shape, "linear").inputs[0].shape[1] += 1;  // x's K no longer matches the weight
  Status status = CheckPlanPrograms(bad_shape);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("('linear'): its arguments break the op's rules: 'linear': K "
                                  "mismatch"),
            std::string::npos)
      << status.message();
  Plan bad_param = *plan;
  find(bad_param, "attention").ints[1] = 0;  // num_heads
  status = CheckPlanPrograms(bad_param);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("'num_heads' = 0 is outside"), std::string::npos)
      << status.message();
  Plan unknown = *plan;
  unknown.programs[0].steps[0].kernel = "launch_missiles";
  status = CheckPlanPrograms(unknown);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("unknown kernel 'launch_missiles'"), std::string::npos);
  Plan missing = *plan;
  find(missing, "rms_norm").floats.clear();
  EXPECT_FALSE(CheckPlanPrograms(missing).ok());
  Plan big_input = *plan;
  find(big_input, "embedding").inputs[0].shape[0] *= 1000;
  status = CheckPlanPrograms(big_input);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("must be the i32 token ids"), std::string::npos);
  Plan half_logits = *plan;
  half_logits.programs[0].logits.dtype = DType::kF16;
  EXPECT_FALSE(CheckPlanPrograms(half_logits).ok());
}

}  // namespace
}  // namespace moegraph
