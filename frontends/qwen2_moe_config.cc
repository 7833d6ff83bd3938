// Qwen2-MoE config.json parsing and validation.
#include "frontends/qwen2_moe_config.h"

#include <string>

#include "frontends/config_reader.h"
#include "frontends/qwen2_config.h"
#include "support/format.h"

namespace moegraph {

std::string Qwen2MoeConfig::Describe() const {
  const std::string bias = qkv_bias ? ", q/k/v bias" : "";
  const std::string layers = Qwen3MoeConfig::Describe();
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer) {
    if (IsMoeLayer(layer)) {
      return Format("{}, shared expert {} with sigmoid gate{}", layers,
                    shared_expert_intermediate_size, bias);
    }
  }
  return layers + bias;
}

StatusOr<Qwen2MoeConfig> ParseQwen2MoeConfig(const JsonValue& json, std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  Qwen2MoeConfig config;
  // As for Qwen2: use_sliding_window (refused when true) switches the window on; sliding_window
  // alone is the unused window size.
  MG_RETURN_IF_ERROR(ParseDecoderConfig(reader, "Qwen2MoeForCausalLM", config));
  MG_RETURN_IF_ERROR(ParseQwenMoeFields(reader, /*moe=*/true, config));
  MG_RETURN_IF_ERROR(reader.RequiredInt("shared_expert_intermediate_size",
                                        config.shared_expert_intermediate_size));
  MG_RETURN_IF_ERROR(
      CheckSize(reader, "shared_expert_intermediate_size", config.shared_expert_intermediate_size));
  MG_RETURN_IF_ERROR(CheckWeightBytes(reader, "shared_expert_intermediate_size",
                                      {config.shared_expert_intermediate_size, config.hidden_size},
                                      config));
  MG_RETURN_IF_ERROR(reader.OptionalBool("qkv_bias", config.qkv_bias));
  MG_RETURN_IF_ERROR(CheckFullAttentionLayers(reader));
  return config;
}

}  // namespace moegraph
