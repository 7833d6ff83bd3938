// Synthetic benchmark steps.
#include "runtime/synthetic_step.h"

#include <algorithm>
#include <chrono>
#include <string>

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

StatusOr<DecodeRun> RunRealDecode(Engine& engine, int32_t batch, int32_t prompt_tokens,
                                  int32_t steps) {
  const Plan& plan = engine.plan();
  int32_t max_decode = 0, max_prefill = 0;
  for (const KeyProgram& p : plan.programs) {
    int32_t& max = p.key.phase == MoePhase::kDecode ? max_decode : max_prefill;
    max = std::max(max, p.key.token_bucket);
  }
  if (batch < 1 || batch > max_decode) {
    return InvalidArgument("real decode of batch " + std::to_string(batch) +
                           ": the plan's decode buckets go up to " + std::to_string(max_decode));
  }
  if (prompt_tokens < 1 || steps < 1 || max_prefill < 1 ||
      static_cast<int64_t>(prompt_tokens) + steps > plan.model.max_position_embeddings) {
    return InvalidArgument("real decode of " + std::to_string(prompt_tokens) + " prompt + " +
                           std::to_string(steps) + " decode tokens: needs a prefill key and at " +
                           "most max_position_embeddings (" +
                           std::to_string(plan.model.max_position_embeddings) + ") positions");
  }
  const int32_t vocab = plan.model.vocab_size;
  const int64_t first_id = int64_t{1} << 31;
  std::vector<int32_t> next(batch);
  uint32_t state = 20261202;  // a fixed LCG: the same prompts in every run
  auto release = [&] {
    for (int32_t s = 0; s < batch; ++s)
      engine.Release(first_id + s);
  };
  // The greedy next token from row r of a step's logits.
  auto argmax = [&](const StepLogits& logits, int32_t r) {
    const float* row = logits.row(r);
    return static_cast<int32_t>(std::max_element(row, row + vocab) - row);
  };
  for (int32_t s = 0; s < batch; ++s) {
    std::vector<int32_t> prompt(prompt_tokens);
    for (int32_t& token : prompt) {
      state = state * 1664525u + 1013904223u;
      token = static_cast<int32_t>((state >> 8) % static_cast<uint32_t>(vocab));
    }
    for (int32_t done = 0; done < prompt_tokens;) {
      const int32_t n = std::min(max_prefill, prompt_tokens - done);
      StatusOr<StepLogits> out = engine.Step({SequenceStep{
          first_id + s, std::vector<int32_t>(prompt.begin() + done, prompt.begin() + done + n),
          done}});
      if (!out.ok()) {
        release();
        return out.status().WithContext("real decode: prefilling sequence " + std::to_string(s));
      }
      done += n;
      if (done == prompt_tokens) next[s] = argmax(*out, 0);
    }
  }
  DecodeRun run{.batch = batch, .prompt_tokens = prompt_tokens, .steps = steps};
  std::vector<SequenceStep> step(batch);
  const auto start = std::chrono::steady_clock::now();
  for (int32_t i = 0; i < steps; ++i) {
    for (int32_t s = 0; s < batch; ++s)
      step[s] = SequenceStep{first_id + s, {next[s]}, prompt_tokens + i};
    StatusOr<StepLogits> out = engine.Step(step);
    if (!out.ok()) {
      release();
      return out.status().WithContext("real decode: step " + std::to_string(i));
    }
    for (int32_t s = 0; s < batch; ++s)
      next[s] = argmax(*out, s);
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  release();
  return run;
}

int32_t RealDecodeSteps(const Engine& engine, double step_us, double seconds) {
  const double wanted = std::clamp(seconds * 1e6 / std::max(step_us, 1.0), 16.0, 256.0);
  const int64_t room = engine.plan().model.max_position_embeddings - kRealDecodePrompt;
  return static_cast<int32_t>(std::min<int64_t>(static_cast<int64_t>(wanted), room));
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace moegraph
