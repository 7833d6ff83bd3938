// Qwen2 config.json parsing and validation.
#include "frontends/qwen2_config.h"

#include <string>

#include "frontends/config_reader.h"
#include "support/format.h"

namespace moegraph {

std::string Qwen2Config::Describe() const {
  return Format("{} layers, dense, q/k/v bias", num_hidden_layers);
}

Status CheckFullAttentionLayers(const FieldReader& reader) {
  const JsonValue* types = reader.Get("layer_types");
  if (types == nullptr) return Status::Ok();
  if (!types->is_array()) {
    return reader.Error("layer_types",
                        Format("must be an array of layer kinds, found {}", types->DescribeKind()));
  }
  for (const JsonValue& type : types->as_array()) {
    if (!type.is_string() || type.as_string() != "full_attention") {
      return reader.Unsupported("layer_types", Format("has entry {}; only \"full_attention\" "
                                                      "layers are supported",
                                                      type.Dump()));
    }
  }
  return Status::Ok();
}

StatusOr<Qwen2Config> ParseQwen2Config(const JsonValue& json, std::string_view source_name) {
  const std::string source(source_name);
  if (!json.is_object()) {
    return InvalidArgument(
        Format("{}: expected a JSON object, found {}", source, json.DescribeKind()));
  }
  FieldReader reader(json, source);
  Qwen2Config config;
  // use_sliding_window (refused when true) switches the window on; sliding_window alone is
  // the unused window size that every published Qwen2 config writes.
  MG_RETURN_IF_ERROR(ParseDecoderConfig(reader, "Qwen2ForCausalLM", config));
  MG_RETURN_IF_ERROR(reader.RequiredInt("intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(CheckSize(reader, "intermediate_size", config.intermediate_size));
  MG_RETURN_IF_ERROR(CheckWeightBytes(reader, "intermediate_size",
                                      {config.intermediate_size, config.hidden_size}, config));
  MG_RETURN_IF_ERROR(CheckFullAttentionLayers(reader));
  return config;
}

}  // namespace moegraph
