// A checkpoint's `quantization_config` (config.json), parsed once for every family: which
// scheme its quantized linears use and which modules it leaves unquantized. WeightLoader
// applies it to each linear weight it resolves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "frontends/config_reader.h"
#include "ir/quant.h"
#include "support/status.h"

namespace moegraph {

struct QuantizationConfig {
  // kNone: no quantization_config; every weight is f32/bf16/f16.
  QuantScheme scheme = QuantScheme::kNone;
  int64_t block_rows = 0;  // weight_block_size[0]: output rows per scale
  int64_t block_cols = 0;  // weight_block_size[1]: input columns per scale
  // Module names (or dotted suffixes / prefixes of them) never quantized: "lm_head",
  // "model.layers.0.mlp.gate".
  std::vector<std::string> modules_to_not_convert;

  // Whether checkpoint tensor `name` ("model.layers.0.mlp.gate.weight") lies in a module of
  // modules_to_not_convert.
  bool NotConverted(const std::string& name) const;
  // The weight op quantization of a quantized tensor of this config.
  WeightQuant Quant() const {
    return WeightQuant{scheme, static_cast<int32_t>(block_rows), static_cast<int32_t>(block_cols)};
  }
  bool operator==(const QuantizationConfig&) const = default;
};

// Reads `quantization_config` (absent or null: none). quant_method "fp8" with fmt "e4m3"
// (the default), activation_scheme "dynamic" (the default; activations stay f32 here) and
// weight_block_size [rows, cols] (both >= 1) is kFp8Block; quant_method "mxfp4" (GPT-OSS)
// is kMxfp4 with blocks of 1 x 32. modules_to_not_convert entries may hold "*" components
// ("model.layers.*.self_attn"). Any other quant_method, fmt or activation_scheme is
// Unimplemented naming the field; a malformed one InvalidArgument.
StatusOr<QuantizationConfig> ParseQuantizationConfig(const FieldReader& reader);

}  // namespace moegraph
