// Ernie 4.5 MoE config.json parsing and validation.
#include "frontends/ernie4_5_moe_config.h"

#include <cmath>
#include <string>

#include "frontends/config_reader.h"
#include "support/format.h"

namespace moegraph {

bool Ernie4_5_MoeConfig::IsMoeLayer(int64_t layer) const {
  return moe_layer_interval > 0 && (layer + 1) % moe_layer_interval == 0 &&
         layer >= moe_layer_start_index && layer <= moe_layer_end_index;
}

std::string Ernie4_5_MoeConfig::Describe() const {
  int64_t moe_layers = 0;
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer)
    moe_layers += IsMoeLayer(layer) ? 1 : 0;
  std::string shared;
  if (moe_num_shared_experts > 0) {
    shared = Format(", {} shared expert{}", moe_num_shared_experts,
                    moe_num_shared_experts == 1 ? "" : "s");
  }
  return Format(
      "{} layers ({} MoE): {} experts, top-{}, softmax router + score-correction "
      "bias, renormalised (norm_min {}){}{}",
      num_hidden_layers, moe_layers, moe_num_experts, moe_k, JsonValue::Double(moe_norm_min).Dump(),
      shared, use_bias ? ", use_bias" : "");
}

StatusOr<Ernie4_5_MoeConfig> ParseErnie4_5_MoeConfig(const JsonValue& json,
                                                     std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  Ernie4_5_MoeConfig c;
  MG_RETURN_IF_ERROR(ParseDecoderConfig(reader, "Ernie4_5_MoeForCausalLM", c));
  // transformers' attribute_map: num_experts -> moe_num_experts, num_experts_per_tok -> moe_k.
  auto aliased = [&](const char* name, const char* alias) {
    return reader.Get(name) == nullptr && reader.Get(alias) != nullptr ? alias : name;
  };
  const char* experts_field = aliased("moe_num_experts", "num_experts");
  const char* k_field = aliased("moe_k", "num_experts_per_tok");
  MG_RETURN_IF_ERROR(reader.RequiredInt("intermediate_size", c.intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("moe_intermediate_size", c.moe_intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt(experts_field, c.moe_num_experts));
  MG_RETURN_IF_ERROR(reader.RequiredInt(k_field, c.moe_k));
  MG_RETURN_IF_ERROR(reader.OptionalInt("moe_num_shared_experts", c.moe_num_shared_experts));
  MG_RETURN_IF_ERROR(reader.OptionalInt("moe_layer_start_index", c.moe_layer_start_index));
  c.moe_layer_end_index = -1;
  MG_RETURN_IF_ERROR(reader.OptionalInt("moe_layer_end_index", c.moe_layer_end_index));
  MG_RETURN_IF_ERROR(reader.OptionalInt("moe_layer_interval", c.moe_layer_interval));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("moe_norm_min", c.moe_norm_min));
  MG_RETURN_IF_ERROR(reader.OptionalBool("use_bias", c.use_bias));

  MG_RETURN_IF_ERROR(CheckSize(reader, "intermediate_size", c.intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, "moe_intermediate_size", c.moe_intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, experts_field, c.moe_num_experts));
  MG_RETURN_IF_ERROR(
      CheckWeightBytes(reader, "intermediate_size", {c.intermediate_size, c.hidden_size}, c));
  MG_RETURN_IF_ERROR(CheckWeightBytes(reader, "moe_intermediate_size",
                                      {c.moe_num_experts, c.moe_intermediate_size, c.hidden_size},
                                      c));
  if (c.moe_k < 1 || c.moe_k > c.moe_num_experts) {
    return reader.Error(k_field, Format("must be in [1, {} = {}], got {}", experts_field,
                                        c.moe_num_experts, c.moe_k));
  }
  if (c.moe_num_shared_experts < 0) {
    return reader.Error("moe_num_shared_experts",
                        Format("must be >= 0, got {}", c.moe_num_shared_experts));
  }
  if (c.moe_num_shared_experts > 0) {
    MG_RETURN_IF_ERROR(
        CheckWeightBytes(reader, "moe_num_shared_experts",
                         {c.moe_num_shared_experts, c.moe_intermediate_size, c.hidden_size}, c));
    MG_RETURN_IF_ERROR(CheckSize(reader, "moe_num_shared_experts",
                                 c.moe_num_shared_experts * c.moe_intermediate_size));
  }
  if (c.moe_layer_interval < 1) {
    return reader.Error("moe_layer_interval", Format("must be >= 1, got {}", c.moe_layer_interval));
  }
  if (c.moe_layer_start_index < 0) {
    return reader.Error("moe_layer_start_index",
                        Format("must be >= 0, got {}", c.moe_layer_start_index));
  }
  if (c.moe_layer_end_index < -1) {
    return reader.Error(
        "moe_layer_end_index",
        Format("must be -1 (the last layer) or a layer index, got {}", c.moe_layer_end_index));
  }
  // Ernie4_5_MoeConfig.__post_init__: -1 is the last layer.
  if (c.moe_layer_end_index == -1) c.moe_layer_end_index = c.num_hidden_layers - 1;
  if (!(c.moe_norm_min >= 0) || !std::isfinite(c.moe_norm_min)) {
    return reader.Error("moe_norm_min", Format("must be finite and >= 0, got {}",
                                               JsonValue::Double(c.moe_norm_min).Dump()));
  }
  return c;
}

}  // namespace moegraph
