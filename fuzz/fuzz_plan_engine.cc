// Fuzz target: untrusted plan bytes -> DeserializePlan -> Engine::Load on
// the demo checkpoint -> one prefill step (3 tokens) and one decode step.
#include <algorithm>
#include <string_view>

#include "fuzz/fuzz_common.h"
#include "fuzz/fuzz_targets.h"
#include "plan/plan_file.h"
#include "runtime/engine.h"

namespace moegraph::fuzz {
namespace {

// Loading allocates the arena, the KV cache and the ForwardMeta buffers from
// the plan's sizes, and captures every key: bound them so that one input
// stays within milliseconds and megabytes.
bool SmallEnough(const Plan& plan) {
  constexpr int64_t kMaxArenaBytes = 64 << 20;
  constexpr size_t kMaxPrograms = 8, kMaxSteps = 4096;
  if (plan.max_arena_bytes() > kMaxArenaBytes || plan.programs.size() > kMaxPrograms) return false;
  size_t steps = 0;
  for (const KeyProgram& p : plan.programs) {
    steps += p.steps.size();
    if (p.key.token_bucket > 256 || p.key.seq_bucket > 64) return false;
  }
  const PlanModelInfo& m = plan.model;
  return steps <= kMaxSteps && m.max_position_embeddings <= 4096 && m.num_layers <= 64 &&
         m.vocab_size <= (1 << 20);
}

}  // namespace

Outcome FuzzPlanEngine(const uint8_t* data, size_t size) {
  if (size > kMaxPlanBytes) return Outcome::kSkipped;
  const std::string& model_dir = DemoModelDir();
  StatusOr<Plan> plan =
      DeserializePlan(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.plan");
  if (!plan.ok()) return Outcome::kRejected;
  if (!SmallEnough(*plan)) return Outcome::kSkipped;
  const int32_t vocab = std::max(plan->model.vocab_size, 1);

  EngineOptions options;
  options.num_threads = 1;
  options.model_dir = model_dir;
  options.kv_cache_bytes = 4 << 20;
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(std::move(plan).value(), options);
  if (!engine.ok()) return Outcome::kRejected;
  SequenceStep prefill{/*seq_id=*/1, {1 % vocab, 2 % vocab, 3 % vocab}, /*num_cached=*/0};
  StatusOr<StepLogits> logits = (*engine)->Step({prefill});
  if (!logits.ok()) return Outcome::kRejected;
  SequenceStep decode{/*seq_id=*/1, {4 % vocab}, /*num_cached=*/3};
  logits = (*engine)->Step({decode});
  return logits.ok() ? Outcome::kAccepted : Outcome::kRejected;
}

}  // namespace moegraph::fuzz
