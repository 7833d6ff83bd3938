// Qwen3-MoE config.json parsing, validation and writing.
#include "frontends/qwen3_moe_config.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "frontends/config_reader.h"
#include "frontends/rope.h"
#include "support/format.h"
#include "support/mapped_file.h"
#include "support/strings.h"

namespace moegraph {
namespace {

constexpr const char* kArchitecture = "Qwen3MoeForCausalLM";

}  // namespace

bool Qwen3MoeConfig::IsMoeLayer(int64_t layer) const {
  bool dense_only =
      std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end();
  return !dense_only && num_experts > 0 && decoder_sparse_step > 0 &&
         (layer + 1) % decoder_sparse_step == 0;
}

StatusOr<Qwen3MoeConfig> ParseQwen3MoeConfig(const JsonValue& json, std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  Qwen3MoeConfig config;

  // Architecture first: a config of another model fails here rather than on its fields.
  MG_ASSIGN_OR_RETURN(const std::vector<std::string> architectures, reader.Architectures());
  if (std::find(architectures.begin(), architectures.end(), kArchitecture) == architectures.end()) {
    return reader.UnsupportedArchitecture(Format("\"{}\"", kArchitecture));
  }

  MG_RETURN_IF_ERROR(reader.RequiredInt("vocab_size", config.vocab_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("hidden_size", config.hidden_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("moe_intermediate_size", config.moe_intermediate_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_hidden_layers", config.num_hidden_layers));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_attention_heads", config.num_attention_heads));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_key_value_heads", config.num_key_value_heads));
  // transformers 5 writes the expert count as num_local_experts.
  MG_RETURN_IF_ERROR(reader.RequiredInt(
      reader.Get("num_experts") == nullptr && reader.Get("num_local_experts") != nullptr
          ? "num_local_experts"
          : "num_experts",
      config.num_experts));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_experts_per_tok", config.num_experts_per_tok));
  MG_RETURN_IF_ERROR(reader.OptionalInt("decoder_sparse_step", config.decoder_sparse_step));
  MG_RETURN_IF_ERROR(reader.OptionalInt("max_position_embeddings", config.max_position_embeddings));
  MG_RETURN_IF_ERROR(reader.OptionalBool("norm_topk_prob", config.norm_topk_prob));
  MG_RETURN_IF_ERROR(reader.OptionalBool("tie_word_embeddings", config.tie_word_embeddings));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("rms_norm_eps", config.rms_norm_eps));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("rope_theta", config.rope_theta));
  MG_RETURN_IF_ERROR(reader.OptionalString("torch_dtype", config.torch_dtype));
  if (config.torch_dtype.empty()) {
    MG_RETURN_IF_ERROR(reader.OptionalString("dtype", config.torch_dtype));  // transformers 5
  }

  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"moe_intermediate_size", config.moe_intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"max_position_embeddings", config.max_position_embeddings},
  };
  // Plans store these as int32 (PlanModelInfo), and the runtime does arithmetic on them.
  constexpr int64_t kMaxSize = INT32_MAX;
  for (const auto& [field, value] : sizes) {
    if (value <= 0) return reader.Error(field, Format("must be positive, got {}", value));
    if (value > kMaxSize) {
      return reader.Error(field, Format("is {}, expected at most {}", value, kMaxSize));
    }
  }
  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    return reader.Error("num_key_value_heads",
                        Format("must divide num_attention_heads ({}), got {}",
                               config.num_attention_heads, config.num_key_value_heads));
  }

  if (reader.Get("head_dim") != nullptr) {
    MG_RETURN_IF_ERROR(reader.OptionalInt("head_dim", config.head_dim));
    if (config.head_dim <= 0) {
      return reader.Error("head_dim", Format("must be positive, got {}", config.head_dim));
    }
  } else {
    if (config.hidden_size % config.num_attention_heads != 0) {
      return reader.Error("head_dim", Format("is absent and hidden_size ({}) is not a multiple of "
                                             "num_attention_heads ({}); give head_dim explicitly",
                                             config.hidden_size, config.num_attention_heads));
    }
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }
  if (config.head_dim > kMaxSize) {
    return reader.Error("head_dim",
                        Format("is {}, expected at most {}", config.head_dim, kMaxSize));
  }
  if (config.num_experts > kMaxSize) {
    return reader.Error("num_experts",
                        Format("is {}, expected at most {}", config.num_experts, kMaxSize));
  }
  // The largest weights' byte sizes (f32 at most) must fit in int64.
  const std::pair<const char*, std::vector<int64_t>> weights[] = {
      {"vocab_size", {config.vocab_size, config.hidden_size}},
      {"num_attention_heads", {config.num_attention_heads, config.head_dim, config.hidden_size}},
      {"intermediate_size", {config.intermediate_size, config.hidden_size}},
      {"moe_intermediate_size",
       {std::max<int64_t>(config.num_experts, 1), config.moe_intermediate_size,
        config.hidden_size}},
  };
  for (const auto& [field, dims] : weights) {
    int64_t bytes = 4;
    for (int64_t d : dims) {
      if (__builtin_mul_overflow(bytes, d, &bytes)) {
        return reader.Error(field, Format("makes a weight whose byte size overflows int64 (with "
                                          "hidden_size = {})",
                                          config.hidden_size));
      }
    }
  }
  if (config.head_dim % 2 != 0) {
    return reader.Error("head_dim",
                        Format("must be even (RoPE rotates pairs), got {}", config.head_dim));
  }

  if (config.num_experts < 0) {
    return reader.Error("num_experts", Format("must be >= 0, got {}", config.num_experts));
  }
  if (config.num_experts > 0 &&
      (config.num_experts_per_tok < 1 || config.num_experts_per_tok > config.num_experts)) {
    return reader.Error("num_experts_per_tok",
                        Format("must be in [1, num_experts = {}], got {}", config.num_experts,
                               config.num_experts_per_tok));
  }
  if (config.decoder_sparse_step < 1) {
    return reader.Error("decoder_sparse_step",
                        Format("must be >= 1, got {}", config.decoder_sparse_step));
  }

  if (const JsonValue* layers = reader.Get("mlp_only_layers")) {
    if (!layers->is_array()) {
      return reader.Error("mlp_only_layers", Format("must be an array of layer indices, found {}",
                                                    layers->DescribeKind()));
    }
    for (const JsonValue& layer : layers->as_array()) {
      if (!layer.is_int() || layer.as_int() < 0 || layer.as_int() >= config.num_hidden_layers) {
        return reader.Error("mlp_only_layers",
                            Format("entries must be integers in [0, num_hidden_layers = {}), "
                                   "found {}",
                                   config.num_hidden_layers, layer.Dump()));
      }
      config.mlp_only_layers.push_back(layer.as_int());
    }
  }

  if (!(config.rms_norm_eps > 0)) {
    return reader.Error("rms_norm_eps", Format("must be positive, got {}",
                                               JsonValue::Double(config.rms_norm_eps).Dump()));
  }
  // The rope op takes only theta: a scaled or partial RoPE is parsed (so its fields are
  // checked) and refused rather than run unscaled.
  std::string rope_field;
  MG_ASSIGN_OR_RETURN(
      RopeParameters rope,
      ParseRopeParameters(reader, config.rope_theta, config.max_position_embeddings, &rope_field));
  if (rope.type != RopeType::kDefault) {
    return reader.Unsupported(
        rope_field, Format("has rope_type \"{}\" ({}); the rope op takes only theta, so "
                           "only unscaled RoPE (null or rope_type \"default\") runs today",
                           RopeTypeName(rope.type), reader.Get(rope_field)->Dump()));
  }
  if (rope.partial_rotary_factor != 1.0) {
    return reader.Unsupported("partial_rotary_factor",
                              Format("is {}; the rope op rotates the whole head (partial "
                                     "rotary is not supported yet)",
                                     JsonValue::Double(rope.partial_rotary_factor).Dump()));
  }
  config.rope_theta = rope.theta;
  if (!(config.rope_theta > 0)) {
    return reader.Error("rope_theta", Format("must be positive, got {}",
                                             JsonValue::Double(config.rope_theta).Dump()));
  }

  // Features the engine does not implement.
  std::string hidden_act = "silu";
  MG_RETURN_IF_ERROR(reader.OptionalString("hidden_act", hidden_act));
  if (hidden_act != "silu") {
    return reader.Unsupported(
        "hidden_act", Format("is \"{}\"; only \"silu\" is supported", EscapeBytes(hidden_act)));
  }
  bool attention_bias = false;
  MG_RETURN_IF_ERROR(reader.OptionalBool("attention_bias", attention_bias));
  if (attention_bias) {
    return reader.Unsupported("attention_bias", "is true; attention projections without bias only");
  }
  bool use_sliding_window = false;
  MG_RETURN_IF_ERROR(reader.OptionalBool("use_sliding_window", use_sliding_window));
  if (use_sliding_window) {
    return reader.Unsupported("use_sliding_window",
                              "is true; sliding-window attention is not supported");
  }
  return config;
}

