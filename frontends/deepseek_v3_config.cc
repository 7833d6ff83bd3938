// DeepSeek-V3 config.json parsing and validation.
#include "frontends/deepseek_v3_config.h"

#include <cmath>
#include <string>

#include "frontends/config_reader.h"
#include "support/format.h"

namespace moegraph {

double DeepseekV3Config::Scale() const {
  const double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  // transformers' yarn_apply_mscale: any non-default type with a non-zero mscale_all_dim
  // (yarn_get_mscale is 1 for factor <= 1).
  if (rope.type == RopeType::kDefault || rope.mscale_all_dim == 0 || rope.factor <= 1) {
    return scale;
  }
  const double mscale = 0.1 * rope.mscale_all_dim * std::log(rope.factor) + 1.0;
  return scale * mscale * mscale;
}

std::string DeepseekV3Config::Describe() const {
  const std::string q = q_lora_rank > 0 ? Format("q_lora_rank {}", q_lora_rank) : "plain q_proj";
  return Format("{}; MLA: {} heads, {}, kv_lora_rank {}, qk_nope {}, qk_rope {}{}, v_head {}",
                Glm4MoeConfig::Describe(), num_attention_heads, q, kv_lora_rank, qk_nope_head_dim,
                qk_rope_head_dim, rope_interleave ? " (interleaved)" : "", v_head_dim);
}

StatusOr<DeepseekV3Config> ParseDeepseekV3Config(const JsonValue& json,
                                                 std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  DeepseekV3Config config;
  MG_RETURN_IF_ERROR(
      ParseDecoderConfig(reader, "DeepseekV3ForCausalLM", config, {.attention_bias_field = true}));
  MG_RETURN_IF_ERROR(reader.OptionalBool("attention_bias", config.attention_bias));
  MG_RETURN_IF_ERROR(ParseGlm4MoeRouting(reader, config));
  // null (a plain q_proj) differs from absent (transformers' 1536).
  const JsonValue* q_lora = json.Find("q_lora_rank");
  if (q_lora != nullptr && q_lora->is_null()) {
    config.q_lora_rank = 0;
  } else {
    MG_RETURN_IF_ERROR(reader.OptionalInt("q_lora_rank", config.q_lora_rank));
    MG_RETURN_IF_ERROR(CheckSize(reader, "q_lora_rank", config.q_lora_rank));
  }
  MG_RETURN_IF_ERROR(reader.OptionalInt("kv_lora_rank", config.kv_lora_rank));
  MG_RETURN_IF_ERROR(reader.OptionalInt("qk_nope_head_dim", config.qk_nope_head_dim));
  MG_RETURN_IF_ERROR(reader.OptionalInt("qk_rope_head_dim", config.qk_rope_head_dim));
  MG_RETURN_IF_ERROR(reader.OptionalInt("v_head_dim", config.v_head_dim));
  MG_RETURN_IF_ERROR(reader.OptionalBool("rope_interleave", config.rope_interleave));
  // The mla_attention op's limits (MlaAttentionParams).
  for (const auto& [field, value] :
       {std::pair<const char*, int64_t>{"kv_lora_rank", config.kv_lora_rank},
        {"qk_nope_head_dim", config.qk_nope_head_dim},
        {"qk_rope_head_dim", config.qk_rope_head_dim},
        {"v_head_dim", config.v_head_dim}}) {
    if (value < 1 || value > 4096) {
      return reader.Error(field, Format("must be in [1, 4096], got {}", value));
    }
  }
  if (config.qk_rope_head_dim % 2 != 0) {
    return reader.Error("qk_rope_head_dim", Format("must be even (RoPE rotates pairs), got {}",
                                                   config.qk_rope_head_dim));
  }
  MG_RETURN_IF_ERROR(
      CheckWeightBytes(reader, "kv_lora_rank",
                       {config.num_attention_heads, config.qk_nope_head_dim + config.v_head_dim,
                        config.kv_lora_rank},
                       config));
  return config;
}

}  // namespace moegraph
