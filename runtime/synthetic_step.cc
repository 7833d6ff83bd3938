// Synthetic benchmark steps.
#include "runtime/synthetic_step.h"

#include <algorithm>

namespace moegraph {

StatusOr<int32_t> PrepareSyntheticStep(Engine& engine, const SpecKey& key,
                                       std::vector<int64_t>& seqs) {
  const KeySetOptions& ko = engine.plan().key_options;
  std::vector<SequenceStep> batch;
  int64_t next_id = 1 << 30;
  if (key.phase == MoePhase::kDecode) {
    // Give each sequence a one-token prompt, in prefill steps that fit the plan.
    const int32_t group = std::max(1, ko.max_prefill_seqs);
    for (int32_t s = 0; s < key.token_bucket; s += group) {
      std::vector<SequenceStep> prompts;
      for (int32_t i = s; i < std::min(key.token_bucket, s + group); ++i) {
        seqs.push_back(next_id + i);
        prompts.push_back(SequenceStep{next_id + i, {i % engine.plan().model.vocab_size}, 0});
      }
      MG_RETURN_IF_ERROR(engine.Step(prompts).status());
    }
    for (int32_t i = 0; i < key.token_bucket; ++i) {
      batch.push_back(SequenceStep{next_id + i, {(7 * i + 3) % engine.plan().model.vocab_size}, 1});
    }
  } else {
    const int32_t tokens = std::min(key.token_bucket, key.moe_num_chunk * ko.chunk_size);
    std::vector<int32_t> prompt(tokens);
    for (int32_t i = 0; i < tokens; ++i)
      prompt[i] = (i * 31 + 5) % engine.plan().model.vocab_size;
    seqs.push_back(next_id);
    batch.push_back(SequenceStep{next_id, prompt, 0});
  }
  SpecKey chosen;
  if (!engine.ProgramFor(batch, &chosen).ok() || !(chosen == key)) return 0;
  MG_RETURN_IF_ERROR(engine.Step(batch).status());
  int32_t tokens = 0;
  for (const SequenceStep& s : batch)
    tokens += static_cast<int32_t>(s.tokens.size());
  return tokens;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace moegraph
