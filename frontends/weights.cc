// WeightLoader: checkpoint lookups with shape and dtype checks.
#include "frontends/weights.h"

#include <algorithm>
#include <cmath>

#include "support/strings.h"

namespace moegraph {
namespace {

Type StaticTensor(DType dtype, const std::vector<int64_t>& shape) {
  std::vector<Dim> dims;
  for (int64_t d : shape)
    dims.push_back(Dim::Static(d));
  return Type::Tensor(dtype, std::move(dims));
}

}  // namespace

uint8_t Mxfp4ScaleByte(int64_t k, int jitter) {
  const double centre = 127.0 - std::round(std::log2(3.2 * std::sqrt(static_cast<double>(k))));
  return static_cast<uint8_t>(std::clamp(centre + jitter, 1.0, 254.0));
}

StatusOr<const SafetensorsTensor*> WeightLoader::Lookup(const std::string& name,
                                                        const std::vector<int64_t>& shape,
                                                        AttrMap* attrs) const {
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, ckpt_.Get(name));
  const std::string where = ckpt_.FileOf(name) + ": tensor '" + name + "'";
  if (t->shape != shape) {
    return InvalidArgument(where + " has shape " + ShapeString(t->shape) +
                           " but config.json implies " + ShapeString(shape));
  }
  const std::string scale = ScaleTensorName(name);
  if (attrs != nullptr && quant_.scheme != QuantScheme::kNone && Has(scale) &&
      !quant_.NotConverted(name)) {
    const WeightQuant quant = quant_.Quant();
    const DType want = QuantWeightDType(quant.scheme);
    if (t->dtype != want) {
      return InvalidArgument(where + " has dtype " + DTypeSafetensorsName(t->dtype) + " but has " +
                             "scales '" + scale + "': quantization_config's " +
                             QuantSchemeName(quant.scheme) + " weights are " +
                             DTypeSafetensorsName(want));
    }
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* s, ckpt_.Get(scale));
    const std::vector<int64_t> scale_shape = QuantScaleShape(quant, shape);
    if (s->dtype != QuantScaleDType(quant.scheme) || s->shape != scale_shape) {
      return InvalidArgument(
          ckpt_.FileOf(scale) + ": scale tensor '" + scale + "' is " +
          DTypeSafetensorsName(s->dtype) + " " + ShapeString(s->shape) + ", expected " +
          DTypeSafetensorsName(QuantScaleDType(quant.scheme)) + " " + ShapeString(scale_shape) +
          " (weight_block_size [" + std::to_string(quant.block_rows) + ", " +
          std::to_string(quant.block_cols) + "] over " + ShapeString(shape) + ")");
    }
    (*attrs)["quant"] = std::string(QuantSchemeName(quant.scheme));
    (*attrs)["block_rows"] = static_cast<int64_t>(quant.block_rows);
    (*attrs)["block_cols"] = static_cast<int64_t>(quant.block_cols);
    return t;
  }
  if (t->dtype != DType::kF32 && t->dtype != DType::kBF16 && t->dtype != DType::kF16) {
    const bool fp8 = t->dtype == DType::kFp8E4M3;
    return Unimplemented(
        where + " has dtype " + DTypeSafetensorsName(t->dtype) + "; supported: F32, BF16, F16" +
        (fp8 ? std::string(", and F8_E4M3 with scales '") + scale +
                   "' under a quantization_config of quant_method \"fp8\"" +
                   (quant_.NotConverted(name) ? " (this module is in modules_to_not_convert)" : "")
             : std::string()));
  }
  return t;
}

StatusOr<ValueId> WeightLoader::Plain(const std::string& name, const std::vector<int64_t>& shape) {
  AttrMap attrs;
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Lookup(name, shape, &attrs));
  if (!attrs.empty()) attrs["scale"] = ScaleTensorName(name);
  return b_.Weight(name, StaticTensor(t->dtype, shape), std::move(attrs));
}

StatusOr<ValueId> WeightLoader::Squeezed(const std::string& name,
                                         const std::vector<int64_t>& stored,
                                         const std::vector<int64_t>& shape) {
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Lookup(name, stored));
  const size_t ones = stored.size() - std::min(stored.size(), shape.size());
  const bool leading_ones = std::all_of(stored.begin(), stored.begin() + static_cast<long>(ones),
                                        [](int64_t d) { return d == 1; });
  if (!leading_ones || !std::equal(shape.begin(), shape.end(),
                                   stored.begin() + static_cast<long>(ones), stored.end())) {
    return InvalidArgument(ckpt_.FileOf(name) + ": tensor '" + name + "' " + ShapeString(stored) +
                           " is not " + ShapeString(shape) + " with leading size-1 dims");
  }
  return b_.Weight(name, StaticTensor(t->dtype, shape));
}

StatusOr<ValueId> WeightLoader::Stacked(const std::string& pattern, int64_t num_experts,
                                        const std::vector<int64_t>& shape) {
  AttrMap attrs;
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* first,
                      Lookup(ExpandExpertName(pattern, 0), shape, &attrs));
  for (int64_t i = 1; i < num_experts; ++i) {
    const std::string name = ExpandExpertName(pattern, i);
    AttrMap expert_attrs;
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Lookup(name, shape, &expert_attrs));
    if (t->dtype != first->dtype || expert_attrs != attrs) {
      return InvalidArgument(
          ckpt_.FileOf(name) + ": tensor '" + name + "' is " + DTypeSafetensorsName(t->dtype) +
          (expert_attrs.empty() ? "" : " with scales") + " but expert 0 is " +
          DTypeSafetensorsName(first->dtype) + (attrs.empty() ? "" : " with scales") +
          "; all experts of a layer must share a dtype" +
          (attrs.empty() && expert_attrs.empty() ? "" : " and quantization"));
    }
  }
  if (!attrs.empty()) attrs["scale"] = ScaleTensorName(pattern);
  attrs["experts"] = num_experts;
  std::vector<int64_t> stacked = {num_experts};
  stacked.insert(stacked.end(), shape.begin(), shape.end());
  return b_.Weight(pattern, StaticTensor(first->dtype, stacked), std::move(attrs));
}

