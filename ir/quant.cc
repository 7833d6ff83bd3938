// Quantization scheme names and scale shapes.
#include "ir/quant.h"

#include <cstdint>
#include <string>

#include "ir/graph.h"

namespace moegraph {

const char* QuantSchemeName(QuantScheme scheme) {
  switch (scheme) {
    case QuantScheme::kNone:
      return "none";
    case QuantScheme::kFp8Block:
      return "fp8_block";
    case QuantScheme::kMxfp4:
      return "mxfp4";
    case QuantScheme::kInt8Block:
      return "int8_block";
    case QuantScheme::kInt4Block:
      return "int4_block";
  }
  return "none";
}

std::optional<QuantScheme> ParseQuantScheme(std::string_view name) {
  if (name == "fp8_block") return QuantScheme::kFp8Block;
  if (name == "mxfp4") return QuantScheme::kMxfp4;
  if (name == "int8_block") return QuantScheme::kInt8Block;
  if (name == "int4_block") return QuantScheme::kInt4Block;
  return std::nullopt;
}

DType QuantWeightDType(QuantScheme scheme) {
  switch (scheme) {
    case QuantScheme::kNone:
      return DType::kF32;
    case QuantScheme::kFp8Block:
      return DType::kFp8E4M3;
    case QuantScheme::kMxfp4:
      return DType::kMxfp4;
    case QuantScheme::kInt8Block:
      return DType::kI8;
    case QuantScheme::kInt4Block:
      return DType::kI4;
  }
  return DType::kF32;
}

DType QuantScaleDType(QuantScheme scheme) {
  return scheme == QuantScheme::kMxfp4 ? DType::kU8 : DType::kF32;
}

StatusOr<WeightQuant> WeightQuantOf(const Op& op) {
  const char* keys[] = {"quant", "scale", "block_rows", "block_cols"};
  int present = 0;
  for (const char* key : keys)
    present += op.HasAttr(key) ? 1 : 0;
  WeightQuant quant;
  if (present == 0) return quant;
  const std::string where = "weight '" + op.StringAttr("name") + "'";
  if (present != 4) {
    return InvalidArgument(where +
                           ": a quantized weight needs all of quant, scale, block_rows and "
                           "block_cols");
  }
  const std::optional<QuantScheme> scheme = ParseQuantScheme(op.StringAttr("quant"));
  if (!scheme) {
    return InvalidArgument(
        where + ": unknown quant \"" + op.StringAttr("quant") +
        "\", expected \"fp8_block\", \"mxfp4\", \"int8_block\" or \"int4_block\"");
  }
  quant.scheme = *scheme;
  const int64_t rows = op.IntAttr("block_rows"), cols = op.IntAttr("block_cols");
  if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX) {
    return InvalidArgument(where + ": block_rows and block_cols must be in [1, 2^31), got " +
                           std::to_string(rows) + " and " + std::to_string(cols));
  }
  if (*scheme == QuantScheme::kMxfp4 && (rows != 1 || cols != 32)) {
    return InvalidArgument(where + ": mxfp4 scales cover blocks of 1 x 32, got block_rows " +
                           std::to_string(rows) + " and block_cols " + std::to_string(cols));
  }
  if (*scheme == QuantScheme::kInt4Block && (rows != 1 || cols % 32 != 0)) {
    return InvalidArgument(where +
                           ": int4_block scales cover blocks of 1 x a multiple of 32, "
                           "got block_rows " +
                           std::to_string(rows) + " and block_cols " + std::to_string(cols));
  }
  quant.block_rows = static_cast<int32_t>(rows);
  quant.block_cols = static_cast<int32_t>(cols);
  if (op.StringAttr("scale").empty()) return InvalidArgument(where + ": empty scale name");
  return quant;
}

std::vector<int64_t> QuantScaleShape(const WeightQuant& quant, const std::vector<int64_t>& shape) {
  std::vector<int64_t> out(shape.begin(), shape.end());
  if (out.size() < 2 || !quant.quantized()) return out;
  out[out.size() - 2] = quant.ScaleRows(out[out.size() - 2]);
  out[out.size() - 1] = quant.ScaleCols(out[out.size() - 1]);
  return out;
}

}  // namespace moegraph
