// The benchmark models: configs under bench/configs/, random weights written
// at bench time (never committed) into a cache directory and reused.
#pragma once

#include <cstdint>
#include <string>

#include "frontends/qwen3_moe_config.h"
#include "support/status.h"

namespace moegraph::bench {

// Loads bench/configs/<name>.json (bench-smoke, bench-tiny, bench-a3b-4l).
StatusOr<Qwen3MoeConfig> LoadBenchConfig(const std::string& name);

// Weight bytes of the checkpoint `config` describes (bf16 unless torch_dtype says otherwise).
uint64_t CheckpointBytes(const Qwen3MoeConfig& config);

// Weight bytes one decode token reads at batch 1: embedding row, attention
// projections and q/k norms, the layer norms, router and top-k experts of
// each MoE layer (dense MLP otherwise), final norm and the LM head.
uint64_t DecodeWeightBytesPerToken(const Qwen3MoeConfig& config);

// Makes `dir` hold config.json and model.safetensors for `config` with
// deterministic uniform random weights (fan-in scaled; norms near 1). A
// directory already holding the same config and a complete checkpoint is
// reused; `generated` says which happened. Values come from a counter-based
// generator split into fixed chunks, so the bytes do not depend on the
// thread count.
Status EnsureBenchModel(const Qwen3MoeConfig& config, const std::string& dir, uint64_t seed,
                        bool* generated);

}  // namespace moegraph::bench
