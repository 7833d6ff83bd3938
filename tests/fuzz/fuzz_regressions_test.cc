// The fuzz targets in the normal test suite: every saved reproducer under
// fuzz/regressions/, the seeds the fuzzers start from, and hand-made hostile
// inputs of each input class go through the same target code as the fuzzers
// (a target aborts when a property fails, which fails the test).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "fuzz/fuzz_common.h"
#include "fuzz/fuzz_targets.h"
#include "ir/printer.h"
#include "plan/plan_file.h"
#include "support/mapped_file.h"

namespace moegraph::fuzz {
namespace {

namespace fs = std::filesystem;

using Target = Outcome (*)(const uint8_t*, size_t);

Outcome RunTarget(Target target, std::string_view bytes) {
  return target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string WithSelector(uint8_t selector, std::string_view rest) {
  return std::string(1, static_cast<char>(selector)) + std::string(rest);
}

std::string U64Le(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

// Replays fuzz/regressions/<folder>/* (they must not crash); returns how many ran.
int ReplayRegressions(const std::string& folder, Target target) {
  const fs::path dir =
      fs::path(MOEGRAPH_TEST_DATA_DIR) / ".." / ".." / "fuzz" / "regressions" / folder;
  int count = 0;
  if (!fs::is_directory(dir)) return count;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    StatusOr<std::string> bytes = ReadFileToString(entry.path().string());
    EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
    if (!bytes.ok()) continue;
    SCOPED_TRACE(entry.path().string());
    RunTarget(target, *bytes);  // must not crash; any outcome will do
    ++count;
  }
  return count;
}

const std::string& DemoPlanBytes() {
  static const std::string* bytes = new std::string(SerializePlan(SmallDemoPlan()));
  return *bytes;
}

std::string Flipped(std::string bytes, size_t at) {
  bytes[at % bytes.size()] ^= 0x5A;
  return bytes;
}

constexpr Outcome kSkipped = Outcome::kSkipped, kRejected = Outcome::kRejected,
                  kAccepted = Outcome::kAccepted;

TEST(FuzzRegressions, Plan) {
  ReplayRegressions("plan", FuzzPlan);
  const std::string& plan = DemoPlanBytes();
  EXPECT_EQ(RunTarget(FuzzPlan, plan), kAccepted);
  EXPECT_EQ(RunTarget(FuzzPlan, ""), kRejected);
  EXPECT_EQ(RunTarget(FuzzPlan, std::string_view(plan).substr(0, plan.size() / 2)), kRejected);
  for (size_t at : {size_t{0}, size_t{4}, size_t{9}, plan.size() / 3, plan.size() - 1})
    RunTarget(FuzzPlan, Flipped(plan, at));  // must not crash
  EXPECT_EQ(RunTarget(FuzzPlan, std::string(kMaxPlanBytes + 1, 'x')), kSkipped);
  // An int8 plan: i8 int8_block weights read from Plan::packed_weight_files.
  const std::string int8 = SerializePlan(SmallDemoInt8Plan());
  EXPECT_EQ(RunTarget(FuzzPlan, int8), kAccepted);
  for (size_t at : {size_t{9}, int8.size() / 3, int8.size() / 2, int8.size() - 1})
    RunTarget(FuzzPlan, Flipped(int8, at));  // must not crash
}

// Found by fuzz-plan: a NaN among a step's floats loaded, and made the
// round-trip check fail (NaN != NaN). Load-time validation now refuses
// non-finite kernel floats, so the plan is rejected with an error.
TEST(FuzzRegressions, PlanWithNanFloatIsRefused) {
  Plan plan = SmallDemoPlan();
  bool changed = false;
  for (KernelStep& step : plan.programs[0].steps) {
    if (!step.floats.empty() && !changed) {
      step.floats[0] = std::numeric_limits<float>::quiet_NaN();
      changed = true;
    }
  }
  ASSERT_TRUE(changed);
  EXPECT_EQ(RunTarget(FuzzPlan, SerializePlan(plan)), kRejected);
}

TEST(FuzzRegressions, PlanEngine) {
  ReplayRegressions("plan_engine", FuzzPlanEngine);
  const std::string& plan = DemoPlanBytes();
  EXPECT_EQ(RunTarget(FuzzPlanEngine, plan), kAccepted) << "loads, prefills and decodes";
  EXPECT_EQ(RunTarget(FuzzPlanEngine, std::string_view(plan).substr(0, 100)), kRejected);
  for (size_t at : {plan.size() / 5, plan.size() / 2, plan.size() - 9})
    RunTarget(FuzzPlanEngine, Flipped(plan, at));  // must not crash
}

TEST(FuzzRegressions, Safetensors) {
  ReplayRegressions("safetensors", FuzzSafetensors);
  const auto kFile = static_cast<uint8_t>(SafetensorsInput::kFile);
  const auto kIndex = static_cast<uint8_t>(SafetensorsInput::kIndex);
  auto file = [&](std::string_view bytes) {
    return RunTarget(FuzzSafetensors, WithSelector(kFile, bytes));
  };
  auto index = [&](std::string_view json) {
    return RunTarget(FuzzSafetensors, WithSelector(kIndex, json));
  };
  EXPECT_EQ(RunTarget(FuzzSafetensors, ""), kSkipped);
  EXPECT_EQ(file(SmallSafetensorsFile()), kAccepted);
  EXPECT_EQ(file(U64Le(2) + "{}"), kAccepted) << "no tensors, no data";
  EXPECT_EQ(file(U64Le(~uint64_t{0}) + "{}"), kRejected) << "header length past the file";
  EXPECT_EQ(file(U64Le(3) + "{}"), kRejected);
  const std::string one_tensor = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_EQ(file(U64Le(one_tensor.size()) + one_tensor + "1234"), kAccepted);
  EXPECT_EQ(file(U64Le(one_tensor.size()) + one_tensor + "12"), kRejected) << "data cut short";
  EXPECT_EQ(file(U64Le(10000) + std::string(10000, '[')), kRejected) << "nested too deep";
  EXPECT_EQ(index(ShardedCheckpointIndex()), kAccepted);
  EXPECT_EQ(index(R"({"weight_map": {"a": 1}})"), kRejected);
  EXPECT_EQ(index(R"({"weight_map": {"a": "../x"}})"), kRejected);
  EXPECT_EQ(index(R"({"weight_map": []})"), kRejected);
  EXPECT_EQ(index("[]"), kRejected);
}

TEST(FuzzRegressions, Config) {
  ReplayRegressions("config", FuzzConfig);
  const std::string demo = DemoModelConfig().ToJson();
  EXPECT_EQ(RunTarget(FuzzConfig, demo), kAccepted) << "parses, builds and verifies";
  Qwen3MoeConfig tied = DemoModelConfig();
  tied.tie_word_embeddings = true;
  tied.mlp_only_layers = {0, 1};
  EXPECT_EQ(RunTarget(FuzzConfig, tied.ToJson()), kAccepted);
  Qwen3MoeConfig large = DemoModelConfig();
  large.vocab_size = 151936;
  EXPECT_EQ(RunTarget(FuzzConfig, large.ToJson()), kSkipped) << "too large to write weights for";
  EXPECT_EQ(RunTarget(FuzzConfig, ""), kRejected);
  EXPECT_EQ(RunTarget(FuzzConfig, std::string(5000, '{')), kRejected);
  EXPECT_EQ(RunTarget(FuzzConfig, std::string_view(demo).substr(0, demo.size() / 2)), kRejected);
  EXPECT_EQ(
      RunTarget(FuzzConfig, R"({"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 1e400})"),
      kRejected);
}

TEST(FuzzRegressions, Ir) {
  ReplayRegressions("ir", FuzzIr);
  StatusOr<HfModel> model = LoadHfModel(DemoModelDir());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::string generic = PrintGraph(model->graph);
  for (uint8_t k = 0; k < kNumIrKeys; ++k)
    EXPECT_EQ(RunTarget(FuzzIr, WithSelector(k, generic)), kAccepted) << "key " << int{k};
  EXPECT_EQ(RunTarget(FuzzIr, WithSelector(0, std::string_view(generic).substr(0, 2000))),
            kRejected);
  EXPECT_EQ(RunTarget(FuzzIr, ""), kSkipped);
  EXPECT_EQ(RunTarget(FuzzIr, WithSelector(1, "graph @g(")), kRejected);
}

}  // namespace
}  // namespace moegraph::fuzz
