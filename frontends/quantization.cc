// quantization_config parsing.
#include "frontends/quantization.h"

#include "support/format.h"

namespace moegraph {

bool QuantizationConfig::NotConverted(const std::string& name) const {
  // The module is the tensor name without its last component ("weight", "gate_up_proj").
  const size_t dot = name.rfind('.');
  const std::string module = dot == std::string::npos ? name : name.substr(0, dot);
  for (const std::string& m : modules_to_not_convert) {
    if (m.empty()) continue;
    if (module == m || name == m) return true;
    if (module.size() > m.size() && module.compare(module.size() - m.size(), m.size(), m) == 0 &&
        module[module.size() - m.size() - 1] == '.') {
      return true;  // "lm_head" matches "lm_head"; "mlp.gate" matches "model.layers.0.mlp.gate"
    }
    if (module.size() > m.size() && module.compare(0, m.size(), m) == 0 &&
        module[m.size()] == '.') {
      return true;  // a parent module: "model.layers.0" covers its children
    }
  }
  return false;
}

StatusOr<QuantizationConfig> ParseQuantizationConfig(const FieldReader& reader) {
  QuantizationConfig config;
  const JsonValue* json = reader.Get("quantization_config");
  if (json == nullptr) return config;
  if (!json->is_object()) {
    return reader.Error("quantization_config",
                        Format("must be an object, found {}", json->DescribeKind()));
  }
  const std::string source = std::string(reader.source()) + " quantization_config";
  const FieldReader q(*json, source);
  std::string method;
  MG_RETURN_IF_ERROR(q.OptionalString("quant_method", method));
  if (method != "fp8") {
    return q.Unsupported(
        "quant_method",
        Format("is \"{}\"; supported: \"fp8\" (block-scaled e4m3 weights)", method));
  }
  std::string fmt = "e4m3", activation = "dynamic";
  MG_RETURN_IF_ERROR(q.OptionalString("fmt", fmt));
  MG_RETURN_IF_ERROR(q.OptionalString("activation_scheme", activation));
  if (fmt != "e4m3") {
    return q.Unsupported("fmt", Format("is \"{}\"; supported: \"e4m3\"", fmt));
  }
  if (activation != "dynamic") {
    return q.Unsupported(
        "activation_scheme",
        Format("is \"{}\"; supported: \"dynamic\" (weight-only dequantization)", activation));
  }
  const JsonValue* block = q.Get("weight_block_size");
  if (block == nullptr) {
    return q.Unsupported("weight_block_size",
                         "is missing; only block-scaled fp8 ([rows, cols]) is supported");
  }
  if (!block->is_array() || block->size() != 2 || !block->as_array()[0].is_int() ||
      !block->as_array()[1].is_int() || block->as_array()[0].as_int() < 1 ||
      block->as_array()[1].as_int() < 1 || block->as_array()[0].as_int() > INT32_MAX ||
      block->as_array()[1].as_int() > INT32_MAX) {
    return q.Error("weight_block_size",
                   Format("must be [rows, cols] of two integers >= 1, found {}", block->Dump()));
  }
  config.scheme = QuantScheme::kFp8Block;
  config.block_rows = block->as_array()[0].as_int();
  config.block_cols = block->as_array()[1].as_int();
  if (const JsonValue* skip = q.Get("modules_to_not_convert"); skip != nullptr) {
    if (!skip->is_array()) {
      return q.Error("modules_to_not_convert",
                     Format("must be an array of strings, found {}", skip->DescribeKind()));
    }
    for (const JsonValue& m : skip->as_array()) {
      if (!m.is_string()) {
        return q.Error("modules_to_not_convert",
                       Format("must be an array of strings, found {}", skip->Dump()));
      }
      config.modules_to_not_convert.push_back(m.as_string());
    }
  }
  return config;
}

}  // namespace moegraph
