// Engine and Generator: golden generation through capture/replay, replay ==
// eager bit for bit, and the errors a serving loop must get right.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "runtime/synthetic_step.h"
#include "tests/golden/golden_util.h"

namespace moegraph {
namespace {

namespace fs = std::filesystem;

StatusOr<Plan> Compile(const std::string& dir, const KeySetOptions& keys) {
  MG_ASSIGN_OR_RETURN(HfModel model, LoadHfModel(dir));
  CompileModelOptions options;
  options.keys = keys;
  return CompileModel(model, options);
}

KeySetOptions SmallBuckets() {
  KeySetOptions keys;
  keys.chunk_size = 16;
  keys.max_chunks = 4;
  keys.prefill_buckets = {4, 8, 16};
  keys.decode_buckets = {1, 2, 4};
  keys.max_prefill_seqs = 4;
  return keys;
}

std::unique_ptr<Engine> LoadOrDie(Plan plan, EngineOptions options = {}) {
  options.num_threads = 2;
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(std::move(plan), options);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  return engine.ok() ? std::move(*engine) : nullptr;
}

class GeneratorGoldenTest : public ::testing::TestWithParam<std::string> {};

// All four prompts (5, 17, 1 and 40 tokens) generate together; prompts longer
// than the largest prefill bucket (16) are prefilled over several steps.
TEST_P(GeneratorGoldenTest, GreedyTokensMatchTransformers) {
  const testing::Golden golden = testing::LoadGolden(GetParam());
  ASSERT_FALSE(golden.sequences.empty());
  StatusOr<Plan> plan = Compile(golden.dir, SmallBuckets());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  Generator generator(*engine);
  for (size_t i = 0; i < golden.sequences.size(); ++i) {
    SamplingParams greedy;
    greedy.max_new_tokens = static_cast<int32_t>(golden.sequences[i].generated.size());
    ASSERT_TRUE(generator.Add({static_cast<int64_t>(i), golden.sequences[i].prompt, greedy}).ok());
  }
  StatusOr<std::vector<GenerationResult>> results = generator.RunToCompletion();
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->size(), golden.sequences.size());
  for (size_t i = 0; i < results->size(); ++i) {
    EXPECT_EQ((*results)[i].tokens, golden.sequences[i].generated) << "sequence " << i;
  }
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), engine->kv_cache().config().num_blocks)
      << "finished sequences give their KV blocks back";
}

INSTANTIATE_TEST_SUITE_P(Qwen3Moe, GeneratorGoldenTest,
                         ::testing::ValuesIn(testing::GoldenCases()));

class DemoEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/moegraph-engine-demo-" +
                           std::to_string(::getpid()));
    ASSERT_TRUE(WriteDemoModel(*dir_).ok());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* DemoEngineTest::dir_ = nullptr;

// A batch that selects `key` (decode keys need one cached token per sequence).
std::vector<SequenceStep> BatchFor(Engine& engine, const SpecKey& key, int64_t first_id) {
  const int vocab = engine.plan().model.vocab_size;
  std::vector<SequenceStep> batch;
  if (key.phase == MoePhase::kDecode) {
    for (int32_t i = 0; i < key.token_bucket; ++i) {
      const int64_t id = first_id + i;
      EXPECT_TRUE(engine.Step({SequenceStep{id, {i % vocab}, 0}}).ok());
      batch.push_back(SequenceStep{id, {(5 * i + 1) % vocab}, 1});
    }
    return batch;
  }
  const int32_t tokens =
      std::min(key.token_bucket, key.moe_num_chunk * engine.plan().key_options.chunk_size);
  std::vector<int32_t> prompt(tokens);
  for (int32_t i = 0; i < tokens; ++i)
    prompt[i] = (i * 13 + 7) % vocab;
  batch.push_back(SequenceStep{first_id, prompt, 0});
  return batch;
}

// Replay and eager run the same kernels on the same buffers: the logits must
// be bit-identical for every key of the demo plan (compile-model's defaults).
TEST_F(DemoEngineTest, ReplayEqualsEagerBitForBitOnEveryKey) {
  StatusOr<Plan> plan = Compile(*dir_, KeySetOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  int64_t next_id = 0;
  int checked = 0;
  for (const KeyProgram& program : engine->plan().programs) {
    std::vector<float> logits[2];
    for (int eager = 0; eager < 2; ++eager) {
      engine->set_eager(eager == 1);
      std::vector<SequenceStep> batch = BatchFor(*engine, program.key, next_id);
      next_id += 100;
      StatusOr<StepLogits> out = engine->Step(batch);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      ASSERT_EQ(engine->last_key(), program.key);
      logits[eager] = out->data;
      for (const SequenceStep& s : batch)
        engine->Release(s.seq_id);
    }
    ASSERT_EQ(logits[0].size(), logits[1].size());
    EXPECT_EQ(std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)), 0)
        << program.key.ToString();
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(engine->plan().programs.size()));
}

