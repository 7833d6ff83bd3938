// The built-in demo model: a small, seeded random-weight Qwen3-MoE checkpoint in a real
// Hugging Face directory layout, so the whole pipeline runs without downloading weights.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/qwen3_moe_config.h"
#include "frontends/weights.h"
#include "ir/dtype.h"
#include "support/status.h"

namespace moegraph {

struct DemoModelOptions {
  uint64_t seed = 20261129;
  DType dtype = DType::kBF16;  // kF32, kF16 or kBF16
  // A registered family's name (ModelFamily::name): its demo_config and weight list. Empty: the
  // built-in Qwen3-MoE demo (DemoModelConfig), unchanged byte for byte.
  std::string family = "";
};

// The default demo directory name: "demo-model", or "demo-model-<family>" for a family's demo
// (so two families' demos do not overwrite each other).
std::string DemoDirName(const std::string& family);

// The demo tokenizer: a Qwen2-style byte-level BPE of exactly the demo vocab (512 tokens: 256
// bytes, 255 merges and <|endoftext|>), trained with Hugging Face `tokenizers` by
// tools/make_demo_tokenizer.py (frontends/data/demo_tokenizer.json, compiled into the library).
std::string_view DemoTokenizerJson();
// <|endoftext|>: the demo's eos_token_id.
inline constexpr int32_t kDemoEosTokenId = 0;

// vocab 512, hidden 128, 4 layers (layer 2 dense, the rest 8 experts with top-2), 4 query heads
// and 2 KV heads of dim 32.
Qwen3MoeConfig DemoModelConfig();

// Creates `dir` (and missing parents) and writes config.json, model.safetensors and the
// tokenizer files (tokenizer.json, tokenizer_config.json, generation_config.json with
// eos_token_id kDemoEosTokenId) into it. Byte-identical output for the same options.
// InvalidArgument for a non-float dtype; NotFound listing the names for an unknown family.
Status WriteDemoModel(const std::string& dir, const DemoModelOptions& options = {});

// The tensors of `weights` (a family's weight list) in that order, in `dtype` (kF32, kF16 or
// kBF16; anything else is written as kF32), filled as each spec's WeightInit says. Each tensor
// draws from its own stream seeded by (seed, name), so the values of one tensor do not depend on
// which others exist. Values: embeddings ~N(0, 1); linear weights ~N(0, 1) / sqrt(fan_in),
// which keeps RMS-normed activations O(1) through every projection and gives logits of unit
// scale; norm weights ~1 + 0.1 N(0, 1); biases ~0.1 N(0, 1). "N" is an Irwin-Hall approximation
// computed with integer sums and correctly rounded IEEE operations (no libm), so every platform
// produces the same bits.
std::vector<TensorToWrite> MakeRandomWeights(const std::vector<WeightSpec>& weights, uint64_t seed,
                                             DType dtype);

// MakeRandomWeights over the weight list of `config.architecture`'s family (empty for an
// architecture without one): every weight of a Qwen3MoeForCausalLM under Hugging Face's names
// and per-expert layout.
std::vector<TensorToWrite> MakeRandomQwen3MoeWeights(const Qwen3MoeConfig& config, uint64_t seed,
                                                     DType dtype);

}  // namespace moegraph
