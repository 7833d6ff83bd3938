// quantization_config parsing.
#include "frontends/quantization.h"

#include <algorithm>
#include <string_view>

#include "support/format.h"

namespace moegraph {

namespace {

// Whether dotted name `s` equals pattern `p`, where a "*" component of p matches any one
// component ("model.layers.*.self_attn", as GPT-OSS's config writes it).
bool MatchComponents(std::string_view p, std::string_view s) {
  while (true) {
    const size_t pd = p.find('.'), sd = s.find('.');
    const std::string_view pc = p.substr(0, pd), sc = s.substr(0, sd);
    if (pc != "*" && pc != sc) return false;
    if (pd == std::string_view::npos || sd == std::string_view::npos)
      return pd == std::string_view::npos && sd == std::string_view::npos;
    p.remove_prefix(pd + 1);
    s.remove_prefix(sd + 1);
  }
}

// Whether module `module` is `m`, lies inside `m` (a parent module), or ends in `m` (a dotted
// suffix), with "*" components of m matching any one component.
bool ModuleMatches(std::string_view m, std::string_view module) {
  const size_t mc = static_cast<size_t>(std::count(m.begin(), m.end(), '.')) + 1;
  std::vector<size_t> starts = {0};  // component starts of module
  for (size_t i = 0; i < module.size(); ++i) {
    if (module[i] == '.') starts.push_back(i + 1);
  }
  const size_t n = starts.size();
  if (mc > n) return false;
  auto span = [&](size_t first, size_t count) {
    const size_t begin = starts[first];
    const size_t end = first + count < n ? starts[first + count] - 1 : module.size();
    return module.substr(begin, end - begin);
  };
  if (MatchComponents(m, span(0, mc))) return true;  // m itself or a parent module
  return MatchComponents(m, span(n - mc, mc));       // a dotted suffix
}

}  // namespace

bool QuantizationConfig::NotConverted(const std::string& name) const {
  // The module is the tensor name without its last component ("weight", "gate_up_proj").
  const size_t dot = name.rfind('.');
  const std::string module = dot == std::string::npos ? name : name.substr(0, dot);
  for (const std::string& m : modules_to_not_convert) {
    if (m.empty()) continue;
    // "lm_head" matches "lm_head"; "mlp.gate" matches "model.layers.0.mlp.gate";
    // "model.layers.0" covers its children; "model.layers.*.self_attn" every layer's.
    if (name == m || ModuleMatches(m, module)) return true;
  }
  return false;
}

namespace {

// quant_method "fp8": fmt, activation_scheme and weight_block_size.
Status ParseFp8(const FieldReader& q, QuantizationConfig& config) {
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
  return Status::Ok();
}

}  // namespace

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
  if (method == "fp8") {
    MG_RETURN_IF_ERROR(ParseFp8(q, config));
  } else if (method == "mxfp4") {
    // GPT-OSS: experts as *_blocks (FP4 e2m1 pairs) and *_scales (e8m0 per 32 inputs).
    config.scheme = QuantScheme::kMxfp4;
    config.block_rows = 1;
    config.block_cols = 32;
  } else {
    return q.Unsupported("quant_method",
                         Format("is \"{}\"; supported: \"fp8\" (block-scaled e4m3 weights), "
                                "\"mxfp4\" (OCP MXFP4 experts)",
                                method));
  }
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