TEST_F(DemoEngineTest, MissingKeyNamesNeededAndAvailableKeys) {
  StatusOr<Plan> plan = Compile(*dir_, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  std::vector<int32_t> prompt(17, 3);  // more than the largest prefill bucket
  StatusOr<StepLogits> out = engine->Step({SequenceStep{1, prompt, 0}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kNotFound);
  EXPECT_NE(out.status().message().find("needs phase=prefill,chunks=2,max_chunks=2,tokens=17"),
            std::string::npos)
      << out.status().message();
  EXPECT_NE(out.status().message().find("phase=prefill,chunks=1,max_chunks=1,tokens=16,seqs=4"),
            std::string::npos);
  EXPECT_EQ(engine->CachedTokens(1), 0) << "a failed step changes nothing";
}

TEST_F(DemoEngineTest, BadTokenIdsAndInconsistentBatchesAreErrors) {
  StatusOr<Plan> plan = Compile(*dir_, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  StatusOr<StepLogits> out = engine->Step({SequenceStep{1, {1, 512, 2}, 0}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("token id 512 at 1 is outside the vocabulary [0, 512)"),
            std::string::npos)
      << out.status().message();
  out = engine->Step({SequenceStep{1, {-1}, 0}});
  EXPECT_FALSE(out.ok());
  out = engine->Step({SequenceStep{1, {1}, 5}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("says 5 tokens are cached, the engine holds 0"),
            std::string::npos);
  out = engine->Step({SequenceStep{1, {1}, 0}, SequenceStep{1, {2}, 0}});
  EXPECT_FALSE(out.ok());
  EXPECT_FALSE(engine->Step({}).ok());
}

TEST_F(DemoEngineTest, KvExhaustionIsAnErrorAndOverwritesNothing) {
  StatusOr<Plan> plan = Compile(*dir_, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  EngineOptions options;
  options.kv_block_size = 4;
  // Room for 3 blocks: demo KV block = 2 (k,v) * 4 layers * 4 tokens * 2 heads * 32 * 2 B
  // (bf16, the demo checkpoint's dtype and so its default KV dtype) = 4 KiB.
  options.kv_cache_bytes = 3 * 4096;
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan), options);
  ASSERT_NE(engine, nullptr);
  ASSERT_EQ(engine->kv_cache().config().num_blocks, 3);
  ASSERT_TRUE(engine->Step({SequenceStep{1, {1, 2, 3, 4, 5, 6, 7, 8}, 0}}).ok());
  ASSERT_EQ(engine->kv_cache().num_free_blocks(), 1);
  StatusOr<StepLogits> out = engine->Step({SequenceStep{2, {1, 2, 3, 4, 5, 6}, 0}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(out.status().message().find("needs 2 more blocks, 1 of 3 are free"), std::string::npos)
      << out.status().message();
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), 1);
  EXPECT_EQ(engine->CachedTokens(1), 8);
  EXPECT_EQ(engine->CachedTokens(2), 0);
  // A batch whose first sequence fits and whose second does not gives the
  // first one's new block back too: a failed step leaves the cache as it was.
  out = engine->Step({SequenceStep{3, {1, 2, 3}, 0}, SequenceStep{2, {1, 2, 3, 4, 5, 6}, 0}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), 1);
  EXPECT_FALSE(engine->kv_cache().Has(3));
  // Sequence 1 still decodes correctly after the refusal.
  EXPECT_TRUE(engine->Step({SequenceStep{1, {9}, 8}}).ok());
}

// The default budget is what the plan can use: its largest sequence bucket, each sequence at
// max_position_embeddings (the demo's 2048), not a fixed size.
TEST_F(DemoEngineTest, DefaultKvBudgetIsWhatThePlanCanUse) {
  StatusOr<Plan> plan = Compile(*dir_, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  int32_t max_seqs = 0;
  for (const KeyProgram& p : plan->programs)
    max_seqs = std::max(max_seqs, p.key.seq_bucket);
  const int64_t positions = plan->model.max_position_embeddings;
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  const int32_t block_size = EngineOptions{}.kv_block_size;
  EXPECT_EQ(engine->kv_cache().config().num_blocks,
            max_seqs * ((positions + block_size - 1) / block_size));
  // One sequence can fill its whole context.
  EXPECT_EQ(engine->kv_cache().BlocksFor(positions),
            engine->kv_cache().config().num_blocks / max_seqs);
}

// Real decode (the benchmarks' headline): prompts longer than the largest prefill bucket are
// prefilled over several steps, every sequence decodes at increasing positions, and the cache
// is empty afterwards; a batch or a context the plan cannot take is refused.
TEST_F(DemoEngineTest, RealDecodeRunsAtIncreasingPositionsAndReleases) {
  StatusOr<Plan> plan = Compile(*dir_, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  const int64_t positions = plan->model.max_position_embeddings;
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  const int32_t total = engine->kv_cache().config().num_blocks;
  StatusOr<DecodeRun> run = RunRealDecode(*engine, 3, 21, 5);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->batch, 3);
  EXPECT_EQ(run->steps, 5);
  EXPECT_GT(run->seconds, 0);
  EXPECT_GT(run->tokens_per_second(), 0);
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), total);
  StatusOr<DecodeRun> too_wide = RunRealDecode(*engine, 5, 4, 2);  // decode buckets 1, 2, 4
  ASSERT_FALSE(too_wide.ok());
  EXPECT_NE(too_wide.status().message().find("decode buckets go up to 4"), std::string::npos)
      << too_wide.status().message();
  StatusOr<DecodeRun> too_long = RunRealDecode(*engine, 1, static_cast<int32_t>(positions), 1);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("max_position_embeddings"), std::string::npos);
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), total);
}

