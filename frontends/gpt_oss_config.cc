// GPT-OSS config.json parsing and validation.
#include "frontends/gpt_oss_config.h"

#include <cmath>
#include <string>

#include "frontends/config_reader.h"
#include "support/format.h"

namespace moegraph {
namespace {

bool IsAbsentOrNull(const JsonValue* value) {
  return value == nullptr || value->is_null();
}

}  // namespace

std::string GptOssConfig::Describe() const {
  int64_t sliding = 0;
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer)
    sliding += IsSlidingLayer(layer) ? 1 : 0;
  return Format(
      "{} layers ({} sliding, window {}): {} experts, top-{}, router and expert biases, clamped "
      "SwiGLU (alpha {}, limit {}), attention sinks{}",
      num_hidden_layers, sliding, sliding_window, num_local_experts, num_experts_per_tok,
      JsonValue::Double(swiglu_alpha).Dump(), JsonValue::Double(swiglu_limit).Dump(),
      attention_bias ? ", q/k/v/o bias" : "");
}

StatusOr<GptOssConfig> ParseGptOssConfig(const JsonValue& json, std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  GptOssConfig config;
  MG_RETURN_IF_ERROR(
      ParseDecoderConfig(reader, "GptOssForCausalLM", config,
                         {.attention_bias_field = true, .fp8 = false, .mxfp4 = true}));
  // transformers' GptOssConfig fills an absent (or null) rope_parameters with YaRN, not plain
  // RoPE: factor 32, beta_fast 32, beta_slow 1, no truncation, over an original context of 4096.
  if (IsAbsentOrNull(reader.Get("rope_parameters")) && IsAbsentOrNull(reader.Get("rope_scaling"))) {
    config.rope.type = RopeType::kYarn;
    config.rope.factor = 32.0;
    config.rope.beta_fast = 32.0;
    config.rope.beta_slow = 1.0;
    config.rope.truncate = false;
    config.rope.original_max_position_embeddings = 4096;
  }
  MG_RETURN_IF_ERROR(reader.OptionalBool("attention_bias", config.attention_bias));
  MG_RETURN_IF_ERROR(reader.RequiredInt("intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_local_experts", config.num_local_experts));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_experts_per_tok", config.num_experts_per_tok));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("swiglu_alpha", config.swiglu_alpha));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("swiglu_limit", config.swiglu_limit));
  const JsonValue* window = reader.Get("sliding_window");
  if (window != nullptr && !window->is_null()) {
    MG_RETURN_IF_ERROR(reader.OptionalInt("sliding_window", config.sliding_window));
    if (config.sliding_window < 1) {
      return reader.Error("sliding_window",
                          Format("must be >= 1 or null, got {}", config.sliding_window));
    }
  }

  MG_RETURN_IF_ERROR(CheckSize(reader, "intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, "num_local_experts", config.num_local_experts));
  MG_RETURN_IF_ERROR(CheckWeightBytes(
      reader, "intermediate_size",
      {config.num_local_experts, 2 * config.intermediate_size, config.hidden_size}, config));
  if (config.num_experts_per_tok < 1 || config.num_experts_per_tok > config.num_local_experts) {
    return reader.Error("num_experts_per_tok",
                        Format("must be in [1, num_local_experts = {}], got {}",
                               config.num_local_experts, config.num_experts_per_tok));
  }
  if (!(config.swiglu_limit > 0) || !std::isfinite(config.swiglu_limit)) {
    return reader.Error("swiglu_limit", Format("must be finite and > 0, got {}",
                                               JsonValue::Double(config.swiglu_limit).Dump()));
  }
  if (!std::isfinite(config.swiglu_alpha)) {
    return reader.Error("swiglu_alpha", "must be finite");
  }

  // layer_types: transformers' default is sliding on even layers (0, 2, ...).
  const JsonValue* types = reader.Get("layer_types");
  config.sliding_layers.assign(static_cast<size_t>(config.num_hidden_layers), false);
  if (types == nullptr || types->is_null()) {
    for (int64_t layer = 0; layer < config.num_hidden_layers; layer += 2)
      config.sliding_layers[static_cast<size_t>(layer)] = true;
  } else {
    if (!types->is_array() ||
        static_cast<int64_t>(types->as_array().size()) != config.num_hidden_layers) {
      return reader.Error("layer_types",
                          Format("must be an array of num_hidden_layers = {} layer kinds",
                                 config.num_hidden_layers));
    }
    for (size_t i = 0; i < types->as_array().size(); ++i) {
      const JsonValue& type = types->as_array()[i];
      const bool sliding = type.is_string() && type.as_string() == "sliding_attention";
      if (!sliding && !(type.is_string() && type.as_string() == "full_attention")) {
        return reader.Error("layer_types",
                            Format("has entry {} at {}; expected \"sliding_attention\" or "
                                   "\"full_attention\"",
                                   type.Dump(), i));
      }
      config.sliding_layers[i] = sliding;
    }
  }
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    if (config.IsSlidingLayer(layer) && config.sliding_window == 0) {
      return reader.Error("sliding_window",
                          Format("is null but layer {} is sliding_attention", layer));
    }
  }
  return config;
}

}  // namespace moegraph
