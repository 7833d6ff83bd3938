// A parsed config.json of any registered family: one alternative per family config type.
// Adding a family with a config type of its own adds it here.
#pragma once

#include <string>
#include <variant>

#include "frontends/decoder_config.h"
#include "frontends/deepseek_v3_config.h"
#include "frontends/ernie4_5_moe_config.h"
#include "frontends/glm4_moe_config.h"
#include "frontends/gpt_oss_config.h"
#include "frontends/mixtral_config.h"
#include "frontends/qwen2_config.h"
#include "frontends/qwen2_moe_config.h"
#include "frontends/qwen3_moe_config.h"

namespace moegraph {

using ModelConfig = std::variant<Qwen3MoeConfig, MixtralConfig, Qwen2Config, Qwen2MoeConfig,
                                 Ernie4_5_MoeConfig, Glm4MoeConfig, DeepseekV3Config, GptOssConfig>;

// The fields every family shares (sizes, RoPE, embeddings).
inline const DecoderConfig& Decoder(const ModelConfig& config) {
  return std::visit([](const auto& c) -> const DecoderConfig& { return c; }, config);
}

// One line for tools: the layer count and the family's routing options, from each config's
// Describe() ("4 layers (3 MoE): 8 experts, top-2, softmax router, renormalised").
inline std::string DescribeModel(const ModelConfig& config) {
  return std::visit([](const auto& c) { return c.Describe(); }, config);
}

}  // namespace moegraph