StatusOr<Qwen3MoeConfig> LoadQwen3MoeConfig(const std::string& config_json_path) {
  MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_json_path));
  MG_ASSIGN_OR_RETURN(JsonValue json, ParseJson(text, config_json_path));
  return ParseQwen3MoeConfig(json, config_json_path);
}

std::string Qwen3MoeConfig::ToJson() const {
  JsonValue layers = JsonValue::MakeArray();
  for (int64_t layer : mlp_only_layers)
    layers.Append(JsonValue::Int(layer));
  // Keys sorted, as transformers writes them.
  JsonValue::Object members = {
      {"architectures", JsonValue::MakeArray({JsonValue::String(architecture)})},
      {"attention_bias", JsonValue::Bool(false)},
      {"attention_dropout", JsonValue::Double(0.0)},
      {"decoder_sparse_step", JsonValue::Int(decoder_sparse_step)},
      {"head_dim", JsonValue::Int(head_dim)},
      {"hidden_act", JsonValue::String("silu")},
      {"hidden_size", JsonValue::Int(hidden_size)},
      {"initializer_range", JsonValue::Double(0.02)},
      {"intermediate_size", JsonValue::Int(intermediate_size)},
      {"max_position_embeddings", JsonValue::Int(max_position_embeddings)},
      {"max_window_layers", JsonValue::Int(num_hidden_layers)},
      {"mlp_only_layers", std::move(layers)},
      {"model_type", JsonValue::String("qwen3_moe")},
      {"moe_intermediate_size", JsonValue::Int(moe_intermediate_size)},
      {"norm_topk_prob", JsonValue::Bool(norm_topk_prob)},
      {"num_attention_heads", JsonValue::Int(num_attention_heads)},
      {"num_experts", JsonValue::Int(num_experts)},
      {"num_experts_per_tok", JsonValue::Int(num_experts_per_tok)},
      {"num_hidden_layers", JsonValue::Int(num_hidden_layers)},
      {"num_key_value_heads", JsonValue::Int(num_key_value_heads)},
      {"output_router_logits", JsonValue::Bool(false)},
      {"rms_norm_eps", JsonValue::Double(rms_norm_eps)},
      {"rope_scaling", JsonValue::Null()},
      {"rope_theta", JsonValue::Double(rope_theta)},
      {"router_aux_loss_coef", JsonValue::Double(0.001)},
      {"sliding_window", JsonValue::Null()},
      {"tie_word_embeddings", JsonValue::Bool(tie_word_embeddings)},
  };
  if (!torch_dtype.empty()) members.emplace_back("torch_dtype", JsonValue::String(torch_dtype));
  members.emplace_back("use_cache", JsonValue::Bool(true));
  members.emplace_back("use_sliding_window", JsonValue::Bool(false));
  members.emplace_back("vocab_size", JsonValue::Int(vocab_size));
  return JsonValue::MakeObject(std::move(members)).Dump(/*indent=*/2) + "\n";
}

}  // namespace moegraph
