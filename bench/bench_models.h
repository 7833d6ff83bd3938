// The benchmark models: configs under bench/configs/, random weights written
// at bench time (never committed) into a cache directory and reused.
#pragma once

#include <cstdint>
#include <string>

#include "frontends/model_config.h"
#include "support/status.h"

namespace moegraph::bench {

// A bench model's config: any registered family (frontends/family.h), and the config.json text
// the checkpoint directory gets.
struct BenchConfig {
  ModelConfig config;
  std::string json;
  const DecoderConfig& decoder() const { return Decoder(config); }
};

// Loads bench/configs/<name>.json (bench-smoke, bench-smoke-glm4, bench-smoke-dsv3, bench-tiny,
// bench-glm4-moe, bench-a3b-4l, bench-dsv3, bench-dsv3-fp8, bench-gptoss).
StatusOr<BenchConfig> LoadBenchConfig(const std::string& name);

// Weight bytes of the checkpoint `config` describes (bf16 unless torch_dtype says otherwise;
// the tensors the family keeps f32 in f32).
uint64_t CheckpointBytes(const BenchConfig& config);

// The routed experts a token reads per MoE layer (num_experts_per_tok; 0 for a dense family).
int64_t TopK(const ModelConfig& config);

// Weight bytes one decode token reads at batch 1: every tensor of the family's weight list,
// except that of the embedding only one row is read (all of it again as the LM head when tied)
// and of the routed experts only top-k (num_experts_per_tok) per MoE layer.
uint64_t DecodeWeightBytesPerToken(const BenchConfig& config);

// KV-cache elements one token stores per layer, and what multi-head attention with the same
// heads would store (2 x kv heads x head_dim for GQA families, which store exactly that;
// DeepSeek-V3's latent cache: kv_lora_rank + qk_rope_head_dim against heads x (qk_nope +
// qk_rope + v_head)).
struct KvElementsPerToken {
  int64_t cached = 0;
  int64_t mha_equivalent = 0;
};
KvElementsPerToken KvElementsPerTokenPerLayer(const BenchConfig& config);

// Makes `dir` hold config.json and model.safetensors for `config` with
// deterministic uniform random weights (fan-in scaled; norms near 1). A
// directory already holding the same config and a complete checkpoint is
// reused; `generated` says which happened. Values come from a counter-based
// generator split into fixed chunks, so the bytes do not depend on the
// thread count.
Status EnsureBenchModel(const BenchConfig& config, const std::string& dir, uint64_t seed,
                        bool* generated);

}  // namespace moegraph::bench
