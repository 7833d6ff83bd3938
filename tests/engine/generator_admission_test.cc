// Generator admission: sampling parameters are checked in one place, requests
// that cannot fit are refused before any work, requests that do not fit at
// once wait for KV blocks, and a generation cut short by the model's context
// says so.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "runtime/engine.h"
#include "runtime/generator.h"

namespace moegraph {
namespace {

namespace fs = std::filesystem;

class GeneratorAdmissionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/moegraph-generator-admission-" +
                           std::to_string(::getpid()));
    ASSERT_TRUE(WriteDemoModel(*dir_).ok());
    StatusOr<HfModel> model = LoadHfModel(*dir_);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    CompileModelOptions options;
    options.keys.chunk_size = 256;
    options.keys.max_chunks = 1;
    options.keys.prefill_buckets = {8, 16, 256};
    options.keys.decode_buckets = {1, 2, 4};
    options.keys.max_prefill_seqs = 4;
    StatusOr<Plan> plan = CompileModel(*model, options);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    plan_ = new Plan(std::move(*plan));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete plan_;
  }

  // An engine whose KV cache holds `num_blocks` blocks of 4 tokens (a demo
  // block: 2 (k, v) * 4 layers * 4 tokens * 2 heads * 32 * 2 B = 4 KiB, in
  // bf16: the demo checkpoint's dtype, so its default KV dtype).
  static std::unique_ptr<Engine> Load(int32_t num_blocks) {
    EngineOptions options;
    options.num_threads = 2;
    options.kv_block_size = 4;
    options.kv_cache_bytes = static_cast<uint64_t>(num_blocks) * 4096;
    StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(*plan_, options);
    EXPECT_TRUE(engine.ok()) << engine.status().ToString();
    if (!engine.ok()) return nullptr;
    EXPECT_EQ((*engine)->kv_cache().config().num_blocks, num_blocks);
    return std::move(*engine);
  }

  static std::string* dir_;
  static Plan* plan_;
};
std::string* GeneratorAdmissionTest::dir_ = nullptr;
Plan* GeneratorAdmissionTest::plan_ = nullptr;

std::vector<int32_t> Prompt(int32_t length, int32_t first) {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < length; ++i)
    ids.push_back((first + 7 * i) % 512);
  return ids;
}

SamplingParams Greedy(int32_t max_new_tokens) {
  SamplingParams params;
  params.max_new_tokens = max_new_tokens;
  return params;
}

TEST(ValidateSamplingParamsTest, RejectsEachFieldOutOfRange) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}).ok());
  SamplingParams fine;
  fine.temperature = 0.7f;
  fine.top_p = 1.0f;
  fine.top_k = 40;
  EXPECT_TRUE(ValidateSamplingParams(fine).ok());

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    SamplingParams params;
    const char* field;
  };
  std::vector<Case> cases;
  for (float t : {nan, inf, -inf, -0.5f}) {
    SamplingParams p;
    p.temperature = t;
    cases.push_back({p, "temperature"});
  }
  for (float top_p : {nan, 0.0f, -0.1f, 1.5f, inf}) {
    SamplingParams p;
    p.top_p = top_p;
    cases.push_back({p, "top_p"});
  }
  SamplingParams k;
  k.top_k = -1;
  cases.push_back({k, "top_k"});
  SamplingParams n;
  n.max_new_tokens = 0;
  cases.push_back({n, "max_new_tokens"});
  for (const Case& c : cases) {
    const Status status = ValidateSamplingParams(c.params);
    ASSERT_FALSE(status.ok()) << c.field;
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message().rfind(c.field, 0), 0u) << status.message();
  }
}

TEST_F(GeneratorAdmissionTest, AddRejectsBadSamplingBeforeAnyStep) {
  std::unique_ptr<Engine> engine = Load(64);
  ASSERT_NE(engine, nullptr);
  Generator generator(*engine);
  SamplingParams bad = Greedy(4);
  bad.temperature = std::numeric_limits<float>::quiet_NaN();
  const Status status = generator.Add({3, {1, 2, 3}, bad});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("request 3"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("temperature"), std::string::npos) << status.message();
  EXPECT_TRUE(generator.Idle());
}