TEST(DefaultKvCacheBytesTest, CapsAtAQuarterOfMemoryAndSaturates) {
  EXPECT_EQ(DefaultKvCacheBytes(4, 128, 4096, uint64_t{1} << 34), 4u * 128 * 4096);
  EXPECT_EQ(DefaultKvCacheBytes(64, 8192, 1 << 20, uint64_t{1} << 34), uint64_t{1} << 32);
  // 2^31 - 1 positions in blocks of 16 times a large block overflows 64 bits: the cap applies.
  EXPECT_EQ(DefaultKvCacheBytes(1 << 20, (int64_t{1} << 31) / 16, uint64_t{1} << 40, 1 << 30),
            uint64_t{1} << 40);
  EXPECT_EQ(DefaultKvCacheBytes(1 << 20, (int64_t{1} << 31) / 16, 4096, 1 << 30), 1u << 28);
  // Unknown memory size: the fallback cap. At least one block.
  EXPECT_EQ(DefaultKvCacheBytes(64, 8192, 1 << 20, 0), kKvCacheFallbackBytes);
  EXPECT_EQ(DefaultKvCacheBytes(1, 1, 4096, 8192), 4096u);
}

TEST_F(DemoEngineTest, ChangedCheckpointIsRefusedAtLoad) {
  const std::string copy =
      ::testing::TempDir() + "/moegraph-engine-changed-" + std::to_string(::getpid());
  fs::remove_all(copy);
  fs::copy(*dir_, copy, fs::copy_options::recursive);
  StatusOr<Plan> plan = Compile(copy, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  // Rewrite the checkpoint with another dtype: every offset and size moves.
  DemoModelOptions f32;
  f32.dtype = DType::kF32;
  ASSERT_TRUE(WriteDemoModel(copy, f32).ok());
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(*plan, EngineOptions{});
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("model.embed_tokens.weight"), std::string::npos)
      << engine.status().message();
  EXPECT_NE(engine.status().message().find("expects bf16"), std::string::npos)
      << engine.status().message();
  // A checkpoint that lost a tensor.
  fs::remove(copy + "/model.safetensors");
  engine = Engine::Load(*plan, EngineOptions{});
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("model.safetensors"), std::string::npos);
  fs::remove_all(copy);
}

