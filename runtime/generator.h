// Generator: continuous batching over an Engine. Prompts are prefilled (split
// into several steps when longer than the largest prefill bucket), then every
// running sequence decodes one token per step; a sequence may finish while
// others go on, and a new one may join between steps. A request waits until
// the KV cache can hold everything it may need (its prompt plus
// max_new_tokens, up to the model's context), so a running sequence never
// runs out of blocks; waiting requests join in arrival order as others finish.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "runtime/engine.h"

namespace moegraph {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy; finite and >= 0
  int32_t top_k = 0;         // 0: no limit; >= 0
  float top_p = 1.0f;        // nucleus mass in (0, 1]
  uint64_t seed = 0;
  int32_t max_new_tokens = 16;  // >= 1
  std::vector<int32_t> stop_tokens;
};

// InvalidArgument naming the first field out of its range (see
// SamplingParams); the one check every front end (tools, C API) relies on.
Status ValidateSamplingParams(const SamplingParams& params);

struct GenerationRequest {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
};

struct GenerationResult {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // generated, the stop token included if one ended it
  bool stopped_by_token = false;
  // Ended at the model's context (max_position_embeddings) before
  // max_new_tokens tokens.
  bool stopped_by_context = false;
};

// Picks the next token from one row of logits.
int32_t SampleToken(const float* logits, int32_t vocab, const SamplingParams& params,
                    std::mt19937_64& rng);

class Generator {
 public:
  explicit Generator(Engine& engine);

  // Queues a request; it joins at a later step, once the KV cache can hold
  // it. Errors, before any work, on a bad prompt or sampling parameter, a
  // prompt longer than the model's context, or a request that needs more KV
  // blocks than the whole cache has.
  Status Add(GenerationRequest request);
  // Admits waiting requests that fit, then runs one engine step (a prefill
  // step if any prompt is pending, else a decode step); returns the requests
  // that finished in it. On a rank of an expert-parallel engine every rank calls Step
  // together: the step is a prefill step if any rank has a prompt pending (a rank with only
  // decodes decodes in it), and a rank with no sequences runs the empty forward.
  StatusOr<std::vector<GenerationResult>> Step();
  bool Idle() const { return running_.empty() && waiting_.empty(); }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  // Steps until every queued request finished (on every rank, for an expert-parallel
  // engine); results in request order.
  StatusOr<std::vector<GenerationResult>> RunToCompletion();
  int64_t num_steps() const { return num_steps_; }
  // The tokens the last Step sampled, as (request id, token) in batch order, finishing ones
  // included: what a caller streams.
  const std::vector<std::pair<int64_t, int32_t>>& last_step_tokens() const {
    return last_step_tokens_;
  }

 private:
  struct Running {
    GenerationRequest request;
    size_t prompt_done = 0;  // prompt tokens already fed
    std::vector<int32_t> generated;
    std::mt19937_64 rng;
    int64_t max_blocks = 0;  // KV blocks it may come to hold
  };
  // KV blocks a request may come to hold: its prompt and every generated
  // token but the last, within the model's context.
  int64_t MaxBlocks(const GenerationRequest& request) const;
  // Moves waiting requests, in arrival order, into running_ while the free
  // KV blocks cover what they and the running sequences may still take.
  Status Admit();
  void Finish(Running& r, bool by_token, bool by_context, std::vector<GenerationResult>& done);

  Engine& engine_;
  std::deque<GenerationRequest> waiting_;  // in arrival order
  std::vector<Running> running_;           // in arrival order
  std::vector<int64_t> order_;
  int64_t num_steps_ = 0;
  std::vector<std::pair<int64_t, int32_t>> last_step_tokens_;
  size_t decode_cursor_ = 0;
  bool any_rank_busy_ = true;  // expert parallelism: the last step's agreement  // where the next
                               // decode step starts taking sequences
  int32_t max_prefill_tokens_ = 0, max_prefill_seqs_ = 0, max_decode_seqs_ = 0;
};

}  // namespace moegraph