StatusOr<ValueId> WeightLoader::FusedRows(const std::string& name,
                                          const std::vector<int64_t>& stored, int64_t row_offset,
                                          int64_t rows) {
  AttrMap attrs;
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Lookup(name, stored, &attrs));
  if (stored.size() != 3 || row_offset < 0 || rows <= 0 || row_offset + rows > stored[1]) {
    return InvalidArgument(ckpt_.FileOf(name) + ": tensor '" + name + "' " + ShapeString(stored) +
                           ": rows [" + std::to_string(row_offset) + ", " +
                           std::to_string(row_offset + rows) +
                           ") are not inside its second dimension");
  }
  if (!attrs.empty()) {
    const int64_t block_rows = std::get<int64_t>(attrs["block_rows"]);
    if (row_offset % block_rows != 0) {
      return Unimplemented(ckpt_.FileOf(name) + ": tensor '" + name + "': rows from " +
                           std::to_string(row_offset) + " do not start on a scale block of " +
                           std::to_string(block_rows) + " rows");
    }
    attrs["scale"] = ScaleTensorName(name);
  }
  attrs["experts"] = stored[0];
  if (row_offset != 0) attrs["row_offset"] = row_offset;
  return b_.Weight(name, StaticTensor(t->dtype, {stored[0], rows, stored[2]}), std::move(attrs));
}

StatusOr<ValueId> WeightLoader::Mxfp4Experts(const std::string& base,
                                             const std::vector<int64_t>& shape) {
  const std::string blocks_name = base + "_blocks", scales_name = base + "_scales";
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* blocks, ckpt_.Get(blocks_name));
  const std::string where = ckpt_.FileOf(blocks_name) + ": tensor '" + blocks_name + "'";
  if (quant_.scheme != QuantScheme::kMxfp4 || quant_.NotConverted(blocks_name)) {
    return InvalidArgument(where + " holds MXFP4 blocks, but quantization_config " +
                           (quant_.scheme != QuantScheme::kMxfp4
                                ? std::string("does not say quant_method \"mxfp4\"")
                                : std::string("lists its module in modules_to_not_convert")));
  }
  if (shape.size() != 3 || shape[2] % 32 != 0) {
    return InvalidArgument(where + ": config.json implies experts " + ShapeString(shape) +
                           ", but MXFP4 needs [E, N, K] with K a multiple of 32");
  }
  const std::vector<int64_t> want_blocks = {shape[0], shape[1], shape[2] / 32, 16};
  if (blocks->dtype != DType::kU8 || blocks->shape != want_blocks) {
    return InvalidArgument(where + " is " + DTypeSafetensorsName(blocks->dtype) + " " +
                           ShapeString(blocks->shape) + ", expected U8 " +
                           ShapeString(want_blocks) + " (MXFP4 blocks of 32 inputs over " +
                           ShapeString(shape) + ")");
  }
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* scales, ckpt_.Get(scales_name));
  const WeightQuant quant = quant_.Quant();
  const std::vector<int64_t> want_scales = QuantScaleShape(quant, shape);
  if (scales->dtype != DType::kU8 || scales->shape != want_scales) {
    return InvalidArgument(ckpt_.FileOf(scales_name) + ": scale tensor '" + scales_name + "' is " +
                           DTypeSafetensorsName(scales->dtype) + " " + ShapeString(scales->shape) +
                           ", expected U8 " + ShapeString(want_scales) +
                           " (one e8m0 scale per 32 inputs)");
  }
  AttrMap attrs;
  attrs["quant"] = std::string(QuantSchemeName(quant.scheme));
  attrs["block_rows"] = static_cast<int64_t>(quant.block_rows);
  attrs["block_cols"] = static_cast<int64_t>(quant.block_cols);
  attrs["scale"] = scales_name;
  attrs["experts"] = shape[0];
  return b_.Weight(blocks_name, StaticTensor(DType::kMxfp4, shape), std::move(attrs));
}

StatusOr<ExpertWeights> WeightLoader::Experts(const std::string& prefix, int64_t num_experts,
                                              int64_t intermediate, int64_t hidden,
                                              const ExpertNames& names) {
  const int64_t e = num_experts, inter = intermediate;
  const std::string per_expert = prefix + "experts.{e}.";
  ExpertWeights w;
  if (!Has(prefix + "experts.0." + names.gate + ".weight") &&
      Has(prefix + "experts.gate_up_proj")) {
    const std::vector<int64_t> gate_up = {e, 2 * inter, hidden};
    MG_ASSIGN_OR_RETURN(w.gate, FusedRows(prefix + "experts.gate_up_proj", gate_up, 0, inter));
    MG_ASSIGN_OR_RETURN(w.up, FusedRows(prefix + "experts.gate_up_proj", gate_up, inter, inter));
    MG_ASSIGN_OR_RETURN(w.down,
                        FusedRows(prefix + "experts.down_proj", {e, hidden, inter}, 0, hidden));
  } else {
    MG_ASSIGN_OR_RETURN(w.gate, Stacked(per_expert + names.gate + ".weight", e, {inter, hidden}));
    MG_ASSIGN_OR_RETURN(w.up, Stacked(per_expert + names.up + ".weight", e, {inter, hidden}));
    MG_ASSIGN_OR_RETURN(w.down, Stacked(per_expert + names.down + ".weight", e, {hidden, inter}));
  }
  return w;
}

}  // namespace moegraph
