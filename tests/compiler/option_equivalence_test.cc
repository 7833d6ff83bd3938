// Pipeline and runtime options that must not change results: fusion on/off,
// the MoE chunk size, eager against replay, the thread count and the kernel
// set (optimised against reference). Each variant runs the same steps as the
// baseline plan (prefill over several MoE chunks and partly filled buckets,
// then decode) on every golden model, and its logits must match the
// baseline's on every key it reaches.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <tuple>

#include "compiler/compile_model.h"
#include "frontends/hf_model.h"
#include "runtime/engine.h"
#include "tests/golden/golden_util.h"
#include "tests/testing/engine_compare.h"

namespace moegraph {
namespace {

struct Variant {
  std::string name;
  bool fuse = true;
  int32_t chunk_size = 8;
  bool eager = false;
  int num_threads = 2;
  std::string backend = "cpu";
  float tolerance = 0.0f;  // max abs logit difference against the baseline
};

// The baseline is fused, chunk size 8, replayed, two threads, optimised CPU kernels.
std::vector<Variant> Variants() {
  return {
      // Fusion changes which kernels run, not what they compute.
      {.name = "unfused", .fuse = false, .tolerance = 1e-5f},
      // Another chunk size gives other chunk boundaries and other keys.
      {.name = "chunk_size_5", .chunk_size = 5, .tolerance = 1e-5f},
      {.name = "unfused_chunk_size_5", .fuse = false, .chunk_size = 5, .tolerance = 1e-5f},
      // Replay must be bit-identical to eager, and kernels deterministic for any thread count.
      {.name = "eager", .eager = true, .tolerance = 0.0f},
      {.name = "one_thread", .num_threads = 1, .tolerance = 0.0f},
      // The reference kernels accumulate in another order.
      {.name = "reference_kernels", .backend = "cpu-reference", .tolerance = 1e-4f},
      {.name = "reference_kernels_unfused",
       .fuse = false,
       .backend = "cpu-reference",
       .tolerance = 1e-4f},
  };
}

CompileModelOptions Options(const Variant& v) {
  CompileModelOptions options;
  options.keys.chunk_size = v.chunk_size;
  options.keys.max_chunks = 16;
  options.keys.prefill_buckets = {8, 16, 32, 64};
  options.keys.decode_buckets = {1, 2, 4, 8};
  options.keys.max_prefill_seqs = 4;
  options.pipeline.fuse = v.fuse;
  // An f32 KV cache: rounding to a 16-bit cache turns the last-ulp differences
  // these options may make into steps of a 16-bit ulp (kv_dtype_test bounds those).
  options.kv_dtype = DType::kF32;
  return options;
}

std::unique_ptr<Engine> Load(const HfModel& model, const Variant& v) {
  StatusOr<Plan> plan = CompileModel(model, Options(v));
  EXPECT_TRUE(plan.ok()) << v.name << ": " << plan.status().ToString();
  if (!plan.ok()) return nullptr;
  EngineOptions options;
  options.num_threads = v.num_threads;
  options.eager = v.eager;
  options.backend = v.backend;
  options.kv_block_size = 8;
  options.kv_cache_bytes = 8ull << 20;
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(*plan, options);
  EXPECT_TRUE(engine.ok()) << v.name << ": " << engine.status().ToString();
  return engine.ok() ? std::move(*engine) : nullptr;
}

// Runs one prefill of `prompt_lengths` then `decode_steps` greedy decode
// steps on both engines, feeding both the baseline's tokens; returns the keys
// the variant used.
std::set<std::string> Compare(Engine& base, Engine& variant, const Variant& v,
                              std::vector<int> prompt_lengths, int decode_steps, int64_t first_id) {
  std::set<std::string> keys;
  const int vocab = base.plan().model.vocab_size;
  testing::StepBothGreedy(base, variant, prompt_lengths, decode_steps, first_id,
                          [&](int step, size_t s, const float* got, const float* want) {
                            const std::string key = variant.last_key().ToString();
                            keys.insert(key);
                            EXPECT_LE(testing::MaxAbsDiff(got, want, vocab), v.tolerance)
                                << v.name << " at " << key << ", sequence " << s << ", step "
                                << step;
                            EXPECT_EQ(testing::Argmax(got, vocab), testing::Argmax(want, vocab))
                                << v.name << " at " << key << ", sequence " << s;
                          });
  return keys;
}

class OptionEquivalenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OptionEquivalenceTest, EveryOptionThatMustNotChangeResultsDoesNot) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(GetParam()));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::unique_ptr<Engine> base = Load(*model, Variant{.name = "baseline"});
  ASSERT_NE(base, nullptr);
  for (const Variant& v : Variants()) {
    std::unique_ptr<Engine> variant = Load(*model, v);
    ASSERT_NE(variant, nullptr) << v.name;
    std::set<std::string> keys;
    auto add = [&](const std::set<std::string>& k) { keys.insert(k.begin(), k.end()); };
    add(Compare(*base, *variant, v, {5}, 3, 100));        // top_k pair rows past T in bucket 8
    add(Compare(*base, *variant, v, {9, 4, 1}, 3, 200));  // several chunks, three sequences
    add(Compare(*base, *variant, v, {13, 7}, 2, 300));    // 20 tokens in bucket 32
    add(Compare(*base, *variant, v, {40}, 2, 400));       // 40 tokens in bucket 64
    EXPECT_GE(keys.size(), 6u) << v.name << " reached too few keys";
  }
}

