// Mixtral config.json parsing and validation.
#include "frontends/mixtral_config.h"

#include <string>

#include "support/format.h"

namespace moegraph {

std::string MixtralConfig::Describe() const {
  return Format("{} layers ({} MoE): {} experts, top-{}, softmax router, renormalised",
                num_hidden_layers, num_hidden_layers, num_local_experts, num_experts_per_tok);
}

StatusOr<MixtralConfig> ParseMixtralConfig(const JsonValue& json, std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  MixtralConfig config;
  MG_RETURN_IF_ERROR(
      ParseDecoderConfig(reader, "MixtralForCausalLM", config, {.sliding_window_field = true}));
  MG_RETURN_IF_ERROR(reader.RequiredInt("intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_local_experts", config.num_local_experts));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_experts_per_tok", config.num_experts_per_tok));
  MG_RETURN_IF_ERROR(CheckSize(reader, "intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, "num_local_experts", config.num_local_experts));
  MG_RETURN_IF_ERROR(CheckWeightBytes(
      reader, "intermediate_size",
      {config.num_local_experts, config.intermediate_size, config.hidden_size}, config));
  if (config.num_experts_per_tok < 1 || config.num_experts_per_tok > config.num_local_experts) {
    return reader.Error("num_experts_per_tok",
                        Format("must be in [1, num_local_experts = {}], got {}",
                               config.num_local_experts, config.num_experts_per_tok));
  }
  return config;
}

}  // namespace moegraph
