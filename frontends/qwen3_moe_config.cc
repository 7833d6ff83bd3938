// Qwen3-MoE config.json parsing, validation and writing.
#include "frontends/qwen3_moe_config.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "frontends/config_reader.h"
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

Status ParseQwenMoeFields(const FieldReader& reader, bool moe, Qwen3MoeConfig& config) {
  MG_RETURN_IF_ERROR(reader.RequiredInt("intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, "intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(CheckWeightBytes(reader, "intermediate_size",
                                      {config.intermediate_size, config.hidden_size}, config));
  if (!moe) return Status::Ok();

  MG_RETURN_IF_ERROR(reader.RequiredInt("moe_intermediate_size", config.moe_intermediate_size));
  // transformers 5 writes the expert count as num_local_experts.
  MG_RETURN_IF_ERROR(reader.RequiredInt(
      reader.Get("num_experts") == nullptr && reader.Get("num_local_experts") != nullptr
          ? "num_local_experts"
          : "num_experts",
      config.num_experts));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_experts_per_tok", config.num_experts_per_tok));
  MG_RETURN_IF_ERROR(reader.OptionalInt("decoder_sparse_step", config.decoder_sparse_step));
  MG_RETURN_IF_ERROR(reader.OptionalBool("norm_topk_prob", config.norm_topk_prob));
  MG_RETURN_IF_ERROR(CheckSize(reader, "moe_intermediate_size", config.moe_intermediate_size));
  if (config.num_experts < 0) {
    return reader.Error("num_experts", Format("must be >= 0, got {}", config.num_experts));
  }
  if (config.num_experts > INT32_MAX) {
    return reader.Error("num_experts",
                        Format("is {}, expected at most {}", config.num_experts, INT32_MAX));
  }
  MG_RETURN_IF_ERROR(CheckWeightBytes(
      reader, "moe_intermediate_size",
      {std::max<int64_t>(config.num_experts, 1), config.moe_intermediate_size, config.hidden_size},
      config));
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
  return Status::Ok();
}

namespace {

// The Qwen3 fields past the shared decoder ones; `moe` reads the expert fields.
StatusOr<Qwen3MoeConfig> ParseQwen3Fields(const JsonValue& json, std::string_view source_name,
                                          const char* architecture, bool moe) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  Qwen3MoeConfig config;
  MG_RETURN_IF_ERROR(ParseDecoderConfig(reader, architecture, config));
  MG_RETURN_IF_ERROR(ParseQwenMoeFields(reader, moe, config));
  return config;
}

}  // namespace

StatusOr<Qwen3MoeConfig> ParseQwen3MoeConfig(const JsonValue& json, std::string_view source_name) {
  return ParseQwen3Fields(json, source_name, kArchitecture, /*moe=*/true);
}

StatusOr<Qwen3MoeConfig> ParseQwen3Config(const JsonValue& json, std::string_view source_name) {
  return ParseQwen3Fields(json, source_name, "Qwen3ForCausalLM", /*moe=*/false);
}

StatusOr<Qwen3MoeConfig> LoadQwen3MoeConfig(const std::string& config_json_path) {
  MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_json_path));
  MG_ASSIGN_OR_RETURN(JsonValue json, ParseJson(text, config_json_path));
  return ParseQwen3MoeConfig(json, config_json_path);
}

std::string Qwen3MoeConfig::Describe() const {
  int64_t moe_layers = 0;
  for (int64_t layer = 0; layer < num_hidden_layers; ++layer)
    moe_layers += IsMoeLayer(layer) ? 1 : 0;
  if (moe_layers == 0) return Format("{} layers, dense", num_hidden_layers);
  return Format("{} layers ({} MoE): {} experts, top-{}, softmax router{}", num_hidden_layers,
                moe_layers, num_experts, num_experts_per_tok,
                norm_topk_prob ? ", renormalised" : "");
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
