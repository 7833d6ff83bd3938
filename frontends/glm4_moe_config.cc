// GLM4-MoE config.json parsing and validation.
#include "frontends/glm4_moe_config.h"

#include <cmath>
#include <string>

#include "frontends/blocks.h"
#include "frontends/config_reader.h"
#include "support/format.h"

namespace moegraph {
namespace {

// Whether config.json sets partial_rotary_factor anywhere ParseDecoderConfig reads it (top
// level, rope_parameters, rope_scaling): transformers 5.24's Glm4MoeConfig defaults it to 0.5.
bool HasPartialRotaryFactor(const FieldReader& reader) {
  if (reader.Get("partial_rotary_factor") != nullptr) return true;
  for (const char* field : {"rope_parameters", "rope_scaling"}) {
    const JsonValue* rope = reader.Get(field);
    if (rope != nullptr && rope->is_object() && rope->Find("partial_rotary_factor") != nullptr) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string Glm4MoeConfig::Describe() const {
  int64_t moe_layers = 0;
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer)
    moe_layers += IsMoeLayer(layer) ? 1 : 0;
  std::string groups =
      n_group > 1 ? Format(", {} groups keep {}", n_group, topk_group) : std::string();
  std::string mtp = num_nextn_predict_layers > 0
                        ? Format(", {} MTP layer(s) not run", num_nextn_predict_layers)
                        : std::string();
  return Format(
      "{} layers ({} MoE): {} experts, top-{}, sigmoid router with correction bias{}{}, "
      "scaling {}, {} shared expert(s), partial rotary {}{}{}{}",
      num_hidden_layers, moe_layers, n_routed_experts, num_experts_per_tok, groups,
      norm_topk_prob ? ", renormalised" : "", JsonValue::Double(routed_scaling_factor).Dump(),
      n_shared_experts, JsonValue::Double(partial_rotary_factor).Dump(),
      attention_bias ? ", q/k/v bias" : "", use_qk_norm ? ", q/k norm" : "", mtp);
}

Status ParseGlm4MoeRouting(const FieldReader& reader, Glm4MoeConfig& config) {
  MG_RETURN_IF_ERROR(reader.RequiredInt("intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("moe_intermediate_size", config.moe_intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("n_routed_experts", config.n_routed_experts));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_experts_per_tok", config.num_experts_per_tok));
  MG_RETURN_IF_ERROR(reader.OptionalInt("n_shared_experts", config.n_shared_experts));
  MG_RETURN_IF_ERROR(reader.OptionalInt("n_group", config.n_group));
  MG_RETURN_IF_ERROR(reader.OptionalInt("topk_group", config.topk_group));
  MG_RETURN_IF_ERROR(reader.OptionalInt("first_k_dense_replace", config.first_k_dense_replace));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("routed_scaling_factor", config.routed_scaling_factor));
  MG_RETURN_IF_ERROR(reader.OptionalBool("norm_topk_prob", config.norm_topk_prob));
  // Published GLM-4.5 configs write num_nextn_predict_layers; transformers 5.24 maps its
  // num_mtp_layers onto that name.
  MG_RETURN_IF_ERROR(
      reader.OptionalInt("num_nextn_predict_layers", config.num_nextn_predict_layers));
  if (reader.Get("num_nextn_predict_layers") == nullptr) {
    MG_RETURN_IF_ERROR(reader.OptionalInt("num_mtp_layers", config.num_nextn_predict_layers));
  }

  MG_RETURN_IF_ERROR(CheckSize(reader, "intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, "moe_intermediate_size", config.moe_intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, "n_routed_experts", config.n_routed_experts));
  MG_RETURN_IF_ERROR(CheckWeightBytes(
      reader, "moe_intermediate_size",
      {config.n_routed_experts, config.moe_intermediate_size, config.hidden_size}, config));
  MG_RETURN_IF_ERROR(CheckWeightBytes(reader, "intermediate_size",
                                      {config.intermediate_size, config.hidden_size}, config));
  if (config.n_shared_experts < 1) {
    return reader.Error("n_shared_experts",
                        Format("must be >= 1 (Glm4MoeMoE always builds its shared experts, an "
                               "MLP of moe_intermediate_size * n_shared_experts), got {}",
                               config.n_shared_experts));
  }
  MG_RETURN_IF_ERROR(CheckSize(reader, "n_shared_experts",
                               config.n_shared_experts * config.moe_intermediate_size));
  if (config.first_k_dense_replace < 0 || config.first_k_dense_replace > config.num_hidden_layers) {
    return reader.Error("first_k_dense_replace",
                        Format("must be in [0, num_hidden_layers = {}], got {}",
                               config.num_hidden_layers, config.first_k_dense_replace));
  }
  if (config.num_nextn_predict_layers < 0) {
    return reader.Error("num_nextn_predict_layers",
                        Format("must be >= 0, got {}", config.num_nextn_predict_layers));
  }
  if (config.n_group < 1 || config.n_group > kMaxRouteGroups ||
      config.n_routed_experts % config.n_group != 0) {
    return reader.Error("n_group",
                        Format("must divide n_routed_experts = {} and be in [1, {}], got {}",
                               config.n_routed_experts, kMaxRouteGroups, config.n_group));
  }
  const int64_t group_size = config.n_routed_experts / config.n_group;
  if (config.n_group > 1 && group_size < 2) {
    return reader.Error("n_group", Format("is {}: groups of one expert (a group is scored by "
                                          "its two best experts), expected >= 2 per group",
                                          config.n_group));
  }
  if (config.topk_group < 1 || config.topk_group > config.n_group) {
    return reader.Error("topk_group", Format("must be in [1, n_group = {}], got {}", config.n_group,
                                             config.topk_group));
  }
  if (config.num_experts_per_tok < 1 ||
      config.num_experts_per_tok > config.topk_group * group_size) {
    return reader.Error("num_experts_per_tok",
                        Format("must be in [1, {}] (the experts of topk_group = {} groups of "
                               "{}), got {}",
                               config.topk_group * group_size, config.topk_group, group_size,
                               config.num_experts_per_tok));
  }
  if (!(config.routed_scaling_factor > 0) || !std::isfinite(config.routed_scaling_factor)) {
    return reader.Error("routed_scaling_factor",
                        Format("must be finite and > 0, got {}",
                               JsonValue::Double(config.routed_scaling_factor).Dump()));
  }
  return Status::Ok();
}

StatusOr<Glm4MoeConfig> ParseGlm4MoeConfig(const JsonValue& json, std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  Glm4MoeConfig config;
  MG_RETURN_IF_ERROR(ParseDecoderConfig(reader, "Glm4MoeForCausalLM", config,
                                        {.partial_rotary = true, .attention_bias_field = true}));
  if (!HasPartialRotaryFactor(reader)) {
    config.partial_rotary_factor = 0.5;
    const auto rotary_dim = static_cast<int64_t>(static_cast<double>(config.head_dim) * 0.5);
    if (rotary_dim < 2 || rotary_dim % 2 != 0) {
      return reader.Error("head_dim",
                          Format("is {}: the default partial_rotary_factor 0.5 rotates {} values, "
                                 "expected an even count >= 2",
                                 config.head_dim, rotary_dim));
    }
  }
  MG_RETURN_IF_ERROR(reader.OptionalBool("attention_bias", config.attention_bias));
  MG_RETURN_IF_ERROR(reader.OptionalBool("use_qk_norm", config.use_qk_norm));
  MG_RETURN_IF_ERROR(ParseGlm4MoeRouting(reader, config));
  return config;
}

}  // namespace moegraph