// Steps `batch` on both engines and compares every sequence's logits.
void StepBoth(Engine& fused, Engine& unfused, const std::vector<SequenceStep>& batch,
              const std::string& what) {
  StatusOr<StepLogits> want = fused.Step(batch);
  StatusOr<StepLogits> got = unfused.Step(batch);
  ASSERT_TRUE(want.ok()) << what << ": " << want.status().ToString();
  ASSERT_TRUE(got.ok()) << what << ": " << got.status().ToString();
  ASSERT_EQ(fused.last_key(), unfused.last_key()) << what;
  const int vocab = fused.plan().model.vocab_size;
  for (size_t s = 0; s < batch.size(); ++s) {
    const int32_t row = static_cast<int32_t>(s);
    EXPECT_LE(testing::MaxAbsDiff(got->row(row), want->row(row), vocab), 1e-5f)
        << what << " at " << fused.last_key().ToString() << ", sequence " << s;
    EXPECT_EQ(testing::Argmax(got->row(row), vocab), testing::Argmax(want->row(row), vocab))
        << what << " at " << fused.last_key().ToString() << ", sequence " << s;
  }
}

// Fused and unfused plans agree on every key of the plan, with the optimised
// and the reference CPU kernels: each key gets the step that fills it most
// (the most tokens and sequences it serves).
class FusedUnfusedTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(FusedUnfusedTest, AgreeOnEveryKey) {
  const auto& [golden, backend] = GetParam();
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(golden));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::unique_ptr<Engine> fused = Load(*model, Variant{.name = "fused", .backend = backend});
  std::unique_ptr<Engine> unfused =
      Load(*model, Variant{.name = "unfused", .fuse = false, .backend = backend});
  ASSERT_NE(fused, nullptr);
  ASSERT_NE(unfused, nullptr);
  const KeySetOptions& options = fused->plan().key_options;
  const int vocab = fused->plan().model.vocab_size;
  int64_t next_id = 1000;
  int keys_run = 0;
  for (const KeyProgram& program : fused->plan().programs) {
    const SpecKey& key = program.key;
    const bool decode = key.phase == MoePhase::kDecode;
    // The largest step (tokens, sequences) this key serves.
    int32_t num_tokens = 0, num_seqs = 0;
    for (int32_t n = key.token_bucket; n >= 1 && num_tokens == 0; --n) {
      const int32_t s = decode ? n : std::min({3, key.seq_bucket, n});
      if (KeyForStep(key.phase, n, s, options) == key) num_tokens = n, num_seqs = s;
    }
    ASSERT_GT(num_tokens, 0) << "no step reaches " << key.ToString();
    std::vector<SequenceStep> batch;
    for (int32_t s = 0; s < num_seqs; ++s) {
      const int32_t len = decode ? 1 : num_tokens / num_seqs + (s < num_tokens % num_seqs ? 1 : 0);
      batch.push_back(
          SequenceStep{next_id++, testing::PromptTokens(len, vocab, s), decode ? 2 : 0});
    }
    if (decode) {
      // Cache two prompt tokens per sequence first, a few sequences per step.
      for (size_t first = 0; first < batch.size(); first += 2) {
        std::vector<SequenceStep> prompts;
        for (size_t s = first; s < std::min(batch.size(), first + 2); ++s)
          prompts.push_back(SequenceStep{batch[s].seq_id, testing::PromptTokens(2, vocab, 7), 0});
        StepBoth(*fused, *unfused, prompts, "prompts before " + key.ToString());
      }
    }
    StepBoth(*fused, *unfused, batch, key.ToString());
    EXPECT_EQ(fused->last_key(), key);
    ++keys_run;
    for (const SequenceStep& s : batch) {
      fused->Release(s.seq_id);
      unfused->Release(s.seq_id);
    }
  }
  EXPECT_EQ(keys_run, static_cast<int>(fused->plan().programs.size()));
}

INSTANTIATE_TEST_SUITE_P(Goldens, FusedUnfusedTest,
                         ::testing::Combine(::testing::ValuesIn(testing::GoldenCases()),
                                            ::testing::Values("cpu", "cpu-reference")),
                         [](const auto& info) {
                           std::string name =
                               std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

INSTANTIATE_TEST_SUITE_P(Goldens, OptionEquivalenceTest,
                         ::testing::ValuesIn(testing::GoldenCases()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moegraph
