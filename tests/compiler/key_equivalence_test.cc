// Every key's lowered program, run by the CPU backend, matches the generic
// graph run by the eager interpreter: prefill and decode, 1/2/3+ MoE chunks,
// empty chunks, and real token counts that do not fill the bucket.
#include <gtest/gtest.h>

#include "compiler/compile_model.h"
#include "interpreter/interpreter.h"
#include "runtime/engine.h"
#include "tests/golden/golden_util.h"
#include "tests/testing/engine_compare.h"

namespace moegraph {
namespace {

constexpr float kTolerance = 1e-3f;

CompileModelOptions SmallKeys(int32_t expert_parallel) {
  CompileModelOptions options;
  options.keys.chunk_size = 8;
  options.keys.max_chunks = 8;
  options.keys.expert_parallel = expert_parallel;
  // The interpreter's cache below is f32: so is the plan's.
  options.kv_dtype = DType::kF32;
  options.keys.prefill_buckets = {8, 16, 32, 64};
  options.keys.decode_buckets = {1, 2, 4, 8};
  options.keys.max_prefill_seqs = 4;
  return options;
}

struct Reference {
  HfModel model;
  WeightArgs weights;
  std::unique_ptr<EagerRunner> runner;
};

std::unique_ptr<Reference> MakeReference(const std::string& dir) {
  StatusOr<HfModel> model = LoadHfModel(dir);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  auto ref = std::make_unique<Reference>(Reference{std::move(*model), WeightArgs(), nullptr});
  StatusOr<WeightArgs> weights =
      WeightArgs::FromCheckpoint(ref->model.graph, ref->model.checkpoint);
  EXPECT_TRUE(weights.ok()) << weights.status().ToString();
  ref->weights = std::move(*weights);
  KvCacheConfig kv =
      KvCacheConfig::Uniform(static_cast<int32_t>(ref->model.decoder().num_hidden_layers),
                             static_cast<int32_t>(ref->model.decoder().num_key_value_heads),
                             static_cast<int32_t>(ref->model.decoder().head_dim));
  kv.block_size = 16;
  kv.num_blocks = 64;
  ref->runner = std::make_unique<EagerRunner>(ref->model.graph, ref->weights,
                                              std::move(*KvCache::Create(kv)), 128, 8, 2);
  return ref;
}

// Runs `prompt_lengths` as one prefill step then `decode_steps` decode steps
// through both paths; returns the keys the engine used.
std::vector<SpecKey> CompareSteps(Engine& engine, Reference& ref, std::vector<int> prompt_lengths,
                                  int decode_steps, int64_t first_id) {
  std::vector<SpecKey> used;
  const int vocab = engine.plan().model.vocab_size;
  std::vector<SequenceStep> batch = testing::PromptBatch(prompt_lengths, vocab, first_id);
  for (int step = 0; step <= decode_steps; ++step) {
    StatusOr<StepLogits> got = engine.Step(batch);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    StatusOr<HostTensor> want = ref.runner->Step(batch);
    EXPECT_TRUE(want.ok()) << want.status().ToString();
    if (!got.ok() || !want.ok()) return used;
    used.push_back(engine.last_key());
    for (size_t s = 0; s < batch.size(); ++s) {
      const float err =
          testing::MaxAbsDiff(got->row(static_cast<int32_t>(s)), want->f32() + s * vocab, vocab);
      EXPECT_LE(err, kTolerance) << engine.last_key().ToString() << " sequence " << s;
    }
    testing::AdvanceGreedy(
        batch, [&](int32_t row) { return got->row(row); }, vocab);
  }
  for (const SequenceStep& s : batch) {
    engine.Release(s.seq_id);
    ref.runner->Release(s.seq_id);
  }
  return used;
}

class KeyEquivalenceTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(KeyEquivalenceTest, LoweredProgramsMatchGenericGraph) {
  const auto& [name, expert_parallel] = GetParam();
  std::unique_ptr<Reference> ref = MakeReference(testing::GoldenDir(name));
  ASSERT_NE(ref, nullptr);
  StatusOr<Plan> plan = CompileModel(ref->model, SmallKeys(expert_parallel));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EngineOptions options;
  options.num_threads = 2;
  options.kv_block_size = 8;
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(*plan, options);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();

  std::vector<SpecKey> used;
  auto add = [&](const std::vector<SpecKey>& keys) {
    used.insert(used.end(), keys.begin(), keys.end());
  };
  add(CompareSteps(**engine, *ref, {5}, 2, 100));        // 1 chunk, bucket 8 half full
  add(CompareSteps(**engine, *ref, {9, 4, 1}, 3, 200));  // 14 tokens: 2 chunks of bucket 16
  add(CompareSteps(**engine, *ref, {13, 7}, 1, 300));    // 20 tokens: 3 chunks of bucket 32
  add(CompareSteps(**engine, *ref, {40}, 1, 400));       // 40 tokens: 5 chunks of bucket 64
  bool saw_decode = false, saw[4] = {false, false, false, false};
  for (const SpecKey& k : used) {
    saw_decode |= k.phase == MoePhase::kDecode;
    if (k.phase == MoePhase::kPrefill && k.moe_num_chunk <= 3) saw[k.moe_num_chunk] = true;
    if (expert_parallel > 1) {
      EXPECT_EQ(k.max_moe_num_chunk, 8) << "expert-parallel keys run every chunk";
    }
  }
  EXPECT_TRUE(saw_decode && saw[1] && saw[2] && saw[3]);
}

INSTANTIATE_TEST_SUITE_P(Goldens, KeyEquivalenceTest,
                         ::testing::Combine(::testing::ValuesIn(testing::GoldenCases()),
                                            ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) > 1 ? "_ep2" : "");
                         });

}  // namespace
}  // namespace moegraph
