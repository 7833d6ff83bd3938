// The CUDA op table (see cuda_ops.h). Each entry checks its shape contract on
// the host as its reference kernel does (a step against it is an internal
// error: load-time verification rejects such steps), then calls the family
// launchers. Nothing here allocates, synchronizes or
// reads device memory on the host, so every entry is capturable.
#include "kernels/cuda/cuda_ops.h"

#include <algorithm>
#include <cstring>

#include "ir/op_registry.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/dense.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/moe.cuh"

namespace moegraph::cuda {
namespace {

using ref_detail::IsWeightDType;
using ref_detail::NumRows;
using ref_detail::RowSize;

// A GEMM chunk's activation copy and partial products stay under this size.
constexpr size_t kLinearScratchTarget = size_t{64} << 20;

size_t Align256(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

Status Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Internal(std::string(what) + ": " + cudaGetErrorString(e));
}

int64_t NumBytes(const TensorArg& t) {
  return DTypeStorageBytes(t.dtype, t.numel());
}
int64_t RowBytes(const TensorArg& t) {
  return RowSize(t) * static_cast<int64_t>(DTypeBytes(t.dtype));
}

Status ContractViolation(const char* kernel, const char* what) {
  return Internal(std::string("kernel '") + kernel + "' called against its contract: " + what +
                  " (load-time step verification should have rejected this)");
}

Status Zero(const TensorArg& t, cudaStream_t stream) {
  return Check(cudaMemsetAsync(t.data, 0, NumBytes(t), stream), "zero fill");
}

// A matmul weight the kernels read: f32/bf16/f16, or block-scaled fp8 with its scales; with
// `mxfp4_ok` (the tiled GEMM's callers) also mxfp4 with its e8m0 scales.
bool MatmulWeightDTypeOk(const TensorArg& w, bool mxfp4_ok = false) {
  if (w.quant.scheme == QuantScheme::kMxfp4) {
    return mxfp4_ok && w.dtype == DType::kMxfp4 && w.quant.block_rows == 1 &&
           w.quant.block_cols == 32 && w.rank >= 1 && w.dim(-1) % 32 == 0 &&
           (w.scales != nullptr || w.expert_scales != nullptr);
  }
  if (w.quant.scheme == QuantScheme::kFp8Block) {
    return w.dtype == DType::kFp8E4M3 && w.quant.block_rows > 0 && w.quant.block_cols > 0 &&
           (w.scales != nullptr || w.expert_scales != nullptr);
  }
  return !w.quant.quantized() && IsWeightDType(w.dtype);
}

// The tiled kernel's fp8 scale fields for gate (or only) weight wg and up weight wu.
void SetWeightScales(GroupedGemmArgs& g, const TensorArg& wg, const TensorArg* wu) {
  if (!wg.quant.quantized()) return;
  g.w_gate_scales = wg.expert_scales;
  g.dense_gate_scales = wg.scales;
  g.w_up_scales = wu ? wu->expert_scales : nullptr;
  g.dense_up_scales = wu ? wu->scales : nullptr;
  g.block_rows = wg.quant.block_rows;
  g.block_cols = wg.quant.block_cols;
  g.scale_cols = wg.quant.ScaleCols(wg.dim(-1));
}

bool WeightShapeOk(const TensorArg& w, int64_t n, int64_t k, bool mxfp4_ok = false) {
  return MatmulWeightDTypeOk(w, mxfp4_ok) && w.data != nullptr && w.rank == 2 && w.shape[0] == n &&
         w.shape[1] == k;
}

bool StackedWeightOk(const TensorArg& w, int64_t e, int64_t n, int64_t k, bool mxfp4_ok = false) {
  return MatmulWeightDTypeOk(w, mxfp4_ok) && w.expert_data != nullptr && w.rank == 3 &&
         w.shape[0] == e && (!w.quant.quantized() || w.expert_scales != nullptr) &&
         w.shape[1] == n && w.shape[2] == k;
}

const float* F32In(const TensorArg& t) {
  return static_cast<const float*>(t.data);
}
float* F32Out(const TensorArg& t) {
  return static_cast<float*>(t.data);
}
const int32_t* I32In(const TensorArg& t) {
  return static_cast<const int32_t*>(t.data);
}
int32_t* I32Out(const TensorArg& t) {
  return static_cast<int32_t*>(t.data);
}

// ---- Linear through cuBLASLt ------------------------------------------------------
//
// Rows are processed in chunks that bound the scratch: a half-precision copy
// of the chunk's activations ([parts * rows, k], bf16/f16 weights only), then
// one GEMM per weight into f32 partial products ([parts * rows, n]), then the
// epilogue (sum of parts, SiLU-and-mul, zero padding rows) into y.

struct LinearPlan {
  int parts = 1;
  int num_weights = 1;
  int64_t chunk_rows = 1;
  size_t activation_bytes = 0;
  size_t product_bytes = 0;  // per weight
  size_t total() const { return activation_bytes + num_weights * product_bytes; }
};

LinearPlan PlanLinear(int64_t rows, int64_t n, int64_t k, DType dtype, bool with_up,
                      int activation_parts) {
  LinearPlan plan;
  const bool half = dtype != DType::kF32;
  plan.parts = half ? std::clamp(activation_parts, 1, 2) : 1;
  plan.num_weights = with_up ? 2 : 1;
  const size_t per_row = plan.parts * (static_cast<size_t>(half ? 2 * k : 0) +
                                       plan.num_weights * static_cast<size_t>(n) * sizeof(float));
  const int64_t fit = per_row == 0 ? rows : static_cast<int64_t>(kLinearScratchTarget / per_row);
  plan.chunk_rows = std::clamp<int64_t>(fit, 1, std::max<int64_t>(rows, 1));
  plan.activation_bytes = half ? Align256(plan.parts * plan.chunk_rows * k * 2) : 0;
  plan.product_bytes = Align256(plan.parts * plan.chunk_rows * n * sizeof(float));
  return plan;
}

size_t LinearScratch(int64_t rows, int64_t n, int64_t k, DType dtype, bool with_up, int parts) {
  return PlanLinear(rows, n, k, dtype, with_up, parts).total();
}

// y [rows, n] = x [rows, k] w^T (or silu(x wg^T) * (x wu^T)) with the tiled
// CUDA kernel: exact f32 activations, as the reference.
Status DenseFallback(const float* x, int64_t rows, int64_t k, const TensorArg& wg,
                     const TensorArg* wu, int64_t n, float* y, int64_t row_limit,
                     const ForwardMetaView* meta, cudaStream_t stream) {
  GroupedGemmArgs g;
  g.mode = GroupMode::kDense;
  g.x = x;
  g.x_rows = rows;
  g.k = k;
  g.dense_gate = wg.data;
  g.dense_up = wu ? wu->data : nullptr;
  g.w_dtype = wg.dtype;
  g.w_up_dtype = wu ? wu->dtype : wg.dtype;
  SetWeightScales(g, wg, wu);
  g.num_experts = 1;
  g.out = y;
  g.out_rows = rows;
  g.n = n;
  g.valid_rows = row_limit;
  g.meta = meta;
  return Check(LaunchGroupedGemm(g, stream), "dense GEMM");
}

Status RunLinear(const CudaStepContext& ctx, std::byte* scratch, size_t scratch_bytes,
                 const float* x, int64_t rows, int64_t k, const TensorArg& wg, const TensorArg* wu,
                 int64_t n, float* y, int64_t row_limit, const ForwardMetaView* meta) {
  if (rows <= 0 || n <= 0) return Status::Ok();
  // Block-scaled fp8: the tiled kernel dequantizes in its tile loads.
  if (ctx.gemm == nullptr || k <= 0 || (wu != nullptr && wu->dtype != wg.dtype) ||
      wg.quant.quantized()) {
    return DenseFallback(x, rows, k, wg, wu, n, y, row_limit, meta, ctx.stream);
  }
  const LinearPlan plan = PlanLinear(rows, n, k, wg.dtype, wu != nullptr, ctx.activation_parts);
  if (scratch_bytes < plan.total()) {
    return Internal("linear needs " + std::to_string(plan.total()) + " scratch bytes, has " +
                    std::to_string(scratch_bytes));
  }
  std::byte* activations = scratch;
  float* products_gate = reinterpret_cast<float*>(scratch + plan.activation_bytes);
  float* products_up =
      reinterpret_cast<float*>(scratch + plan.activation_bytes + plan.product_bytes);
  for (int64_t r0 = 0; r0 < rows; r0 += plan.chunk_rows) {
    const int64_t m = std::min(plan.chunk_rows, rows - r0);
    const void* b = x + r0 * k;
    if (wg.dtype != DType::kF32) {
      MG_RETURN_IF_ERROR(
          Check(LaunchSplitToHalf(x + r0 * k, m, k, wg.dtype, plan.parts, activations, ctx.stream),
                "activation split"));
      b = activations;
    }
    Status s =
        ctx.gemm->Matmul(wg.data, b, products_gate, plan.parts * m, n, k, wg.dtype, ctx.stream);
    if (s.ok() && wu != nullptr) {
      s = ctx.gemm->Matmul(wu->data, b, products_up, plan.parts * m, n, k, wu->dtype, ctx.stream);
    }
    // No cuBLASLt algorithm (the answer is cached, so eager and capture agree):
    // the tiled kernel recomputes every row.
    if (s.code() == StatusCode::kUnimplemented) {
      return DenseFallback(x, rows, k, wg, wu, n, y, row_limit, meta, ctx.stream);
    }
    MG_RETURN_IF_ERROR(s);
    MG_RETURN_IF_ERROR(
        Check(LaunchGemmEpilogue(products_gate, wu ? products_up : nullptr, plan.parts, m, n,
                                 y + r0 * n, r0, row_limit, meta, ctx.stream),
              "GEMM epilogue"));
  }
  return Status::Ok();
}

// ---- Entries -----------------------------------------------------------------------

Status RunZeros(const KernelArgs& a, const CudaStepContext& ctx) {
  return Zero(a.out[0], ctx.stream);
}

Status RunEmbedding(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg& table = a.in[1];
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t hidden = RowSize(a.out[0]);
  if (!(IsWeightDType(table.dtype) && table.rank == 2 && table.dim(1) == hidden &&
        a.in[0].numel() == num_rows)) {
    return ContractViolation("embedding", "table must be [V, H] and tokens [T] for out [T, H]");
  }
  const int64_t row_limit = num_rows;
  return Check(LaunchEmbedding(I32In(a.in[0]), table.data, table.dtype, table.dim(0),
                               F32Out(a.out[0]), num_rows, hidden, row_limit, a.meta, ctx.stream),
               "embedding");
}

bool NormShapeOk(const TensorArg& x, const TensorArg& w) {
  const int64_t w_size = w.numel();
  return IsWeightDType(w.dtype) && w_size > 0 && RowSize(x) % w_size == 0;
}

Status RunRmsNorm(const KernelArgs& a, const CudaStepContext& ctx) {
  const RmsNormParams& params = Params<RmsNormParams>(a);
  const TensorArg& x = a.in[0];
  const TensorArg& w = a.in[1];
  if (!NormShapeOk(x, w)) return ContractViolation("rms_norm", "weight size must divide the row");
  const int64_t row_limit = NumRows(x);
  return Check(LaunchRmsNorm(F32In(x), nullptr, w.data, w.dtype, w.numel(),
                             static_cast<float>(params.eps), nullptr, F32Out(a.out[0]), NumRows(x),
                             RowSize(x), row_limit, a.meta, ctx.stream),
               "rms_norm");
}

Status RunAddRmsNorm(const KernelArgs& a, const CudaStepContext& ctx) {
  const RmsNormParams& params = Params<RmsNormParams>(a);
  const TensorArg& x = a.in[0];
  const TensorArg& w = a.in[2];
  if (!NormShapeOk(x, w)) {
    return ContractViolation("add_rms_norm", "weight size must divide the row");
  }
  const int64_t row_limit = NumRows(x);
  return Check(LaunchRmsNorm(F32In(x), F32In(a.in[1]), w.data, w.dtype, w.numel(),
                             static_cast<float>(params.eps), F32Out(a.out[0]), F32Out(a.out[1]),
                             NumRows(x), RowSize(x), row_limit, a.meta, ctx.stream),
               "add_rms_norm");
}

Status RunElementwise(const KernelArgs& a, const CudaStepContext& ctx, Elementwise op) {
  return Check(LaunchElementwise(op, F32In(a.in[0]), F32In(a.in[1]), F32Out(a.out[0]),
                                 NumRows(a.out[0]), RowSize(a.out[0]), a.meta, ctx.stream),
               "elementwise");
}
Status RunAdd(const KernelArgs& a, const CudaStepContext& ctx) {
  return RunElementwise(a, ctx, Elementwise::kAdd);
}
Status RunSiluMul(const KernelArgs& a, const CudaStepContext& ctx) {
  return RunElementwise(a, ctx, Elementwise::kSiluMul);
}

Status RunBiasAdd(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg& b = a.in[1];
  const int64_t n = RowSize(a.out[0]);
  if (b.rank != 1 || b.numel() != n || RowSize(a.in[0]) != n) {
    return ContractViolation("bias_add", "bias must be [N] for x and out [R, N]");
  }
  return Check(LaunchBiasAdd(F32In(a.in[0]), b.data, b.dtype, F32Out(a.out[0]), NumRows(a.out[0]),
                             n, /*meta=*/nullptr, ctx.stream),
               "bias_add");
}

Status RunSigmoidGateMul(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg& w = a.in[1];
  const int64_t num_rows = NumRows(a.out[0]), k = RowSize(a.in[0]), n = RowSize(a.out[0]);
  if (w.rank != 2 || w.shape[0] != 1 || w.shape[1] != k || NumRows(a.in[0]) != num_rows ||
      NumRows(a.in[2]) != num_rows || RowSize(a.in[2]) != n) {
    return ContractViolation("sigmoid_gate_mul",
                             "gate weight must be [1, K] for x [R, K], y and out [R, N]");
  }
  return Check(LaunchSigmoidGateMul(F32In(a.in[0]), w.data, w.dtype, F32In(a.in[2]),
                                    F32Out(a.out[0]), num_rows, k, n, ctx.stream),
               "sigmoid_gate_mul");
}

Status RunLinearStep(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg& w = a.in[1];
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t n = RowSize(a.out[0]), k = RowSize(a.in[0]);
  if (!WeightShapeOk(w, n, k, /*mxfp4_ok=*/true)) {
    return ContractViolation("linear", "weight must be [N, K]");
  }
  return RunLinear(ctx, ctx.scratch, ctx.scratch_bytes, F32In(a.in[0]), num_rows, k, w, nullptr, n,
                   F32Out(a.out[0]), num_rows, a.meta);
}
size_t LinearStepScratch(const KernelArgs& a, int parts) {
  return LinearScratch(NumRows(a.out[0]), RowSize(a.out[0]), RowSize(a.in[0]), a.in[1].dtype, false,
                       parts);
}

Status RunLinearSiluMul(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg& wg = a.in[1];
  const TensorArg& wu = a.in[2];
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t n = RowSize(a.out[0]), k = RowSize(a.in[0]);
  if (!WeightShapeOk(wg, n, k, /*mxfp4_ok=*/true) || !WeightShapeOk(wu, n, k, /*mxfp4_ok=*/true)) {
    return ContractViolation("linear_silu_mul", "weights must be [N, K]");
  }
  return RunLinear(ctx, ctx.scratch, ctx.scratch_bytes, F32In(a.in[0]), num_rows, k, wg, &wu, n,
                   F32Out(a.out[0]), num_rows, a.meta);
}
size_t LinearSiluMulScratch(const KernelArgs& a, int parts) {
  return LinearScratch(NumRows(a.out[0]), RowSize(a.out[0]), RowSize(a.in[0]), a.in[1].dtype, true,
                       parts);
}

// mlp = linear(linear_silu_mul(x, gate, up), down), the hidden rows in scratch. With biases
// (in[4..6]: gate [I], up [I], down [H]) the gate and up GEMMs run apart, each plus its bias,
// then silu_mul, the down GEMM and its bias (padding rows stay zero, as in RefMlp).
Status RunMlp(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg &gate = a.in[1], &up = a.in[2], &down = a.in[3];
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t inter = gate.dim(0);
  const bool has_bias = a.num_in == 7;
  bool ok = (a.num_in == 4 || has_bias) && RowSize(a.in[0]) == hidden &&
            WeightShapeOk(gate, inter, hidden) && WeightShapeOk(up, inter, hidden) &&
            WeightShapeOk(down, hidden, inter);
  if (ok && has_bias) {
    ok = a.in[4].rank == 1 && a.in[4].numel() == inter && a.in[5].rank == 1 &&
         a.in[5].numel() == inter && a.in[6].rank == 1 && a.in[6].numel() == hidden;
  }
  if (!ok) {
    return ContractViolation("mlp",
                             "x [T, H], gate/up [I, H], down [H, I], and no biases or all three "
                             "(gate [I], up [I], down [H])");
  }
  const size_t h_bytes = Align256(num_rows * inter * sizeof(float));
  const size_t hidden_bytes = has_bias ? 2 * h_bytes : h_bytes;
  if (ctx.scratch_bytes < hidden_bytes) return Internal("mlp: scratch too small");
  float* h = reinterpret_cast<float*>(ctx.scratch);
  std::byte* rest = ctx.scratch + hidden_bytes;
  const size_t rest_bytes = ctx.scratch_bytes - hidden_bytes;
  float* out = F32Out(a.out[0]);
  if (!has_bias) {
    MG_RETURN_IF_ERROR(RunLinear(ctx, rest, rest_bytes, F32In(a.in[0]), num_rows, hidden, gate, &up,
                                 inter, h, num_rows, a.meta));
    return RunLinear(ctx, rest, rest_bytes, h, num_rows, inter, down, nullptr, hidden, out,
                     num_rows, a.meta);
  }
  float* u = reinterpret_cast<float*>(ctx.scratch + h_bytes);
  const TensorArg &gate_bias = a.in[4], &up_bias = a.in[5], &down_bias = a.in[6];
  MG_RETURN_IF_ERROR(RunLinear(ctx, rest, rest_bytes, F32In(a.in[0]), num_rows, hidden, gate,
                               nullptr, inter, h, num_rows, a.meta));
  MG_RETURN_IF_ERROR(RunLinear(ctx, rest, rest_bytes, F32In(a.in[0]), num_rows, hidden, up, nullptr,
                               inter, u, num_rows, a.meta));
  MG_RETURN_IF_ERROR(Check(
      LaunchBiasAdd(h, gate_bias.data, gate_bias.dtype, h, num_rows, inter, a.meta, ctx.stream),
      "mlp gate bias"));
  MG_RETURN_IF_ERROR(
      Check(LaunchBiasAdd(u, up_bias.data, up_bias.dtype, u, num_rows, inter, a.meta, ctx.stream),
            "mlp up bias"));
  MG_RETURN_IF_ERROR(
      Check(LaunchElementwise(Elementwise::kSiluMul, h, u, h, num_rows, inter, a.meta, ctx.stream),
            "mlp silu_mul"));
  MG_RETURN_IF_ERROR(RunLinear(ctx, rest, rest_bytes, h, num_rows, inter, down, nullptr, hidden,
                               out, num_rows, a.meta));
  return Check(LaunchBiasAdd(out, down_bias.data, down_bias.dtype, out, num_rows, hidden, a.meta,
                             ctx.stream),
               "mlp down bias");
}
size_t MlpScratch(const KernelArgs& a, int parts) {
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t inter = a.in[1].dim(0);
  const bool has_bias = a.num_in == 7;
  const size_t h_bytes = Align256(num_rows * inter * sizeof(float));
  return (has_bias ? 2 * h_bytes : h_bytes) +
         std::max(LinearScratch(num_rows, inter, hidden, a.in[1].dtype, !has_bias, parts),
                  LinearScratch(num_rows, hidden, inter, a.in[3].dtype, false, parts));
}

Status RunRope(const KernelArgs& a, const CudaStepContext& ctx) {
  const RopeParams& params = Params<RopeParams>(a);
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t row_size = RowSize(a.out[0]);
  const int64_t head_dim = params.head_dim;
  const int64_t rotary_dim = params.RotaryDim();
  const bool ok = a.meta != nullptr && head_dim > 0 && head_dim % 2 == 0 &&
                  row_size % head_dim == 0 && RowSize(a.in[0]) == row_size &&
                  NumRows(a.in[0]) == num_rows && rotary_dim >= 2 && rotary_dim % 2 == 0 &&
                  rotary_dim <= head_dim && (params.interleaved == 0 || params.interleaved == 1);
  if (!ok) {
    return ContractViolation("rope",
                             "needs meta, an even head_dim dividing the row, an even rotary_dim "
                             "in [2, head_dim] and interleaved 0 or 1");
  }
  const int64_t row_limit = num_rows;
  const RopeScalingArgs scaling{.scaling = params.scaling,
                                .factor = params.factor,
                                .ramp_low = params.ramp_low,
                                .ramp_high = params.ramp_high,
                                .attention_factor = static_cast<float>(params.attention_factor)};
  return Check(LaunchRope(F32In(a.in[0]), F32Out(a.out[0]), num_rows, row_size, head_dim,
                          rotary_dim, params.interleaved != 0, static_cast<float>(params.theta),
                          scaling, row_limit, a.meta, ctx.stream),
               "rope");
}

Status RunAttention(const KernelArgs& a, const CudaStepContext& ctx) {
  const AttentionParams& params = Params<AttentionParams>(a);
  const int64_t layer = params.layer, num_heads = params.num_heads,
                num_kv_heads = params.num_kv_heads;
  const int64_t head_dim = params.head_dim;
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t q_row = num_heads * head_dim, kv_row = num_kv_heads * head_dim;
  const KvCacheView* kv = a.kv;
  const KvLayerView* kv_layer = kv != nullptr ? kv->layer(layer) : nullptr;
  const bool ok = a.meta != nullptr && kv_layer != nullptr && kv_layer->k != nullptr &&
                  kv_layer->v != nullptr && kv_layer->kind == KvLayerKind::kKeyValue &&
                  IsKvCacheDType(kv_layer->dtype) && num_heads > 0 && num_kv_heads > 0 &&
                  head_dim > 0 && num_heads % num_kv_heads == 0 &&
                  kv_layer->num_kv_heads == num_kv_heads && kv_layer->head_dim == head_dim &&
                  kv_layer->slot_stride == kv_row && kv->block_size > 0 &&
                  RowSize(a.out[0]) == q_row && RowSize(a.in[0]) == q_row &&
                  RowSize(a.in[1]) == kv_row && RowSize(a.in[2]) == kv_row;
  if (!ok) {
    return ContractViolation("attention", "heads and rows must match the op and the KV cache");
  }
  const TensorArg* sinks = a.num_in > 3 ? &a.in[3] : nullptr;
  if (sinks != nullptr && (!IsWeightDType(sinks->dtype) || sinks->numel() != num_heads)) {
    return ContractViolation("attention", "sinks must be f32/bf16/f16 [num_heads]");
  }
  const int64_t row_limit =
      std::min({NumRows(a.in[0]), NumRows(a.in[1]), NumRows(a.in[2]), num_rows});
  KvLayer cache;
  cache.k = kv_layer->k;
  cache.v = kv_layer->v;
  cache.dtype = kv_layer->dtype;
  cache.num_blocks = kv->num_blocks;
  cache.block_size = kv->block_size;
  cache.ring_blocks = kv_layer->ring_blocks;
  cache.num_rings = kv->num_rings;
  // The cache write must land before any token of the step reads it.
  MG_RETURN_IF_ERROR(Check(LaunchKvCacheWrite(F32In(a.in[1]), F32In(a.in[2]), row_limit, kv_row,
                                              cache, row_limit, a.meta, ctx.stream),
                           "KV cache write"));
  return Check(LaunchPagedAttention(F32In(a.in[0]), cache, sinks ? sinks->data : nullptr,
                                    sinks ? sinks->dtype : DType::kF32, F32Out(a.out[0]), num_rows,
                                    static_cast<int>(num_heads), static_cast<int>(num_kv_heads),
                                    static_cast<int>(head_dim), static_cast<float>(params.scale),
                                    params.window, row_limit, a.meta, ctx.stream),
               "paged attention");
}

Status RunMlaAttention(const KernelArgs& a, const CudaStepContext& ctx) {
  const MlaAttentionParams& p = Params<MlaAttentionParams>(a);
  const int64_t num_rows = NumRows(a.out[0]);
  const KvCacheView* kv = a.kv;
  const KvLayerView* kv_layer = kv != nullptr ? kv->layer(p.layer) : nullptr;
  const TensorArg& kv_b = a.in[4];
  const bool ok =
      a.meta != nullptr && kv_layer != nullptr && kv_layer->k != nullptr &&
      kv_layer->kind == KvLayerKind::kLatent && IsKvCacheDType(kv_layer->dtype) &&
      kv_layer->num_kv_heads == 1 && kv_layer->head_dim == p.CacheRow() &&
      kv_layer->slot_stride == p.CacheRow() && kv->block_size > 0 && MatmulWeightDTypeOk(kv_b) &&
      (!kv_b.quant.quantized() || kv_b.scales != nullptr) && kv_b.rank == 2 &&
      kv_b.shape[0] == p.num_heads * (p.qk_nope_head_dim + p.v_head_dim) &&
      kv_b.shape[1] == p.kv_lora_rank && RowSize(a.out[0]) == p.num_heads * p.v_head_dim &&
      RowSize(a.in[0]) == p.num_heads * p.qk_nope_head_dim &&
      RowSize(a.in[1]) == p.num_heads * p.qk_rope_head_dim && RowSize(a.in[2]) == p.kv_lora_rank &&
      RowSize(a.in[3]) == p.qk_rope_head_dim;
  if (!ok) {
    return ContractViolation("mla_attention",
                             "q_nope/q_pe/latent/k_pe/kv_b/out must match the op and the latent "
                             "KV cache layer");
  }
  const int64_t row_limit =
      std::min({NumRows(a.in[0]), NumRows(a.in[1]), NumRows(a.in[2]), NumRows(a.in[3]), num_rows});
  KvLayer cache;
  cache.k = kv_layer->k;
  cache.dtype = kv_layer->dtype;
  cache.num_blocks = kv->num_blocks;
  cache.block_size = kv->block_size;
  MlaShape shape;
  shape.num_heads = static_cast<int>(p.num_heads);
  shape.kv_lora_rank = static_cast<int>(p.kv_lora_rank);
  shape.qk_nope_head_dim = static_cast<int>(p.qk_nope_head_dim);
  shape.qk_rope_head_dim = static_cast<int>(p.qk_rope_head_dim);
  shape.v_head_dim = static_cast<int>(p.v_head_dim);
  shape.scale = static_cast<float>(p.scale);
  MlaWeightScales kv_b_scales;
  if (kv_b.quant.quantized()) {
    kv_b_scales.scales = static_cast<const float*>(kv_b.scales);
    kv_b_scales.block_rows = kv_b.quant.block_rows;
    kv_b_scales.block_cols = kv_b.quant.block_cols;
    kv_b_scales.scale_cols = kv_b.quant.ScaleCols(kv_b.dim(-1));
  }
  return Check(LaunchMlaAttention(F32In(a.in[0]), F32In(a.in[1]), F32In(a.in[2]), F32In(a.in[3]),
                                  kv_b.data, kv_b.dtype, kv_b_scales, cache, F32Out(a.out[0]),
                                  num_rows, shape, row_limit, a.meta, ctx.stream),
               "mla attention");
}

Status RunGatherLast(const KernelArgs& a, const CudaStepContext& ctx) {
  const int64_t hidden = RowSize(a.out[0]);
  if (a.meta == nullptr || RowSize(a.in[0]) != hidden) {
    return ContractViolation("gather_last", "needs meta and x [T, H] for out [B, H]");
  }
  return Check(LaunchGatherLast(F32In(a.in[0]), NumRows(a.in[0]), F32Out(a.out[0]),
                                NumRows(a.out[0]), hidden, a.meta, ctx.stream),
               "gather_last");
}

// The optional score-correction bias a.in[index] (f32 [E]), or null when absent.
StatusOr<const float*> RouteBias(const KernelArgs& a, int index, int64_t num_experts,
                                 const char* kernel) {
  if (a.num_in <= index) return static_cast<const float*>(nullptr);
  if (a.in[index].dtype != DType::kF32 || a.in[index].numel() != num_experts) {
    return ContractViolation(kernel, "bias must be f32 [E]");
  }
  return F32In(a.in[index]);
}

Status RunTopkRoute(const KernelArgs& a, const CudaStepContext& ctx) {
  const TopkRouteParams& params = Params<TopkRouteParams>(a);
  const int64_t top_k = params.top_k;
  const bool ok = top_k > 0 && RowSize(a.out[0]) == top_k && RowSize(a.out[1]) == top_k;
  if (!ok) return ContractViolation("topk_route", "ids and weights must be [T, top_k]");
  const int64_t num_rows = std::min(NumRows(a.out[0]), NumRows(a.out[1]));
  const int64_t num_experts = RowSize(a.in[0]);
  MG_ASSIGN_OR_RETURN(const float* bias, RouteBias(a, 1, num_experts, "topk_route"));
  return Check(LaunchTopkRoute(F32In(a.in[0]), num_experts, MakeRouteRule(params, bias),
                               I32Out(a.out[0]), F32Out(a.out[1]), num_rows, params.row_offset,
                               std::min(num_rows, NumRows(a.in[0])), a.meta, ctx.stream),
               "topk_route");
}

Status RunMoeAlign(const KernelArgs& a, const CudaStepContext& ctx) {
  const NumExpertsParams& params = Params<NumExpertsParams>(a);
  return Check(LaunchMoeAlign(I32In(a.in[0]), a.in[0].numel(), I32Out(a.out[0]), a.out[0].numel(),
                              I32Out(a.out[1]), a.out[1].numel(), params.num_experts, ctx.stream),
               "moe_align");
}

Status RunMoePermute(const KernelArgs& a, const CudaStepContext& ctx) {
  const TopKParams& params = Params<TopKParams>(a);
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t num_tokens = RowSize(a.in[0]) == hidden ? NumRows(a.in[0]) : 0;
  return Check(LaunchMoePermute(F32In(a.in[0]), num_tokens, I32In(a.in[1]), a.in[1].numel(),
                                static_cast<int>(params.top_k), F32Out(a.out[0]), NumRows(a.out[0]),
                                hidden, ctx.stream),
               "moe_permute");
}

// The launch arguments of a step CheckOffsetsGemm accepted.
GroupedGemmArgs OffsetsGemm(const KernelArgs& a, const TensorArg& wg, const TensorArg* wu) {
  GroupedGemmArgs g;
  g.mode = GroupMode::kOffsets;
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t n = RowSize(a.out[0]), k = RowSize(a.in[0]);
  const int64_t num_experts = wg.dim(0);
  g.x = F32In(a.in[0]);
  g.x_rows = NumRows(a.in[0]);
  g.k = k;
  g.w_gate = wg.expert_data;
  g.w_up = wu ? wu->expert_data : nullptr;
  g.w_dtype = wg.dtype;
  g.w_up_dtype = wu ? wu->dtype : wg.dtype;
  SetWeightScales(g, wg, wu);
  g.num_experts = num_experts;
  g.out = F32Out(a.out[0]);
  g.out_rows = num_rows;
  g.n = n;
  g.expert_offsets = I32In(a.in[1]);
  g.valid_rows = num_rows;
  return g;
}

Status CheckOffsetsGemm(const KernelArgs& a, const TensorArg& wg, const TensorArg* wu,
                        const char* kernel) {
  const int64_t n = RowSize(a.out[0]), k = RowSize(a.in[0]);
  const int64_t num_experts = wg.dim(0);
  const bool ok = a.in[1].numel() >= num_experts + 1 &&
                  StackedWeightOk(wg, num_experts, n, k, /*mxfp4_ok=*/true) &&
                  (wu == nullptr || StackedWeightOk(*wu, num_experts, n, k, /*mxfp4_ok=*/true)) &&
                  NumRows(a.in[0]) == NumRows(a.out[0]);
  return ok ? Status::Ok() : ContractViolation(kernel, "offsets [E + 1], weights [E, N, K]");
}

// The optional [E, N] bias a.in[index]: null when absent; false when malformed.
bool ExpertBias(const KernelArgs& a, int index, int64_t e, int64_t n, const void** data,
                DType* dtype) {
  *data = nullptr;
  *dtype = DType::kF32;
  if (a.num_in <= index) return true;
  const TensorArg& b = a.in[index];
  if (!IsWeightDType(b.dtype) || b.data == nullptr || b.numel() != e * n) return false;
  *data = b.data;
  *dtype = b.dtype;
  return true;
}

Status RunGroupedMatmul(const KernelArgs& a, const CudaStepContext& ctx) {
  MG_RETURN_IF_ERROR(CheckOffsetsGemm(a, a.in[2], nullptr, "grouped_matmul"));
  GroupedGemmArgs g = OffsetsGemm(a, a.in[2], nullptr);
  if (!ExpertBias(a, 3, g.num_experts, g.n, &g.bias, &g.bias_dtype)) {
    return ContractViolation("grouped_matmul", "bias must be f32/bf16/f16 [E, N]");
  }
  return Check(LaunchGroupedGemm(g, ctx.stream), "grouped_matmul");
}
Status RunGroupedMatmulSiluMul(const KernelArgs& a, const CudaStepContext& ctx) {
  MG_RETURN_IF_ERROR(CheckOffsetsGemm(a, a.in[2], &a.in[3], "grouped_matmul_silu_mul"));
  return Check(LaunchGroupedGemm(OffsetsGemm(a, a.in[2], &a.in[3]), ctx.stream),
               "grouped_matmul_silu_mul");
}

// The optional [E, N] bias a.in[index]: null when absent; false when malformed.
bool KnBias(const KernelArgs& a, int index, int64_t e, int64_t n, const void** data, DType* dtype) {
  *data = nullptr;
  *dtype = DType::kF32;
  if (a.num_in <= index) return true;
  const TensorArg& b = a.in[index];
  if (!IsWeightDType(b.dtype) || b.data == nullptr || b.numel() != e * n) return false;
  *data = b.data;
  *dtype = b.dtype;
  return true;
}

Status RunGroupedMatmulKn(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg& w = a.in[2];
  KnGemmArgs g;
  g.mode = GroupMode::kOffsets;
  g.n = RowSize(a.out[0]);
  g.k = RowSize(a.in[0]);
  g.num_experts = w.dim(0);
  const bool ok = a.in[1].numel() >= g.num_experts + 1 &&
                  StackedWeightOk(w, g.num_experts, g.k, g.n) &&
                  NumRows(a.in[0]) == NumRows(a.out[0]) &&
                  KnBias(a, 3, g.num_experts, g.n, &g.bias, &g.bias_dtype);
  if (!ok) {
    return ContractViolation("grouped_matmul_kn", "offsets [E + 1], weight [E, K, N], bias [E, N]");
  }
  g.x = F32In(a.in[0]);
  g.x_rows = NumRows(a.in[0]);
  g.w = w.expert_data;
  g.w_dtype = w.dtype;
  g.out = F32Out(a.out[0]);
  g.out_rows = NumRows(a.out[0]);
  g.expert_offsets = I32In(a.in[1]);
  g.valid_rows = g.out_rows;
  return Check(LaunchGroupedGemmKn(g, ctx.stream), "grouped_matmul_kn");
}

Status RunExpertBatchedMatmulKn(const KernelArgs& a, const CudaStepContext& ctx) {
  const TopKParams& params = Params<TopKParams>(a);
  const TensorArg& w = a.in[3];
  KnGemmArgs g;
  g.mode = GroupMode::kSlots;
  g.n = RowSize(a.out[0]);
  g.k = RowSize(a.in[0]);
  g.num_experts = w.dim(0);
  const bool ok = params.top_k > 0 && StackedWeightOk(w, g.num_experts, g.k, g.n) &&
                  a.in[1].numel() == NumRows(a.in[2]) &&
                  KnBias(a, 4, g.num_experts, g.n, &g.bias, &g.bias_dtype);
  if (!ok) {
    return ContractViolation("expert_batched_matmul_kn",
                             "batch layout [S], [S, T], weight [E, K, N], bias [E, N]");
  }
  g.x = F32In(a.in[0]);
  g.x_rows = NumRows(a.in[0]);
  g.w = w.expert_data;
  g.w_dtype = w.dtype;
  g.out = F32Out(a.out[0]);
  g.out_rows = NumRows(a.out[0]);
  g.batch_experts = I32In(a.in[1]);
  g.batch_pairs = I32In(a.in[2]);
  g.num_slots = a.in[1].numel();
  g.pairs_per_slot = RowSize(a.in[2]);
  g.in_div = params.top_k;
  g.out_limit = g.out_rows;
  return Check(LaunchGroupedGemmKn(g, ctx.stream), "expert_batched_matmul_kn");
}

Status RunClampedSwiglu(const KernelArgs& a, const CudaStepContext& ctx) {
  const ClampedSwigluParams& params = Params<ClampedSwigluParams>(a);
  const int64_t num_rows = NumRows(a.out[0]), inter = RowSize(a.out[0]);
  if (RowSize(a.in[0]) != 2 * inter || NumRows(a.in[0]) != num_rows) {
    return ContractViolation("clamped_swiglu", "x [R, 2I] for out [R, I]");
  }
  return Check(LaunchClampedSwiglu(F32In(a.in[0]), F32Out(a.out[0]), num_rows, inter,
                                   static_cast<float>(params.alpha),
                                   static_cast<float>(params.limit), ctx.stream),
               "clamped_swiglu");
}

Status RunMoeUnpermuteReduce(const KernelArgs& a, const CudaStepContext& ctx) {
  const TopKParams& params = Params<TopKParams>(a);
  const int64_t top_k = params.top_k;
  const int64_t hidden = RowSize(a.out[0]);
  if (top_k <= 0 || RowSize(a.in[0]) != hidden) {
    return ContractViolation("moe_unpermute_reduce", "y [P, H] for out [T, H], top_k > 0");
  }
  const int64_t num_pairs = std::min(NumRows(a.in[0]), a.in[1].numel());
  return Check(LaunchMoeUnpermuteReduce(F32In(a.in[0]), I32In(a.in[1]), num_pairs, F32In(a.in[2]),
                                        a.in[2].numel(), static_cast<int>(top_k), F32Out(a.out[0]),
                                        NumRows(a.out[0]), hidden, ctx.stream),
               "moe_unpermute_reduce");
}

Status RunMoeExpertBatch(const KernelArgs& a, const CudaStepContext& ctx) {
  const NumExpertsParams& params = Params<NumExpertsParams>(a);
  return Check(LaunchMoeExpertBatch(I32In(a.in[0]), a.in[0].numel(), I32Out(a.out[0]),
                                    NumRows(a.out[0]), I32Out(a.out[1]), NumRows(a.out[1]),
                                    RowSize(a.out[1]), params.num_experts, ctx.stream),
               "moe_expert_batch");
}

Status RunExpertBatchedGateUpSilu(const KernelArgs& a, const CudaStepContext& ctx) {
  const TopKParams& params = Params<TopKParams>(a);
  const TensorArg &gate = a.in[3], &up = a.in[4];
  const int64_t top_k = params.top_k;
  const int64_t num_pairs = NumRows(a.out[0]);
  const int64_t inter = RowSize(a.out[0]);
  const int64_t hidden = RowSize(a.in[0]);
  const int64_t num_experts = gate.dim(0);
  const bool ok = top_k > 0 && StackedWeightOk(gate, num_experts, inter, hidden, true) &&
                  StackedWeightOk(up, num_experts, inter, hidden, true) &&
                  a.in[1].numel() == NumRows(a.in[2]);
  if (!ok) return ContractViolation("expert_batched_gate_up_silu", "stacked weights [E, I, H]");
  GroupedGemmArgs g;
  g.mode = GroupMode::kSlots;
  g.x = F32In(a.in[0]);
  g.x_rows = NumRows(a.in[0]);
  g.k = hidden;
  g.w_gate = gate.expert_data;
  g.w_up = up.expert_data;
  g.w_dtype = gate.dtype;
  g.w_up_dtype = up.dtype;
  SetWeightScales(g, gate, &up);
  g.num_experts = num_experts;
  g.out = F32Out(a.out[0]);
  g.out_rows = num_pairs;
  g.n = inter;
  g.batch_experts = I32In(a.in[1]);
  g.batch_pairs = I32In(a.in[2]);
  g.num_slots = a.in[1].numel();
  g.pairs_per_slot = RowSize(a.in[2]);
  g.in_div = std::max<int64_t>(top_k, 1);
  g.out_limit = num_pairs;
  return Check(LaunchGroupedGemm(g, ctx.stream), "expert_batched_gate_up_silu");
}

Status RunExpertBatchedDown(const KernelArgs& a, const CudaStepContext& ctx) {
  const TensorArg& down = a.in[3];
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t inter = RowSize(a.in[0]);
  const int64_t num_experts = down.dim(0);
  const bool ok = StackedWeightOk(down, num_experts, hidden, inter, /*mxfp4_ok=*/true) &&
                  a.in[1].numel() == NumRows(a.in[2]);
  if (!ok) return ContractViolation("expert_batched_down", "stacked weight [E, H, I]");
  GroupedGemmArgs g;
  g.mode = GroupMode::kSlots;
  g.x = F32In(a.in[0]);
  g.x_rows = NumRows(a.in[0]);
  g.k = inter;
  g.w_gate = down.expert_data;
  g.w_dtype = down.dtype;
  SetWeightScales(g, down, nullptr);
  g.num_experts = num_experts;
  g.out = F32Out(a.out[0]);
  g.out_rows = NumRows(a.out[0]);
  g.n = hidden;
  g.batch_experts = I32In(a.in[1]);
  g.batch_pairs = I32In(a.in[2]);
  g.num_slots = a.in[1].numel();
  g.pairs_per_slot = RowSize(a.in[2]);
  g.in_div = 1;
  g.out_limit = std::min(NumRows(a.out[0]), NumRows(a.in[0]));
  return Check(LaunchGroupedGemm(g, ctx.stream), "expert_batched_down");
}

// GPT-OSS's out-major experts in decode: the slots' pairs, input row p / top_k, times
// w_e^T plus b_e, by the tiled GEMM (mxfp4 decoded in its tile loads).
Status RunExpertBatchedMatmul(const KernelArgs& a, const CudaStepContext& ctx) {
  const TopKParams& params = Params<TopKParams>(a);
  const TensorArg& w = a.in[3];
  const int64_t top_k = params.top_k;
  const int64_t num_pairs = NumRows(a.out[0]);
  const int64_t n = RowSize(a.out[0]), k = RowSize(a.in[0]);
  const int64_t num_experts = w.dim(0);
  GroupedGemmArgs g;
  const bool ok = top_k > 0 && StackedWeightOk(w, num_experts, n, k, /*mxfp4_ok=*/true) &&
                  a.in[1].numel() == NumRows(a.in[2]) &&
                  ExpertBias(a, 4, num_experts, n, &g.bias, &g.bias_dtype);
  if (!ok) {
    return ContractViolation("expert_batched_matmul",
                             "stacked weight [E, N, K] and optional bias [E, N]");
  }
  g.mode = GroupMode::kSlots;
  g.x = F32In(a.in[0]);
  g.x_rows = NumRows(a.in[0]);
  g.k = k;
  g.w_gate = w.expert_data;
  g.w_dtype = w.dtype;
  SetWeightScales(g, w, nullptr);
  g.num_experts = num_experts;
  g.out = F32Out(a.out[0]);
  g.out_rows = num_pairs;
  g.n = n;
  g.batch_experts = I32In(a.in[1]);
  g.batch_pairs = I32In(a.in[2]);
  g.num_slots = a.in[1].numel();
  g.pairs_per_slot = RowSize(a.in[2]);
  g.in_div = top_k;
  g.out_limit = num_pairs;
  return Check(LaunchGroupedGemm(g, ctx.stream), "expert_batched_matmul");
}

Status RunMoeCombine(const KernelArgs& a, const CudaStepContext& ctx) {
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t num_y_rows = RowSize(a.in[0]) == hidden ? NumRows(a.in[0]) : 0;
  return Check(LaunchMoeCombine(F32In(a.in[0]), num_y_rows, F32In(a.in[1]), RowSize(a.in[1]),
                                F32Out(a.out[0]), num_rows, hidden,
                                std::min(num_rows, NumRows(a.in[1])), a.meta, ctx.stream),
               "moe_combine");
}

// The fused MoE block, run as the prefill pipeline over scratch buffers:
// router linear → top-k → align → permute → grouped gate/up → grouped down →
// unpermute-reduce.
struct MoeLayout {
  size_t logits = 0, ids = 0, weights = 0, sorted = 0, offsets = 0, permuted = 0, hidden = 0,
         expert_out = 0, linear = 0, gate_up = 0, total = 0;
};

bool IsClampedMoe(const MoeParams& params) {
  return params.activation == static_cast<int64_t>(ExpertActivation::kClampedSwiglu);
}

MoeLayout PlanMoe(const KernelArgs& a, int parts) {
  const MoeParams& params = Params<MoeParams>(a);
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t num_experts = a.in[1].dim(0);
  const bool clamped = IsClampedMoe(params);
  const int64_t inter = clamped ? a.in[2].dim(2) / 2 : a.in[2].dim(1);
  const int64_t num_pairs = num_rows * std::max<int64_t>(params.top_k, 0);
  MoeLayout l;
  auto take = [&](size_t bytes) {
    const size_t at = l.total;
    l.total += Align256(bytes);
    return at;
  };
  l.logits = take(num_rows * num_experts * sizeof(float));
  l.ids = take(num_pairs * sizeof(int32_t));
  l.weights = take(num_pairs * sizeof(float));
  l.sorted = take(num_pairs * sizeof(int32_t));
  l.offsets = take((num_experts + 1) * sizeof(int32_t));
  l.permuted = take(num_pairs * hidden * sizeof(float));
  l.hidden = take(num_pairs * inter * sizeof(float));
  l.gate_up = clamped ? take(num_pairs * 2 * inter * sizeof(float)) : 0;
  l.expert_out = take(num_pairs * hidden * sizeof(float));
  l.linear = take(LinearScratch(num_rows, num_experts, hidden, a.in[1].dtype, false, parts));
  return l;
}

size_t MoeScratch(const KernelArgs& a, int parts) {
  return PlanMoe(a, parts).total;
}

// activation 1 (GPT-OSS): router linear (+ bias) → top-k → align → permute → [in, out]
// gate_up (+ bias) → clamped SwiGLU → [in, out] down (+ bias) → unpermute-reduce.
Status RunClampedMoe(const KernelArgs& a, const CudaStepContext& ctx, const MoeParams& params) {
  const TensorArg &router = a.in[1], &gate_up = a.in[2], &down = a.in[3];
  const int64_t top_k = params.top_k;
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t num_experts = router.dim(0);
  const int64_t inter = gate_up.dim(2) / 2;
  const bool has_bias = a.num_in == 7;
  const bool ok = top_k > 0 && top_k <= kRefMaxTopK && num_experts > 0 &&
                  num_experts <= kRefMaxExperts && RowSize(a.in[0]) == hidden &&
                  (a.num_in == 4 || has_bias) && WeightShapeOk(router, num_experts, hidden) &&
                  StackedWeightOk(gate_up, num_experts, hidden, 2 * inter) &&
                  StackedWeightOk(down, num_experts, inter, hidden);
  if (!ok) return ContractViolation("moe", "x [T, H], router [E, H], gate_up [E, H, 2I]");
  KnGemmArgs g;
  const void* router_bias = nullptr;
  DType router_bias_dtype = DType::kF32;
  const void* down_bias = nullptr;
  DType down_bias_dtype = DType::kF32;
  if (has_bias && (!KnBias(a, 4, 1, num_experts, &router_bias, &router_bias_dtype) ||
                   !KnBias(a, 5, num_experts, 2 * inter, &g.bias, &g.bias_dtype) ||
                   !KnBias(a, 6, num_experts, hidden, &down_bias, &down_bias_dtype))) {
    return ContractViolation("moe", "biases [E], [E, 2I], [E, H]");
  }
  const MoeLayout l = PlanMoe(a, ctx.activation_parts);
  if (ctx.scratch_bytes < l.total) return Internal("moe: scratch too small");
  std::byte* s = ctx.scratch;
  float* logits = reinterpret_cast<float*>(s + l.logits);
  int32_t* ids = reinterpret_cast<int32_t*>(s + l.ids);
  float* weights = reinterpret_cast<float*>(s + l.weights);
  int32_t* sorted = reinterpret_cast<int32_t*>(s + l.sorted);
  int32_t* offsets = reinterpret_cast<int32_t*>(s + l.offsets);
  float* permuted = reinterpret_cast<float*>(s + l.permuted);
  float* hidden_rows = reinterpret_cast<float*>(s + l.hidden);
  float* gate_up_rows = reinterpret_cast<float*>(s + l.gate_up);
  float* expert_out = reinterpret_cast<float*>(s + l.expert_out);
  const float* x = F32In(a.in[0]);
  const int64_t x_rows = std::min(num_rows, NumRows(a.in[0]));
  const int64_t num_pairs = num_rows * top_k;
  MG_RETURN_IF_ERROR(RunLinear(ctx, s + l.linear, l.total - l.linear, x, x_rows, hidden, router,
                               nullptr, num_experts, logits, x_rows, nullptr));
  if (router_bias != nullptr) {
    MG_RETURN_IF_ERROR(Check(LaunchBiasAdd(logits, router_bias, router_bias_dtype, logits, x_rows,
                                           num_experts, /*meta=*/nullptr, ctx.stream),
                             "moe router bias"));
  }
  MG_RETURN_IF_ERROR(
      Check(LaunchTopkRoute(logits, num_experts, MakeRouteRule(params, nullptr), ids, weights,
                            num_rows, params.row_offset, x_rows, a.meta, ctx.stream),
            "moe routing"));
  MG_RETURN_IF_ERROR(Check(LaunchMoeAlign(ids, num_pairs, sorted, num_pairs, offsets,
                                          num_experts + 1, num_experts, ctx.stream),
                           "moe align"));
  MG_RETURN_IF_ERROR(Check(LaunchMoePermute(x, x_rows, sorted, num_pairs, static_cast<int>(top_k),
                                            permuted, num_pairs, hidden, ctx.stream),
                           "moe permute"));
  g.mode = GroupMode::kOffsets;
  g.x = permuted;
  g.x_rows = num_pairs;
  g.k = hidden;
  g.w = gate_up.expert_data;
  g.w_dtype = gate_up.dtype;
  g.num_experts = num_experts;
  g.out = gate_up_rows;
  g.out_rows = num_pairs;
  g.n = 2 * inter;
  g.expert_offsets = offsets;
  g.valid_rows = num_pairs;
  MG_RETURN_IF_ERROR(Check(LaunchGroupedGemmKn(g, ctx.stream), "moe gate_up"));
  MG_RETURN_IF_ERROR(Check(LaunchClampedSwiglu(gate_up_rows, hidden_rows, num_pairs, inter,
                                               static_cast<float>(params.swiglu_alpha),
                                               static_cast<float>(params.swiglu_limit), ctx.stream),
                           "moe activation"));
  g.x = hidden_rows;
  g.k = inter;
  g.w = down.expert_data;
  g.w_dtype = down.dtype;
  g.bias = down_bias;
  g.bias_dtype = down_bias_dtype;
  g.out = expert_out;
  g.n = hidden;
  MG_RETURN_IF_ERROR(Check(LaunchGroupedGemmKn(g, ctx.stream), "moe down"));
  return Check(LaunchMoeUnpermuteReduce(expert_out, sorted, num_pairs, weights, num_pairs,
                                        static_cast<int>(top_k), F32Out(a.out[0]), num_rows, hidden,
                                        ctx.stream),
               "moe unpermute");
}

Status RunMoe(const KernelArgs& a, const CudaStepContext& ctx) {
  const MoeParams& params = Params<MoeParams>(a);
  if (IsClampedMoe(params)) return RunClampedMoe(a, ctx, params);
  const TensorArg &router = a.in[1], &gate = a.in[2], &up = a.in[3], &down = a.in[4];
  const int64_t top_k = params.top_k;
  const int64_t num_rows = NumRows(a.out[0]);
  const int64_t hidden = RowSize(a.out[0]);
  const int64_t num_experts = router.dim(0);
  const int64_t inter = gate.dim(1);
  const bool ok = top_k > 0 && top_k <= kRefMaxTopK && num_experts > 0 &&
                  num_experts <= kRefMaxExperts && RowSize(a.in[0]) == hidden &&
                  WeightShapeOk(router, num_experts, hidden) &&
                  StackedWeightOk(gate, num_experts, inter, hidden) &&
                  StackedWeightOk(up, num_experts, inter, hidden) &&
                  StackedWeightOk(down, num_experts, hidden, inter);
  if (!ok) return ContractViolation("moe", "x [T, H], router [E, H], experts [E, ...]");
  MG_ASSIGN_OR_RETURN(const float* bias, RouteBias(a, 5, num_experts, "moe"));
  const MoeLayout l = PlanMoe(a, ctx.activation_parts);
  if (ctx.scratch_bytes < l.total) return Internal("moe: scratch too small");
  std::byte* s = ctx.scratch;
  float* logits = reinterpret_cast<float*>(s + l.logits);
  int32_t* ids = reinterpret_cast<int32_t*>(s + l.ids);
  float* weights = reinterpret_cast<float*>(s + l.weights);
  int32_t* sorted = reinterpret_cast<int32_t*>(s + l.sorted);
  int32_t* offsets = reinterpret_cast<int32_t*>(s + l.offsets);
  float* permuted = reinterpret_cast<float*>(s + l.permuted);
  float* hidden_rows = reinterpret_cast<float*>(s + l.hidden);
  float* expert_out = reinterpret_cast<float*>(s + l.expert_out);
  const float* x = F32In(a.in[0]);
  const int64_t x_rows = std::min(num_rows, NumRows(a.in[0]));
  const int64_t num_pairs = num_rows * top_k;

  // Logits of rows past x_rows are never read: top-k masks them.
  MG_RETURN_IF_ERROR(RunLinear(ctx, s + l.linear, l.total - l.linear, x, x_rows, hidden, router,
                               nullptr, num_experts, logits, x_rows, nullptr));
  MG_RETURN_IF_ERROR(
      Check(LaunchTopkRoute(logits, num_experts, MakeRouteRule(params, bias), ids, weights,
                            num_rows, params.row_offset, x_rows, a.meta, ctx.stream),
            "moe routing"));
  MG_RETURN_IF_ERROR(Check(LaunchMoeAlign(ids, num_pairs, sorted, num_pairs, offsets,
                                          num_experts + 1, num_experts, ctx.stream),
                           "moe align"));
  MG_RETURN_IF_ERROR(Check(LaunchMoePermute(x, x_rows, sorted, num_pairs, static_cast<int>(top_k),
                                            permuted, num_pairs, hidden, ctx.stream),
                           "moe permute"));
  GroupedGemmArgs g;
  g.mode = GroupMode::kOffsets;
  g.x = permuted;
  g.x_rows = num_pairs;
  g.k = hidden;
  g.w_gate = gate.expert_data;
  g.w_up = up.expert_data;
  g.w_dtype = gate.dtype;
  g.w_up_dtype = up.dtype;
  SetWeightScales(g, gate, &up);
  g.num_experts = num_experts;
  g.out = hidden_rows;
  g.out_rows = num_pairs;
  g.n = inter;
  g.expert_offsets = offsets;
  g.valid_rows = num_pairs;
  MG_RETURN_IF_ERROR(Check(LaunchGroupedGemm(g, ctx.stream), "moe gate/up"));
  g.x = hidden_rows;
  g.k = inter;
  g.w_gate = down.expert_data;
  g.w_up = nullptr;
  g.w_dtype = down.dtype;
  SetWeightScales(g, down, nullptr);
  g.out = expert_out;
  g.n = hidden;
  MG_RETURN_IF_ERROR(Check(LaunchGroupedGemm(g, ctx.stream), "moe down"));
  return Check(LaunchMoeUnpermuteReduce(expert_out, sorted, num_pairs, weights, num_pairs,
                                        static_cast<int>(top_k), F32Out(a.out[0]), num_rows, hidden,
                                        ctx.stream),
               "moe unpermute");
}

// ---- Layout: device-to-device copies ---------------------------------------------

Status Copy(void* dst, const void* src, int64_t bytes, cudaStream_t stream) {
  if (bytes <= 0) return Status::Ok();
  return Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "copy");
}
Status Fill0(void* dst, int64_t bytes, cudaStream_t stream) {
  if (bytes <= 0) return Status::Ok();
  return Check(cudaMemsetAsync(dst, 0, bytes, stream), "zero fill");
}

Status RunSliceRows(const KernelArgs& a, const CudaStepContext& ctx) {
  const SliceRowsParams& params = Params<SliceRowsParams>(a);
  const TensorArg &x = a.in[0], &out = a.out[0];
  const int64_t begin = params.begin;
  const int64_t num_rows = NumRows(out);
  const int64_t num_x_rows = RowBytes(x) == RowBytes(out) ? NumRows(x) : 0;
  const int64_t row_bytes = RowBytes(out);
  // Output rows [first, last) have a source row; the rest are zeros.
  const int64_t first = std::clamp<int64_t>(-begin, 0, num_rows);
  const int64_t last = std::clamp<int64_t>(num_x_rows - begin, first, num_rows);
  auto* dst = static_cast<unsigned char*>(out.data);
  const auto* src = static_cast<const unsigned char*>(x.data);
  MG_RETURN_IF_ERROR(Fill0(dst, first * row_bytes, ctx.stream));
  if (last > first) {
    MG_RETURN_IF_ERROR(Copy(dst + first * row_bytes, src + (begin + first) * row_bytes,
                            (last - first) * row_bytes, ctx.stream));
  }
  return Fill0(dst + last * row_bytes, (num_rows - last) * row_bytes, ctx.stream);
}

Status RunConcatRows(const KernelArgs& a, const CudaStepContext& ctx) {
  const int64_t out_bytes = NumBytes(a.out[0]);
  auto* dst = static_cast<unsigned char*>(a.out[0].data);
  int64_t written = 0;
  for (int i = 0; i < a.num_in; ++i) {
    const int64_t bytes = std::max<int64_t>(std::min(NumBytes(a.in[i]), out_bytes - written), 0);
    MG_RETURN_IF_ERROR(Copy(dst + written, a.in[i].data, bytes, ctx.stream));
    written += bytes;
  }
  return Fill0(dst + written, out_bytes - written, ctx.stream);
}

// Each row's column groups split with two strided copies (group pitch in, first / rest out).
Status RunSplitCols(const KernelArgs& a, const CudaStepContext& ctx) {
  const SplitColsParams& p = Params<SplitColsParams>(a);
  const int64_t group = p.group, first = p.first, rest = group - first;
  const int64_t cols = RowSize(a.in[0]);
  const int64_t groups = group > 0 ? cols / group : 0;
  const int64_t num_rows = NumRows(a.in[0]);
  if (group <= 0 || first <= 0 || rest <= 0 || cols != groups * group ||
      NumRows(a.out[0]) != num_rows || NumRows(a.out[1]) != num_rows ||
      RowSize(a.out[0]) != groups * first || RowSize(a.out[1]) != groups * rest) {
    return ContractViolation("split_cols",
                             "x [R, groups * group] for outs [R, groups * first] "
                             "and [R, groups * (group - first)]");
  }
  const int64_t height = num_rows * groups;
  if (height == 0) return Status::Ok();
  const auto* src = static_cast<const unsigned char*>(a.in[0].data);
  constexpr size_t kF = sizeof(float);
  MG_RETURN_IF_ERROR(Check(cudaMemcpy2DAsync(a.out[0].data, first * kF, src, group * kF, first * kF,
                                             height, cudaMemcpyDeviceToDevice, ctx.stream),
                           "split_cols copy"));
  return Check(cudaMemcpy2DAsync(a.out[1].data, rest * kF, src + first * kF, group * kF, rest * kF,
                                 height, cudaMemcpyDeviceToDevice, ctx.stream),
               "split_cols copy");
}

// Single rank: a copy (world_size 1) or zeros, as RefAllGather. Multi-rank
// all-gather goes through kernels/communicator.h, not this table.
Status RunAllGather(const KernelArgs& a, const CudaStepContext& ctx) {
  const AllGatherParams& params = Params<AllGatherParams>(a);
  const int64_t out_bytes = NumBytes(a.out[0]);
  const int64_t copied = params.world_size == 1 ? std::min(NumBytes(a.in[0]), out_bytes) : 0;
  MG_RETURN_IF_ERROR(Copy(a.out[0].data, a.in[0].data, copied, ctx.stream));
  return Fill0(static_cast<unsigned char*>(a.out[0].data) + copied, out_bytes - copied, ctx.stream);
}

struct Entry {
  const char* name;
  CudaKernel kernel;
};

constexpr Entry kTable[] = {
    {"zeros", {RunZeros, nullptr}},
    {"embedding", {RunEmbedding, nullptr}},
    {"rms_norm", {RunRmsNorm, nullptr}},
    {"add_rms_norm", {RunAddRmsNorm, nullptr}},
    {"add", {RunAdd, nullptr}},
    {"bias_add", {RunBiasAdd, nullptr}},
    {"sigmoid_gate_mul", {RunSigmoidGateMul, nullptr}},
    {"linear", {RunLinearStep, LinearStepScratch}},
    {"silu_mul", {RunSiluMul, nullptr}},
    {"linear_silu_mul", {RunLinearSiluMul, LinearSiluMulScratch}},
    {"rope", {RunRope, nullptr}},
    {"attention", {RunAttention, nullptr}},
    {"mla_attention", {RunMlaAttention, nullptr}},
    {"gather_last", {RunGatherLast, nullptr}},
    {"mlp", {RunMlp, MlpScratch}},
    {"moe", {RunMoe, MoeScratch}},
    {"topk_route", {RunTopkRoute, nullptr}},
    {"moe_align", {RunMoeAlign, nullptr}},
    {"moe_permute", {RunMoePermute, nullptr}},
    {"grouped_matmul", {RunGroupedMatmul, nullptr}},
    {"grouped_matmul_silu_mul", {RunGroupedMatmulSiluMul, nullptr}},
    {"moe_unpermute_reduce", {RunMoeUnpermuteReduce, nullptr}},
    {"moe_expert_batch", {RunMoeExpertBatch, nullptr}},
    {"expert_batched_gate_up_silu", {RunExpertBatchedGateUpSilu, nullptr}},
    {"expert_batched_down", {RunExpertBatchedDown, nullptr}},
    {"moe_combine", {RunMoeCombine, nullptr}},
    {"grouped_matmul_kn", {RunGroupedMatmulKn, nullptr}},
    {"expert_batched_matmul_kn", {RunExpertBatchedMatmulKn, nullptr}},
    {"expert_batched_matmul", {RunExpertBatchedMatmul, nullptr}},
    {"clamped_swiglu", {RunClampedSwiglu, nullptr}},
    {"slice_rows", {RunSliceRows, nullptr}},
    {"concat_rows", {RunConcatRows, nullptr}},
    {"split_cols", {RunSplitCols, nullptr}},
    {"all_gather", {RunAllGather, nullptr}},
};

}  // namespace

CudaKernel LookupCudaKernel(std::string_view op, std::string* why_not) {
  for (const Entry& e : kTable) {
    if (op == e.name) return e.kernel;
  }
  if (why_not) *why_not = "the CUDA backend has no kernel for op '" + std::string(op) + "'";
  return {};
}

std::string CudaUnsupportedReason(const KernelStep& step) {
  const OpDef* def = LookupOp(step.kernel);
  if (def == nullptr) return "unknown op '" + step.kernel + "'";
  if (def->Has(kHostSync)) {
    return "op '" + step.kernel +
           "' has the HostSync trait: it waits for the host, which a captured CUDA graph cannot";
  }
  std::string why;
  if (LookupCudaKernel(step.kernel, &why).run == nullptr) return why;
  const size_t num_ints = def->params ? def->params->num_ints : 0;
  const size_t num_floats = def->params ? def->params->num_floats : 0;
  if (step.ints.size() != num_ints || step.floats.size() != num_floats) {
    return "step '" + step.kernel + "' has " + std::to_string(step.ints.size()) + " ints and " +
           std::to_string(step.floats.size()) + " floats, expected " + std::to_string(num_ints) +
           " and " + std::to_string(num_floats);
  }
  return "";
}

}  // namespace moegraph::cuda
