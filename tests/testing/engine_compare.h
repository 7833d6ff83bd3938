// Running two engines on the same batch, step for step: the equivalence tests' common loop.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/engine.h"
#include "tests/golden/golden_util.h"

namespace moegraph::testing {

// n deterministic prompt ids below `vocab`; `salt` gives each sequence its own.
inline std::vector<int32_t> PromptTokens(int n, int vocab, int salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = (i * 37 + salt * 11 + 3) % vocab;
  return t;
}

// One sequence per length (ids from `first_id`), nothing cached yet.
inline std::vector<SequenceStep> PromptBatch(const std::vector<int>& lengths, int vocab,
                                             int64_t first_id) {
  std::vector<SequenceStep> batch;
  for (size_t s = 0; s < lengths.size(); ++s) {
    batch.push_back(SequenceStep{first_id + static_cast<int64_t>(s),
                                 PromptTokens(lengths[s], vocab, static_cast<int>(s)), 0});
  }
  return batch;
}

// After a step: every sequence has cached what it fed, and next feeds the argmax of its row.
inline void AdvanceGreedy(std::vector<SequenceStep>& batch,
                          const std::function<const float*(int32_t)>& row, int vocab) {
  for (size_t s = 0; s < batch.size(); ++s) {
    batch[s].num_cached += static_cast<int32_t>(batch[s].tokens.size());
    batch[s].tokens = {Argmax(row(static_cast<int32_t>(s)), vocab)};
  }
}

// Prefills `prompt_lengths` as one step, then runs `decode_steps` greedy steps, on both engines,
// feeding both `base`'s tokens. After each step both ran, `check(step, seq, got, want)` sees
// each sequence's logit row (`got` from `variant`). Stops at the first failed step (a test
// failure); releases the sequences from both engines.
inline void StepBothGreedy(
    Engine& base, Engine& variant, const std::vector<int>& prompt_lengths, int decode_steps,
    int64_t first_id,
    const std::function<void(int step, size_t seq, const float* got, const float* want)>& check) {
  const int vocab = base.plan().model.vocab_size;
  std::vector<SequenceStep> batch = PromptBatch(prompt_lengths, vocab, first_id);
  for (int step = 0; step <= decode_steps; ++step) {
    StatusOr<StepLogits> want = base.Step(batch);
    StatusOr<StepLogits> got = variant.Step(batch);
    EXPECT_TRUE(want.ok()) << want.status().ToString();
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    if (!want.ok() || !got.ok()) break;
    for (size_t s = 0; s < batch.size(); ++s) {
      const int32_t row = static_cast<int32_t>(s);
      check(step, s, got->row(row), want->row(row));
    }
    AdvanceGreedy(
        batch, [&](int32_t row) { return want->row(row); }, vocab);
  }
  for (const SequenceStep& s : batch) {
    base.Release(s.seq_id);
    variant.Release(s.seq_id);
  }
}

}  // namespace moegraph::testing
