// Compile-time int8 / int4 quantization of matmul weights.
#include "compiler/quantize_weights.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

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
std::string PackedName(std::string name, int64_t row_offset, WeightFormat format) {
  for (size_t at; (at = name.find(".{e}")) != std::string::npos;)
    name.erase(at, 4);
  for (size_t at; (at = name.find("{e}")) != std::string::npos;)
    name.erase(at, 3);
  name = std::string(WeightFormatName(format)) + "." + name;
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
  if (name == "int4") return WeightFormat::kInt4;
  return std::nullopt;
}

const char* WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kCheckpoint:
      return "checkpoint";
    case WeightFormat::kInt8:
      return "int8";
    case WeightFormat::kInt4:
      return "int4";
  }
  return "checkpoint";
}

std::string PackedWeightsPath(const std::string& plan_path, WeightFormat format) {
  const std::filesystem::path plan(plan_path);
  return (plan.parent_path() /
          (plan.stem().string() + "." + WeightFormatName(format) + ".safetensors"))
      .string();
}

Status QuantizeInt8Rows(const float* w, int64_t rows, int64_t cols, int64_t block_cols, int8_t* q,
                        float* scales, int64_t first_row) {
  const int64_t blocks = (cols + block_cols - 1) / block_cols;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * block_cols, c1 = std::min(cols, c0 + block_cols);
      float max_abs = 0.0f;
      for (int64_t c = c0; c < c1; ++c) {
        if (!std::isfinite(row[c])) {
          return InvalidArgument("value " + std::to_string(row[c]) + " at row " +
                                 std::to_string(first_row + r) + ", column " + std::to_string(c) +
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

Status QuantizeInt4Rows(const float* w, int64_t rows, int64_t cols, int64_t block_cols, uint8_t* q,
                        float* scales, int64_t first_row) {
  if (cols % 2 != 0) {
    return InvalidArgument("int4 rows pack two values a byte: " + std::to_string(cols) +
                           " columns, expected an even count");
  }
  const int64_t blocks = (cols + block_cols - 1) / block_cols;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * block_cols, c1 = std::min(cols, c0 + block_cols);
      float extreme = 0.0f;  // the value of largest magnitude
      for (int64_t c = c0; c < c1; ++c) {
        if (!std::isfinite(row[c])) {
          return InvalidArgument("value " + std::to_string(row[c]) + " at row " +
                                 std::to_string(first_row + r) + ", column " + std::to_string(c) +
                                 " is not finite; int4 blocks need finite weights");
        }
        if (std::fabs(row[c]) > std::fabs(extreme)) extreme = row[c];
      }
      const float scale = extreme / -8.0f;
      scales[r * blocks + b] = scale;
      for (int64_t c = c0; c < c1; ++c) {
        const float code = scale != 0.0f ? std::clamp(std::round(row[c] / scale), -8.0f, 7.0f) : 0;
        const auto nibble = static_cast<uint8_t>(static_cast<int>(code) + 8);
        uint8_t& byte = q[(r * cols + c) / 2];
        byte = c % 2 == 0 ? nibble : static_cast<uint8_t>((byte & 0x0f) | (nibble << 4));
      }
    }
  }
  return Status::Ok();
}

StatusOr<QuantizeReport> QuantizeWeights(
    Graph& graph, const Checkpoint& checkpoint, const std::string& path,
    const QuantizeOptions& options,
    const std::function<void(size_t done, size_t total)>& progress) {
  const bool int4 = options.format == WeightFormat::kInt4;
  if ((options.format != WeightFormat::kInt8 && !int4) || options.block_cols <= 0 ||
      options.block_cols % (int4 ? 32 : 8) != 0) {
    return InvalidArgument(std::string("cannot quantize weights to ") +
                           WeightFormatName(options.format) + " in blocks of " +
                           std::to_string(options.block_cols) +
                           " columns: expected int8 with a multiple of 8 or int4 with a "
                           "multiple of 32");
  }
  const QuantScheme scheme = int4 ? QuantScheme::kInt4Block : QuantScheme::kInt8Block;
  const int64_t num_threads = std::max(1u, std::thread::hardware_concurrency());
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
    } else if (int4 && type.dims.back().size % 32 != 0) {
      reason = "K " + std::to_string(type.dims.back().size) + " is not a multiple of 32";
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
    const int64_t blocks = (k + options.block_cols - 1) / options.block_cols;
    const int64_t matrices = static_cast<int64_t>(resolved->slices.size());
    const int64_t matrix_bytes = int4 ? n * k / 2 : n * k;
    std::string codes(static_cast<size_t>(matrices * matrix_bytes), '\0');
    std::vector<float> scales(static_cast<size_t>(matrices * n * blocks));
    for (const WeightSlice& slice : resolved->slices)
      report.source_bytes += slice.bytes;
    // Matrices (experts) and, for a single matrix, row ranges are independent: they run on
    // every core (the work is the widen and the rounding of each value).
    const int64_t row_bytes = int4 ? k / 2 : k;
    const int64_t dtype_bytes = static_cast<int64_t>(DTypeBytes(type.dtype));
    const int64_t row_parts = matrices >= num_threads ? 1 : num_threads;
    const int64_t units = matrices * row_parts;
    std::vector<Status> unit_status(static_cast<size_t>(units));
    std::atomic<int64_t> next_unit{0};
    auto work = [&] {
      std::vector<float> rows;
      for (int64_t u; (u = next_unit.fetch_add(1)) < units;) {
        const int64_t m = u / row_parts, part = u % row_parts;
        const int64_t r0 = n * part / row_parts, r1 = n * (part + 1) / row_parts;
        if (r0 == r1) continue;
        const WeightSlice& slice = resolved->slices[static_cast<size_t>(m)];
        rows.resize(static_cast<size_t>((r1 - r0) * k));
        WidenToF32(slice.data + r0 * k * dtype_bytes, type.dtype, (r1 - r0) * k, rows.data());
        char* q = codes.data() + m * matrix_bytes + r0 * row_bytes;
        float* s_out = scales.data() + (m * n + r0) * blocks;
        unit_status[static_cast<size_t>(u)] =
            int4 ? QuantizeInt4Rows(rows.data(), r1 - r0, k, options.block_cols,
                                    reinterpret_cast<uint8_t*>(q), s_out, r0)
                 : QuantizeInt8Rows(rows.data(), r1 - r0, k, options.block_cols,
                                    reinterpret_cast<int8_t*>(q), s_out, r0);
      }
    };
    {
      std::vector<std::thread> helpers;
      for (int t = 1; t < std::min<int64_t>(num_threads, units); ++t)
        helpers.emplace_back(work);
      work();
      for (std::thread& helper : helpers)
        helper.join();
    }
    for (int64_t u = 0; u < units; ++u) {
      const Status& s = unit_status[static_cast<size_t>(u)];
      if (s.ok()) continue;
      const int64_t m = u / row_parts;
      return s.WithContext(resolved->slices[static_cast<size_t>(m)].file + ": weight '" + name +
                           "'" + (op.HasAttr("experts") ? " expert " + std::to_string(m) : ""));
    }
    std::string packed = PackedName(name, op.IntAttr("row_offset", 0), options.format);
    while (!packed_names.insert(packed).second)
      packed += "_";
    // int4: the bytes as U8 [..., N, K / 2] (ResolveWeight reads them as i4 [..., N, K]).
    std::vector<int64_t> shape = {n, int4 ? k / 2 : k}, scale_shape = {n, blocks};
    if (op.HasAttr("experts")) {
      shape.insert(shape.begin(), matrices);
      scale_shape.insert(scale_shape.begin(), matrices);
    }
    report.packed_bytes += codes.size() + scales.size() * sizeof(float);
    tensors.push_back(
        TensorToWrite{packed, int4 ? DType::kU8 : DType::kI8, shape, std::move(codes)});
    tensors.push_back(TensorToWrite{packed + ".scale", DType::kF32, scale_shape,
                                    AsBytes(scales.data(), scales.size() * sizeof(float))});
    op.attrs["name"] = packed;
    op.attrs.erase("row_offset");
    op.attrs["quant"] = std::string(QuantSchemeName(scheme));
    op.attrs["scale"] = packed + ".scale";
    op.attrs["block_rows"] = int64_t{1};
    op.attrs["block_cols"] = int64_t{options.block_cols};
    graph.mutable_values()[static_cast<size_t>(value)].type.dtype = QuantWeightDType(scheme);
    ++report.weights;
    if (progress) progress(done + 1, chosen.size());
  }
  MG_RETURN_IF_ERROR(WriteSafetensors(
      path, tensors, {{"format", std::string("moegraph ") + QuantSchemeName(scheme) + " weights"}},
      kPackedWeightsAlignment));
  return report;
}

}  // namespace moegraph
