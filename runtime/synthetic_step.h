// Synthetic steps for benchmarks: a batch that selects a given key, left in
// the engine's static buffers so the key can be replayed again and again.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/engine.h"

namespace moegraph {

// Runs one step of a synthetic batch that selects `key` (decode keys first
// get a one-token prompt per sequence). Returns the real token count, or 0
// when no batch selects the key; `seq_ids` receives the sequences to release.
StatusOr<int32_t> PrepareSyntheticStep(Engine& engine, const SpecKey& key,
                                       std::vector<int64_t>& seq_ids);

// What decoding like a user measured: `batch` sequences, each prompted with
// `prompt_tokens` tokens, then `steps` decode steps at positions
// prompt_tokens .. prompt_tokens + steps - 1, each feeding every sequence its
// own greedy token, so the experts hit change from step to step as they do in
// generation (a replayed synthetic step hits the same ones every time).
struct DecodeRun {
  int32_t batch = 0;
  int32_t prompt_tokens = 0;
  int32_t steps = 0;
  double seconds = 0;  // the decode steps only, through Engine::Step (host work included)
  double tokens_per_second() const { return seconds > 0 ? batch * steps / seconds : 0; }
};

// Runs that decode and releases its sequences. The prompts are pseudo-random
// ids (fixed seed); each is prefilled in steps the plan's buckets take.
// InvalidArgument when batch exceeds the plan's largest decode bucket or the
// positions exceed the model's context.
StatusOr<DecodeRun> RunRealDecode(Engine& engine, int32_t batch, int32_t prompt_tokens,
                                  int32_t steps);

// The prompt length the benchmarks' real decode uses.
inline constexpr int32_t kRealDecodePrompt = 32;

// How many real decode steps a benchmark runs after a kRealDecodePrompt-token prompt: as many
// as about `seconds` take at `step_us` per step (the replayed step's time), 16 to 256, and no
// more than the model's context leaves (0 or less when it leaves none; RunRealDecode refuses
// that).
int32_t RealDecodeSteps(const Engine& engine, double step_us, double seconds = 0.3);

// The median of `values` (the upper one of an even count).
double Median(std::vector<double> values);

}  // namespace moegraph
