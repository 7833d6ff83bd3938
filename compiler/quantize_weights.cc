// Compile-time int8 quantization of matmul weights.
#include "compiler/quantize_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "checkpoint/weights.h"
#include "ir/op_registry.h"
#include "ir/quant.h"
#include "support/half.h"

namespace moegraph {
namespace {

// The data operands of `op` (%meta not counted) that its kernels read as [..., N, K] matmul
// weights, quantized or not.
std::vector<size_t> MatmulWeightOperands(const Op& op) {
  const std::string& kind = op.def->name;
  if (kind == "linear") return {1};
  if (kind == "linear_silu_mul") return {1, 2};
  if (kind == "mlp") return {1, 2, 3};
  if (kind == "moe") {
    if (op.IntAttr("activation", 0) == 0) return {2, 3, 4};
    if (op.IntAttr("out_major", 0) != 0) return {2, 3};  // [out, in] clamped-SwiGLU experts
  }
  return {};
}

// `count` values of `dtype` (f32, bf16 or f16) at `data`, widened to f32.
void WidenToF32(const std::byte* data, DType dtype, int64_t count, float* out) {
  if (dtype == DType::kF32) {
    std::memcpy(out, data, static_cast<size_t>(count) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    uint16_t h;
    std::memcpy(&h, data + 2 * i, sizeof(h));
    out[i] = dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
  }
}

// The packed file's tensor name of weight `name` (row_offset > 0: rows of a fused tensor).
std::string PackedName(std::string name, int64_t row_offset) {
  for (size_t at; (at = name.find(".{e}")) != std::string::npos;)
    name.erase(at, 4);
  for (size_t at; (at = name.find("{e}")) != std::string::npos;)
    name.erase(at, 3);
  name = "int8." + name;
  if (row_offset > 0) name += ".rows" + std::to_string(row_offset);
  return name;
}

std::string AsBytes(const void* data, size_t bytes) {
  return std::string(static_cast<const char*>(data), bytes);
}

}  // namespace

std::optional<WeightFormat> ParseWeightFormat(std::string_view name) {
  if (name == "checkpoint") return WeightFormat::kCheckpoint;
  if (name == "int8") return WeightFormat::kInt8;
  return std::nullopt;
}

std::string PackedWeightsPath(const std::string& plan_path) {
  const std::filesystem::path plan(plan_path);
  return (plan.parent_path() / (plan.stem().string() + ".int8.safetensors")).string();
}

Status QuantizeInt8Rows(const float* w, int64_t rows, int64_t cols, int64_t block_cols, int8_t* q,
                        float* scales) {
  const int64_t blocks = (cols + block_cols - 1) / block_cols;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * block_cols, c1 = std::min(cols, c0 + block_cols);
      float max_abs = 0.0f;
      for (int64_t c = c0; c < c1; ++c) {
        if (!std::isfinite(row[c])) {
          return InvalidArgument("value " + std::to_string(row[c]) + " at row " +
                                 std::to_string(r) + ", column " + std::to_string(c) +
                                 " is not finite; int8 blocks need finite weights");
        }
        max_abs = std::max(max_abs, std::fabs(row[c]));
      }
      const float scale = max_abs / 127.0f;
      scales[r * blocks + b] = scale;
      for (int64_t c = c0; c < c1; ++c) {
        const float code = scale > 0.0f ? std::round(row[c] / scale) : 0.0f;
        q[r * cols + c] = static_cast<int8_t>(std::clamp(code, -127.0f, 127.0f));
      }
    }
  }
  return Status::Ok();
}