TEST_F(GeneratorAdmissionTest, RequestsThatDoNotFitTogetherWaitForBlocks) {
  // Each request may hold BlocksFor(20 + 8 - 1) = 7 blocks; 16 blocks hold
  // two at a time, so the third waits until one finishes.
  std::vector<GenerationRequest> requests;
  for (int64_t id = 0; id < 3; ++id) {
    requests.push_back({id, Prompt(20, static_cast<int32_t>(3 * id + 1)), Greedy(8)});
  }
  std::vector<GenerationResult> alone;
  {
    std::unique_ptr<Engine> engine = Load(16);
    ASSERT_NE(engine, nullptr);
    for (const GenerationRequest& r : requests) {
      Generator generator(*engine);
      ASSERT_TRUE(generator.Add(r).ok());
      StatusOr<std::vector<GenerationResult>> done = generator.RunToCompletion();
      ASSERT_TRUE(done.ok()) << done.status().ToString();
      alone.push_back((*done)[0]);
    }
  }
  std::unique_ptr<Engine> engine = Load(16);
  ASSERT_NE(engine, nullptr);
  Generator generator(*engine);
  for (const GenerationRequest& r : requests)
    ASSERT_TRUE(generator.Add(r).ok());
  EXPECT_EQ(generator.num_waiting(), 3u);
  StatusOr<std::vector<GenerationResult>> first = generator.Step();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(generator.num_running(), 2u);
  EXPECT_EQ(generator.num_waiting(), 1u);
  StatusOr<std::vector<GenerationResult>> rest = generator.RunToCompletion();
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  ASSERT_EQ(rest->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*rest)[i].id, static_cast<int64_t>(i));
    EXPECT_EQ((*rest)[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ((*rest)[i].tokens.size(), 8u);
  }
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), 16);
}

TEST_F(GeneratorAdmissionTest, RequestLargerThanTheWholeCacheIsRefusedUpFront) {
  std::unique_ptr<Engine> engine = Load(16);
  ASSERT_NE(engine, nullptr);
  Generator generator(*engine);
  // 60 + 8 - 1 = 67 tokens: 17 blocks of 4.
  const Status status = generator.Add({5, Prompt(60, 1), Greedy(8)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("request 5 needs up to 17 KV cache blocks of 4 tokens"),
            std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find("the whole cache has 16"), std::string::npos) << status.message();
  EXPECT_TRUE(generator.Idle());
  // Fewer new tokens fit.
  EXPECT_TRUE(generator.Add({5, Prompt(60, 1), Greedy(4)}).ok());
}

TEST_F(GeneratorAdmissionTest, PromptLongerThanTheContextIsRefusedBeforePrefill) {
  std::unique_ptr<Engine> engine = Load(1024);
  ASSERT_NE(engine, nullptr);
  const int32_t context = engine->plan().model.max_position_embeddings;
  ASSERT_EQ(context, 2048);
  Generator generator(*engine);
  const Status status = generator.Add({0, Prompt(context + 1, 1), Greedy(1)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("prompt of 2049 tokens does not fit the model's context of 2048 "
                                  "positions (max_position_embeddings)"),
            std::string::npos)
      << status.message();
  EXPECT_TRUE(generator.Idle());
  EXPECT_EQ(generator.num_steps(), 0);
}

TEST_F(GeneratorAdmissionTest, GenerationCutShortByTheContextSaysSo) {
  std::unique_ptr<Engine> engine = Load(1024);
  ASSERT_NE(engine, nullptr);
  Generator generator(*engine);
  // Positions 0..2039 hold the prompt; tokens 1..8 take positions 2040..2047
  // as they are fed, and the 9th cannot be fed.
  ASSERT_TRUE(generator.Add({0, Prompt(2040, 1), Greedy(16)}).ok());
  ASSERT_TRUE(generator.Add({1, Prompt(5, 2), Greedy(3)}).ok());
  StatusOr<std::vector<GenerationResult>> done = generator.RunToCompletion();
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  ASSERT_EQ(done->size(), 2u);
  EXPECT_EQ((*done)[0].tokens.size(), 9u);
  EXPECT_TRUE((*done)[0].stopped_by_context);
  EXPECT_FALSE((*done)[0].stopped_by_token);
  EXPECT_EQ((*done)[1].tokens.size(), 3u);
  EXPECT_FALSE((*done)[1].stopped_by_context) << "max_new_tokens ended it";
}

}  // namespace
}  // namespace moegraph
