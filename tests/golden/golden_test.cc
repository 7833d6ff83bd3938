// Golden check: moegraph's eager interpreter of the generic graph against
// logits and greedy tokens from Hugging Face transformers.
#include <gtest/gtest.h>

#include <cstring>

#include "frontends/hf_model.h"
#include "interpreter/interpreter.h"
#include "tests/golden/golden_util.h"

namespace moegraph {
namespace {

using testing::Golden;
using testing::LoadGolden;

constexpr float kTolerance = 1e-3f;

class GoldenEagerTest : public ::testing::TestWithParam<std::string> {};

// All sequences of a case run as one batch: a prefill step with prompts of
// different lengths, then 31 decode steps, each compared with transformers.
TEST_P(GoldenEagerTest, PrefillAndGreedyDecodeMatchTransformers) {
  const Golden golden = LoadGolden(GetParam());
  ASSERT_FALSE(golden.sequences.empty()) << "missing golden for " << GetParam();
  StatusOr<HfModel> model = LoadHfModel(golden.dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<WeightArgs> weights = WeightArgs::FromCheckpoint(model->graph, model->checkpoint);
  ASSERT_TRUE(weights.ok()) << weights.status().ToString();
  StatusOr<KvCache> cache = testing::GraphKvCache(*model, /*block_size=*/4, /*num_blocks=*/256);
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  EagerRunner runner(model->graph, *weights, std::move(*cache), 256, 8, 2);

  const int64_t vocab = golden.vocab;
  std::vector<SequenceStep> batch;
  for (size_t s = 0; s < golden.sequences.size(); ++s) {
    batch.push_back(SequenceStep{static_cast<int64_t>(s), golden.sequences[s].prompt, 0});
  }
  StatusOr<HostTensor> logits = runner.Step(batch);
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  float worst = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const auto& seq = golden.sequences[s];
    const float* want = seq.prefill_logits.data() + (seq.prompt.size() - 1) * vocab;
    const float err = testing::MaxAbsDiff(logits->f32() + s * vocab, want, vocab);
    worst = std::max(worst, err);
    EXPECT_LE(err, kTolerance) << "prefill, sequence " << s;
    EXPECT_EQ(testing::Argmax(logits->f32() + s * vocab, vocab), seq.generated[0]);
  }
  const size_t steps = golden.sequences[0].generated.size();
  for (size_t j = 0; j + 1 < steps; ++j) {
    for (size_t s = 0; s < batch.size(); ++s) {
      batch[s].num_cached += static_cast<int32_t>(batch[s].tokens.size());
      batch[s].tokens = {golden.sequences[s].generated[j]};
    }
    logits = runner.Step(batch);
    ASSERT_TRUE(logits.ok()) << logits.status().ToString();
    for (size_t s = 0; s < batch.size(); ++s) {
      const auto& seq = golden.sequences[s];
      const float* got = logits->f32() + s * vocab;
      const float err = testing::MaxAbsDiff(got, seq.decode_logits.data() + j * vocab, vocab);
      worst = std::max(worst, err);
      ASSERT_LE(err, kTolerance) << "decode step " << j << ", sequence " << s;
      ASSERT_EQ(testing::Argmax(got, vocab), seq.generated[j + 1])
          << "greedy token " << j + 1 << ", sequence " << s;
    }
  }
  RecordProperty("max_abs_logit_error", std::to_string(worst));
  std::printf("[ golden ] %s: max abs logit error %.3g over %zu steps\n", GetParam().c_str(), worst,
              steps);
}

INSTANTIATE_TEST_SUITE_P(Goldens, GoldenEagerTest, ::testing::ValuesIn(testing::GoldenCases()));

// transformers initialises norm weights (and biases, gates, correction biases) to constants; a
// golden made with a constant one cannot see a bug in how it is applied. Every tensor of the
// stored checkpoints must hold at least two distinct values.
class GoldenCheckpointTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenCheckpointTest, NoTensorIsConstant) {
  StatusOr<SafetensorsFile> file =
      SafetensorsFile::Open(testing::GoldenDir(GetParam()) + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_FALSE(file->tensors().empty());
  for (const SafetensorsTensor& t : file->tensors()) {
    const size_t element = DTypeBytes(t.dtype);
    ASSERT_GT(t.bytes, element) << t.name << " has one element";
    bool varies = false;
    for (uint64_t i = element; i < t.bytes && !varies; i += element)
      varies = std::memcmp(t.data, t.data + i, element) != 0;
    EXPECT_TRUE(varies) << GetParam() << ": " << t.name << " is constant";
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, GoldenCheckpointTest,
                         ::testing::ValuesIn(testing::GoldenCases()));

}  // namespace
}  // namespace moegraph
