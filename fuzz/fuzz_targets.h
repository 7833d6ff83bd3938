// The fuzz targets' bodies, one per untrusted input class. fuzz_main.cc makes
// each a libFuzzer binary; tests/fuzz replays fuzz/regressions/ through them.
// Each says how far the input got, and aborts when a property fails.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moegraph::fuzz {

enum class Outcome {
  kSkipped,   // above the target's size caps: not run
  kRejected,  // refused with an error status somewhere along the way
  kAccepted,  // went the whole way
};

// libFuzzer's return value: -1 keeps skipped inputs out of the corpus.
inline int LibFuzzerResult(Outcome outcome) {
  return outcome == Outcome::kSkipped ? -1 : 0;
}

// Plan bytes -> DeserializePlan; a plan that loads round-trips through SerializePlan.
Outcome FuzzPlan(const uint8_t* data, size_t size);
// Plan bytes -> Engine::Load on the demo checkpoint -> one prefill and one decode step.
Outcome FuzzPlanEngine(const uint8_t* data, size_t size);
// First byte (SafetensorsInput) then a safetensors file or a model.safetensors.index.json.
Outcome FuzzSafetensors(const uint8_t* data, size_t size);
// config.json -> Qwen3MoeConfig -> BuildQwen3MoeGraph (and Verify for its own weights).
Outcome FuzzConfig(const uint8_t* data, size_t size);
// First byte (IrKey) then IR text -> ParseGraph -> Verify -> RunPipeline.
Outcome FuzzIr(const uint8_t* data, size_t size);

}  // namespace moegraph::fuzz
