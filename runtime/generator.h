// Generator: continuous batching over an Engine. Prompts are prefilled (split
// into several steps when longer than the largest prefill bucket), then every
// running sequence decodes one token per step; a sequence may finish while
// others go on, and a new one may join between steps.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <vector>

#include "runtime/engine.h"

namespace moegraph {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: no limit
  float top_p = 1.0f;        // nucleus mass
  uint64_t seed = 0;
  int32_t max_new_tokens = 16;
  std::vector<int32_t> stop_tokens;
};

struct GenerationRequest {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
};

struct GenerationResult {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // generated, the stop token included if one ended it
  bool stopped_by_token = false;
};

// Picks the next token from one row of logits.
int32_t SampleToken(const float* logits, int32_t vocab, const SamplingParams& params,
                    std::mt19937_64& rng);

class Generator {
 public:
  explicit Generator(Engine& engine);

  // Queues a request; it joins at the next step. Errors on a bad prompt.
  Status Add(GenerationRequest request);
  // Runs one engine step (a prefill step if any prompt is pending, else a
  // decode step); returns the requests that finished in it.
  StatusOr<std::vector<GenerationResult>> Step();
  bool Idle() const { return running_.empty(); }
  // Steps until every queued request finished; results in request order.
  StatusOr<std::vector<GenerationResult>> RunToCompletion();
  int64_t num_steps() const { return num_steps_; }

 private:
  struct Running {
    GenerationRequest request;
    size_t prompt_done = 0;  // prompt tokens already fed
    std::vector<int32_t> generated;
    std::mt19937_64 rng;
  };
  void Finish(Running& r, bool by_token, std::vector<GenerationResult>& done);

  Engine& engine_;
  std::vector<Running> running_;  // in arrival order
  std::vector<int64_t> order_;
  int64_t num_steps_ = 0;
  size_t decode_cursor_ = 0;  // where the next decode step starts taking sequences
  int32_t max_prefill_tokens_ = 0, max_prefill_seqs_ = 0, max_decode_seqs_ = 0;
};

}  // namespace moegraph