StatusOr<QuantizeReport> QuantizeWeights(
    Graph& graph, const Checkpoint& checkpoint, const std::string& path,
    const std::function<void(size_t done, size_t total)>& progress) {
  // Each weight value's producing op, and whether every use of it is a matmul weight operand.
  std::map<ValueId, size_t> weight_op;
  for (size_t i = 0; i < graph.ops().size(); ++i) {
    const Op& op = graph.ops()[i];
    if (op.def != nullptr && op.def->name == "weight" && op.results.size() == 1) {
      weight_op.emplace(op.results[0], i);
    }
  }
  std::map<ValueId, std::string> other_use;  // weight value -> the op that reads it otherwise
  std::set<ValueId> matmul_use;
  for (const Op& op : graph.ops()) {
    if (op.def == nullptr) continue;
    const std::vector<size_t> matmul = MatmulWeightOperands(op);
    // Data operand indices, as the shape rules count them: after %meta where an op takes it.
    const size_t first = !op.operands.empty() && op.operands[0] == graph.meta() ? 1 : 0;
    for (size_t i = first; i < op.operands.size(); ++i) {
      const ValueId v = op.operands[i];
      if (weight_op.count(v) == 0) continue;
      if (std::find(matmul.begin(), matmul.end(), i - first) != matmul.end()) {
        matmul_use.insert(v);
      } else {
        other_use.emplace(v, op.def->name);
      }
    }
  }
  for (ValueId v : graph.outputs()) {
    if (weight_op.count(v) != 0) other_use.emplace(v, "the graph's outputs");
  }

  QuantizeReport report;
  std::vector<ValueId> chosen;
  for (const auto& [value, index] : weight_op) {
    const Op& op = graph.ops()[index];
    const Type& type = graph.type(value);
    const std::string name = op.StringAttr("name");
    if (matmul_use.count(value) == 0) continue;  // norms, biases, routers: not matmul weights
    std::string reason;
    if (auto it = other_use.find(value); it != other_use.end()) {
      reason = "also read by " + it->second;
    } else if (op.HasAttr("quant")) {
      reason = std::string("already ") + op.StringAttr("quant");
    } else if (type.dtype != DType::kF32 && type.dtype != DType::kBF16 &&
               type.dtype != DType::kF16) {
      reason = std::string("dtype ") + DTypeName(type.dtype);
    } else if (type.rank() != (op.HasAttr("experts") ? 3 : 2)) {
      reason = "rank " + std::to_string(type.rank());
    }
    if (!reason.empty()) {
      report.kept.push_back(name + " (" + reason + ")");
      continue;
    }
    chosen.push_back(value);
  }

  std::vector<TensorToWrite> tensors;
  std::set<std::string> packed_names;
  for (size_t done = 0; done < chosen.size(); ++done) {
    const ValueId value = chosen[done];
    Op& op = graph.mutable_ops()[weight_op.at(value)];
    const Type type = graph.type(value);
    const std::string name = op.StringAttr("name");
    StatusOr<ResolvedWeight> resolved = ResolveWeight(op, type, checkpoint);
    if (!resolved.ok()) return resolved.status().WithContext("quantizing weight '" + name + "'");
    const int64_t n = type.dims[type.rank() - 2].size, k = type.dims[type.rank() - 1].size;
    const int64_t blocks = (k + kInt8BlockCols - 1) / kInt8BlockCols;
    const int64_t matrices = static_cast<int64_t>(resolved->slices.size());
    std::string codes(static_cast<size_t>(matrices * n * k), '\0');
    std::vector<float> scales(static_cast<size_t>(matrices * n * blocks));
    std::vector<float> matrix(static_cast<size_t>(n * k));
    for (int64_t m = 0; m < matrices; ++m) {
      const WeightSlice& slice = resolved->slices[static_cast<size_t>(m)];
      report.source_bytes += slice.bytes;
      WidenToF32(slice.data, type.dtype, n * k, matrix.data());
      Status s = QuantizeInt8Rows(matrix.data(), n, k, kInt8BlockCols,
                                  reinterpret_cast<int8_t*>(codes.data()) + m * n * k,
                                  scales.data() + m * n * blocks);
      if (!s.ok()) {
        return s.WithContext(slice.file + ": weight '" + name + "'" +
                             (op.HasAttr("experts") ? " expert " + std::to_string(m) : ""));
      }
    }
    std::string packed = PackedName(name, op.IntAttr("row_offset", 0));
    while (!packed_names.insert(packed).second)
      packed += "_";
    std::vector<int64_t> shape = {n, k}, scale_shape = {n, blocks};
    if (op.HasAttr("experts")) {
      shape.insert(shape.begin(), matrices);
      scale_shape.insert(scale_shape.begin(), matrices);
    }
    report.packed_bytes += codes.size() + scales.size() * sizeof(float);
    tensors.push_back(TensorToWrite{packed, DType::kI8, shape, std::move(codes)});
    tensors.push_back(TensorToWrite{packed + ".scale", DType::kF32, scale_shape,
                                    AsBytes(scales.data(), scales.size() * sizeof(float))});
    op.attrs["name"] = packed;
    op.attrs.erase("row_offset");
    op.attrs["quant"] = std::string(QuantSchemeName(QuantScheme::kInt8Block));
    op.attrs["scale"] = packed + ".scale";
    op.attrs["block_rows"] = int64_t{1};
    op.attrs["block_cols"] = int64_t{kInt8BlockCols};
    graph.mutable_values()[static_cast<size_t>(value)].type.dtype = DType::kI8;
    ++report.weights;
    if (progress) progress(done + 1, chosen.size());
  }
  MG_RETURN_IF_ERROR(WriteSafetensors(path, tensors, {{"format", "moegraph int8_block weights"}},
                                      kPackedWeightsAlignment));
  return report;
}

}  // namespace moegraph