TEST_F(DemoEngineTest, SamplingIsSeededAndStopTokensEndSequences) {
  StatusOr<Plan> plan = Compile(*dir_, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  auto generate = [&](SamplingParams params) {
    Generator generator(*engine);
    EXPECT_TRUE(generator.Add({7, {1, 2, 3}, params}).ok());
    StatusOr<std::vector<GenerationResult>> r = generator.RunToCompletion();
    EXPECT_TRUE(r.ok());
    return r.ok() ? (*r)[0] : GenerationResult{};
  };
  SamplingParams sampled;
  sampled.temperature = 1.0f;
  sampled.top_k = 50;
  sampled.top_p = 0.9f;
  sampled.seed = 42;
  sampled.max_new_tokens = 10;
  const GenerationResult a = generate(sampled);
  const GenerationResult b = generate(sampled);
  EXPECT_EQ(a.tokens, b.tokens) << "same seed, same tokens";
  EXPECT_EQ(a.tokens.size(), 10u);
  SamplingParams greedy;
  greedy.max_new_tokens = 10;
  const GenerationResult g = generate(greedy);
  SamplingParams stop = greedy;
  stop.stop_tokens = {g.tokens[3]};
  const GenerationResult s = generate(stop);
  const size_t first = std::find(g.tokens.begin(), g.tokens.end(), g.tokens[3]) - g.tokens.begin();
  EXPECT_TRUE(s.stopped_by_token);
  EXPECT_EQ(s.tokens, std::vector<int32_t>(g.tokens.begin(), g.tokens.begin() + first + 1));
}

// Continuous batching: a request joins while another runs, the first finishes
// while the second goes on; each gets exactly the tokens it gets alone.
TEST_F(DemoEngineTest, RequestsJoinAndFinishMidStream) {
  StatusOr<Plan> plan = Compile(*dir_, SmallBuckets());
  ASSERT_TRUE(plan.ok());
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  SamplingParams short_run, long_run;
  short_run.max_new_tokens = 4;
  long_run.max_new_tokens = 9;
  const GenerationRequest a{1, {5, 6, 7, 8, 9, 10}, short_run};
  const GenerationRequest b{2, {11, 3, 2}, long_run};
  auto alone = [&](const GenerationRequest& r) {
    Generator g(*engine);
    EXPECT_TRUE(g.Add(r).ok());
    StatusOr<std::vector<GenerationResult>> out = g.RunToCompletion();
    EXPECT_TRUE(out.ok());
    return out.ok() ? (*out)[0].tokens : std::vector<int32_t>{};
  };
  const std::vector<int32_t> a_alone = alone(a), b_alone = alone(b);

  Generator g(*engine);
  ASSERT_TRUE(g.Add(a).ok());
  std::map<int64_t, std::vector<int32_t>> got;
  for (int step = 0; !g.Idle(); ++step) {
    if (step == 2) {
      ASSERT_TRUE(g.Add(b).ok());
    }
    StatusOr<std::vector<GenerationResult>> done = g.Step();
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    for (const GenerationResult& r : *done)
      got[r.id] = r.tokens;
    if (step == 2) {
      EXPECT_FALSE(got.count(1)) << "a is still running when b joins";
    }
  }
  EXPECT_EQ(got[1], a_alone);
  EXPECT_EQ(got[2], b_alone);
  EXPECT_EQ(engine->kv_cache().num_free_blocks(), engine->kv_cache().config().num_blocks);
}

// Three running sequences and a largest decode bucket of 2: decode steps take
// turns, and every sequence still gets exactly its own greedy tokens.
TEST_F(DemoEngineTest, MoreSequencesThanTheDecodeBucketTakeTurns) {
  KeySetOptions keys = SmallBuckets();
  keys.decode_buckets = {1, 2};
  StatusOr<Plan> plan = Compile(*dir_, keys);
  ASSERT_TRUE(plan.ok());
  std::unique_ptr<Engine> engine = LoadOrDie(std::move(*plan));
  ASSERT_NE(engine, nullptr);
  SamplingParams params;
  params.max_new_tokens = 5;
  const std::vector<GenerationRequest> requests = {
      {1, {4, 5, 6}, params}, {2, {7, 8}, params}, {3, {9, 10, 11, 12}, params}};
  std::map<int64_t, std::vector<int32_t>> alone;
  for (const GenerationRequest& r : requests) {
    Generator g(*engine);
    ASSERT_TRUE(g.Add(r).ok());
    StatusOr<std::vector<GenerationResult>> out = g.RunToCompletion();
    ASSERT_TRUE(out.ok());
    alone[r.id] = (*out)[0].tokens;
  }
  Generator g(*engine);
  for (const GenerationRequest& r : requests)
    ASSERT_TRUE(g.Add(r).ok());
  StatusOr<std::vector<GenerationResult>> together = g.RunToCompletion();
  ASSERT_TRUE(together.ok()) << together.status().ToString();
  ASSERT_EQ(together->size(), 3u);
  for (const GenerationResult& r : *together)
    EXPECT_EQ(r.tokens, alone[r.id]) << r.id;
  // One prefill step, then 4 more tokens for each of 3 sequences, 2 per step.
  EXPECT_EQ(g.num_steps(), 1 + 6);
}

TEST(SampleToken, GreedyTopKTopP) {
  std::mt19937_64 rng(1);
  const float logits[5] = {0.1f, 3.0f, 2.9f, -1.0f, 0.0f};
  SamplingParams greedy;
  EXPECT_EQ(SampleToken(logits, 5, greedy, rng), 1);
  SamplingParams top1;
  top1.temperature = 5.0f;
  top1.top_k = 1;
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(SampleToken(logits, 5, top1, rng), 1);
  SamplingParams nucleus;
  nucleus.temperature = 1.0f;
  nucleus.top_p = 0.5f;  // token 1 alone holds ~0.48; with token 2 the mass passes 0.5
  for (int i = 0; i < 50; ++i) {
    const int32_t t = SampleToken(logits, 5, nucleus, rng);
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
}

}  // namespace
}  // namespace moegraph
