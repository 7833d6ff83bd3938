// Op definitions: each op's summary, IR example, shape rule, traits and
// reference semantics, in one place. Shapes use T rows (tokens), B sequences,
// H hidden, E experts, k top_k, P = T*k (token, expert) pairs.
#include <algorithm>
#include <cmath>
#include <memory>

#include "ir/op_registry.h"
#include "ir/quant.h"
#include "ir/rope_freq.h"

namespace moegraph {
namespace {

// ---- shape-rule helpers ---------------------------------------------------

Status ShapeError(const InferContext& ctx, const std::string& what) {
  return InvalidArgument("'" + ctx.op.name() + "': " + what);
}

std::string Describe(const Type& t) {
  return t.ToString();
}

Status RequireTensor(const InferContext& ctx, int i, int rank, const char* role) {
  const Type& t = *ctx.operands[i];
  if (!t.is_tensor()) return ShapeError(ctx, std::string(role) + " must be a tensor");
  if (rank >= 0 && t.rank() != rank) {
    return ShapeError(ctx, std::string(role) + " must have rank " + std::to_string(rank) +
                               ", got " + Describe(t));
  }
  return Status::Ok();
}

Status RequireDType(const InferContext& ctx, int i, DType dtype, const char* role) {
  if (ctx.operands[i]->dtype != dtype) {
    return ShapeError(ctx, std::string(role) + " must be " + DTypeName(dtype) + ", got " +
                               Describe(*ctx.operands[i]));
  }
  return Status::Ok();
}

Status RequireFloat(const InferContext& ctx, int i, const char* role) {
  if (!IsFloat(ctx.operands[i]->dtype) || IsQuantStorage(ctx.operands[i]->dtype)) {
    return ShapeError(
        ctx, std::string(role) + " must be f32, f16 or bf16, got " + Describe(*ctx.operands[i]));
  }
  return Status::Ok();
}

// A matmul's weight: f32/f16/bf16, or a quantized storage format (its weight op carries the
// scales; see ir/quant.h).
Status RequireMatmulWeight(const InferContext& ctx, int i, const char* role) {
  if (IsQuantStorage(ctx.operands[i]->dtype)) return Status::Ok();
  if (!IsFloat(ctx.operands[i]->dtype)) {
    return ShapeError(ctx, std::string(role) + " must be f32, f16, bf16, fp8e4m3 or mxfp4, got " +
                               Describe(*ctx.operands[i]));
  }
  return Status::Ok();
}

Status RequireSameDim(const InferContext& ctx, const Dim& a, const Dim& b,
                      const std::string& what) {
  if (!(a == b)) {
    return ShapeError(ctx, what + " mismatch: " + a.ToString() + " vs " + b.ToString());
  }
  return Status::Ok();
}

Status RequireStatic(const InferContext& ctx, const Dim& d, const char* role) {
  if (!d.is_static()) {
    return ShapeError(
        ctx, std::string(role) + " must be static (run specialize first), got " + d.ToString());
  }
  return Status::Ok();
}

Status RequirePositiveFloat(const InferContext& ctx, const char* attr) {
  const double v = ctx.op.FloatAttr(attr, -1.0);
  if (!(v > 0.0)) {
    return ShapeError(
        ctx, std::string("attribute '") + attr + "' must be > 0, got " + std::to_string(v));
  }
  return Status::Ok();
}

const Type& In(const InferContext& ctx, int i) {
  return *ctx.operands[i];
}
Type F32(std::vector<Dim> dims) {
  return Type::Tensor(DType::kF32, std::move(dims));
}
Type I32(std::vector<Dim> dims) {
  return Type::Tensor(DType::kI32, std::move(dims));
}
Dim S(int64_t v) {
  return Dim::Static(v);
}

// ---- shape rules -----------------------------------------------------------

StatusOr<std::vector<Type>> InferWeight(const InferContext& ctx) {
  if (ctx.declared_results.size() != 1) return ShapeError(ctx, "a weight needs a declared type");
  const Type& t = *ctx.declared_results[0];
  if (!t.is_tensor() || !t.is_static() || t.rank() == 0) {
    return ShapeError(ctx, "a weight's type must be a static tensor, got " + Describe(t));
  }
  if (ctx.op.HasAttr("experts")) {
    if (t.rank() < 3 || t.dims[0].size != ctx.op.IntAttr("experts")) {
      return ShapeError(ctx, "a stacked weight must be [experts, N, K], got " + Describe(t));
    }
  }
  StatusOr<WeightQuant> quant = WeightQuantOf(ctx.op);
  if (!quant.ok()) return ShapeError(ctx, quant.status().message());
  if (quant->quantized()) {
    if (t.dtype != QuantWeightDType(quant->scheme) || t.rank() < 2) {
      return ShapeError(ctx, std::string("a ") + QuantSchemeName(quant->scheme) + " weight is " +
                                 DTypeName(QuantWeightDType(quant->scheme)) + " [..., N, K], got " +
                                 Describe(t));
    }
    if (IsNibbleStorage(t.dtype) && t.dims.back().size % 32 != 0) {
      return ShapeError(ctx, std::string("an ") + QuantSchemeName(quant->scheme) +
                                 " weight's K (last dim) must be a multiple of 32, got " +
                                 Describe(t));
    }
  } else if (IsQuantStorage(t.dtype)) {
    return ShapeError(ctx, std::string("an ") + DTypeName(t.dtype) +
                               " weight needs its scales: quant, scale, block_rows and "
                               "block_cols");
  }
  return std::vector<Type>{t};
}

StatusOr<std::vector<Type>> InferZeros(const InferContext& ctx) {
  if (ctx.declared_results.size() != 1 || !ctx.declared_results[0]->is_tensor() ||
      !ctx.declared_results[0]->is_static()) {
    return ShapeError(ctx, "zeros needs one declared static tensor type");
  }
  return std::vector<Type>{*ctx.declared_results[0]};
}

StatusOr<std::vector<Type>> InferEmbedding(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 1, "tokens"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kI32, "tokens"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 2, "table"));
  MG_RETURN_IF_ERROR(RequireFloat(ctx, 1, "table"));
  return std::vector<Type>{F32({In(ctx, 0).dims[0], In(ctx, 1).dims[1]})};
}

Status CheckNormWeight(const InferContext& ctx, int x, int w) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, x, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, x, DType::kF32, "x"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, w, 1, "weight"));
  MG_RETURN_IF_ERROR(RequireFloat(ctx, w, "weight"));
  MG_RETURN_IF_ERROR(RequirePositiveFloat(ctx, "eps"));
  const Dim& cols = In(ctx, x).dims[1];
  const Dim& group = In(ctx, w).dims[0];
  if (!cols.is_static() || !group.is_static() || group.size <= 0 || cols.size % group.size != 0) {
    return ShapeError(ctx, "x's last dim (" + cols.ToString() +
                               ") must be a multiple of the weight size (" + group.ToString() +
                               ")");
  }
  return Status::Ok();
}

StatusOr<std::vector<Type>> InferRmsNorm(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(CheckNormWeight(ctx, 0, 1));
  return std::vector<Type>{In(ctx, 0)};
}

StatusOr<std::vector<Type>> InferAddRmsNorm(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(CheckNormWeight(ctx, 0, 2));
  if (!(In(ctx, 0) == In(ctx, 1))) {
    return ShapeError(
        ctx, "x and residual differ: " + Describe(In(ctx, 0)) + " vs " + Describe(In(ctx, 1)));
  }
  return std::vector<Type>{In(ctx, 0), In(ctx, 0)};
}

StatusOr<std::vector<Type>> InferElementwise(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, -1, "lhs"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "lhs"));
  if (!(In(ctx, 0) == In(ctx, 1))) {
    return ShapeError(ctx,
                      "operands differ: " + Describe(In(ctx, 0)) + " vs " + Describe(In(ctx, 1)));
  }
  return std::vector<Type>{In(ctx, 0)};
}

// x [R, N] f32 plus a weight b [N]: the bias broadcast over every row.
StatusOr<std::vector<Type>> InferBiasAdd(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 1, "bias"));
  MG_RETURN_IF_ERROR(RequireFloat(ctx, 1, "bias"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[1], In(ctx, 1).dims[0], "N"));
  return std::vector<Type>{In(ctx, 0)};
}

// x [R, K] f32, a gate weight w [1, K] and y [R, N] f32: y scaled per row by sigmoid(x . w).
StatusOr<std::vector<Type>> InferSigmoidGateMul(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 2, "gate weight"));
  MG_RETURN_IF_ERROR(RequireFloat(ctx, 1, "gate weight"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 1).dims[0], S(1), "gate weight rows"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[1], In(ctx, 1).dims[1], "K"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 2, 2, "y"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 2, DType::kF32, "y"));
  MG_RETURN_IF_ERROR(
      RequireSameDim(ctx, In(ctx, 0).dims[0], In(ctx, 2).dims[0], "rows of x and y"));
  return std::vector<Type>{In(ctx, 2)};
}

// x [R,K] against `num_weights` weights [N,K] at operands 1..num_weights.
StatusOr<std::vector<Type>> InferLinearLike(const InferContext& ctx, int num_weights) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  for (int i = 1; i <= num_weights; ++i) {
    MG_RETURN_IF_ERROR(RequireTensor(ctx, i, 2, "weight"));
    MG_RETURN_IF_ERROR(RequireMatmulWeight(ctx, i, "weight"));
    MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[1], In(ctx, i).dims[1], "K"));
    MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 1).dims[0], In(ctx, i).dims[0], "N"));
  }
  return std::vector<Type>{F32({In(ctx, 0).dims[0], In(ctx, 1).dims[0]})};
}
StatusOr<std::vector<Type>> InferLinear(const InferContext& ctx) {
  return InferLinearLike(ctx, 1);
}
StatusOr<std::vector<Type>> InferLinearSiluMul(const InferContext& ctx) {
  return InferLinearLike(ctx, 2);
}

StatusOr<std::vector<Type>> InferRope(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  MG_RETURN_IF_ERROR(RequirePositiveFloat(ctx, "theta"));
  const int64_t head_dim = ctx.op.IntAttr("head_dim");
  const Dim& cols = In(ctx, 0).dims[1];
  if (head_dim % 2 != 0 || !cols.is_static() || cols.size % head_dim != 0) {
    return ShapeError(ctx, "columns (" + cols.ToString() +
                               ") must be a multiple of an even head_dim (" +
                               std::to_string(head_dim) + ")");
  }
  // 0 (or absent) rotates the whole head.
  const int64_t rotary_dim = ctx.op.IntAttr("rotary_dim", 0);
  if (rotary_dim != 0 && (rotary_dim % 2 != 0 || rotary_dim < 2 || rotary_dim > head_dim)) {
    return ShapeError(ctx, "rotary_dim (" + std::to_string(rotary_dim) +
                               ") must be even and in [2, head_dim = " + std::to_string(head_dim) +
                               "] (or 0 for the whole head)");
  }
  // Scaled RoPE (ir/rope_freq.h): a positive factor and attention factor, and a ramp.
  const int64_t scaling = ctx.op.IntAttr("scaling", kRopeUnscaled);
  const double factor = ctx.op.FloatAttr("factor", 1.0);
  const double attention_factor = ctx.op.FloatAttr("attention_factor", 1.0);
  if (!(factor > 0 && std::isfinite(factor)) ||
      !(attention_factor > 0 && std::isfinite(attention_factor))) {
    return ShapeError(ctx, "factor (" + std::to_string(factor) + ") and attention_factor (" +
                               std::to_string(attention_factor) + ") must be positive and finite");
  }
  if (scaling == kRopeYarn || scaling == kRopeLlama3) {
    const double low = ctx.op.FloatAttr("ramp_low", 0.0), high = ctx.op.FloatAttr("ramp_high", 0.0);
    if (!(high > low) || !std::isfinite(low) || !std::isfinite(high)) {
      return ShapeError(ctx, "a yarn or llama3 rope needs finite ramp_low < ramp_high, got [" +
                                 std::to_string(low) + ", " + std::to_string(high) + "]");
    }
  }
  return std::vector<Type>{In(ctx, 0)};
}

StatusOr<std::vector<Type>> InferAttention(const InferContext& ctx) {
  for (int i = 0; i < 3; ++i) {
    MG_RETURN_IF_ERROR(RequireTensor(ctx, i, 2, i == 0 ? "q" : i == 1 ? "k" : "v"));
    MG_RETURN_IF_ERROR(RequireDType(ctx, i, DType::kF32, "q/k/v"));
    MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[0], In(ctx, i).dims[0], "rows"));
  }
  MG_RETURN_IF_ERROR(RequirePositiveFloat(ctx, "scale"));
  const int64_t heads = ctx.op.IntAttr("num_heads"), kv_heads = ctx.op.IntAttr("num_kv_heads");
  const int64_t head_dim = ctx.op.IntAttr("head_dim");
  if (heads % kv_heads != 0) {
    return ShapeError(ctx, "num_heads (" + std::to_string(heads) +
                               ") must be a multiple of num_kv_heads (" + std::to_string(kv_heads) +
                               ")");
  }
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[1], S(heads * head_dim), "q columns"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 1).dims[1], S(kv_heads * head_dim), "k columns"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 2).dims[1], S(kv_heads * head_dim), "v columns"));
  // The optional sinks: one logit per query head that joins the softmax's denominator only.
  if (ctx.operands.size() > 3) {
    MG_RETURN_IF_ERROR(RequireTensor(ctx, 3, 1, "sinks"));
    MG_RETURN_IF_ERROR(RequireFloat(ctx, 3, "sinks"));
    MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 3).dims[0], S(heads), "sinks [num_heads]"));
  }
  return std::vector<Type>{In(ctx, 0)};
}

// q_nope [T, heads * nope], q_pe [T, heads * rope], latent [T, rank], k_pe [T, rope],
// kv_b [heads * (nope + v), rank] (f32/bf16/f16, or block-scaled fp8e4m3 whose weight op
// names its scales) -> [T, heads * v].
StatusOr<std::vector<Type>> InferMlaAttention(const InferContext& ctx) {
  const char* roles[] = {"q_nope", "q_pe", "latent", "k_pe"};
  for (int i = 0; i < 4; ++i) {
    MG_RETURN_IF_ERROR(RequireTensor(ctx, i, 2, roles[i]));
    MG_RETURN_IF_ERROR(RequireDType(ctx, i, DType::kF32, roles[i]));
    MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[0], In(ctx, i).dims[0], "rows"));
  }
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 4, 2, "kv_b"));
  MG_RETURN_IF_ERROR(RequireMatmulWeight(ctx, 4, "kv_b"));
  MG_RETURN_IF_ERROR(RequirePositiveFloat(ctx, "scale"));
  const int64_t heads = ctx.op.IntAttr("num_heads"), rank = ctx.op.IntAttr("kv_lora_rank");
  const int64_t nope = ctx.op.IntAttr("qk_nope_head_dim"),
                rope = ctx.op.IntAttr("qk_rope_head_dim");
  const int64_t v = ctx.op.IntAttr("v_head_dim");
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[1], S(heads * nope), "q_nope columns"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 1).dims[1], S(heads * rope), "q_pe columns"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 2).dims[1], S(rank), "latent columns"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 3).dims[1], S(rope), "k_pe columns"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 4).dims[0], S(heads * (nope + v)), "kv_b rows"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 4).dims[1], S(rank), "kv_b columns"));
  return std::vector<Type>{F32({In(ctx, 0).dims[0], S(heads * v)})};
}

// x [R, C] with C a multiple of group -> [R, C / group * first], [R, C / group * (group - first)].
StatusOr<std::vector<Type>> InferSplitCols(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  const int64_t group = ctx.op.IntAttr("group"), first = ctx.op.IntAttr("first");
  const Dim& cols = In(ctx, 0).dims[1];
  if (!cols.is_static() || cols.size % group != 0 || first >= group) {
    return ShapeError(ctx, "columns (" + cols.ToString() + ") must be a multiple of group (" +
                               std::to_string(group) + ") and first (" + std::to_string(first) +
                               ") less than group");
  }
  const int64_t groups = cols.size / group;
  return std::vector<Type>{F32({In(ctx, 0).dims[0], S(groups * first)}),
                           F32({In(ctx, 0).dims[0], S(groups * (group - first))})};
}

StatusOr<std::vector<Type>> InferGatherLast(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  // The sequence count is the bucket's B: symbolic until specialize binds it.
  Dim seqs = Dim::Symbol("B");
  if (!ctx.declared_results.empty() && ctx.declared_results[0]->rank() == 2) {
    seqs = ctx.declared_results[0]->dims[0];
  }
  return std::vector<Type>{F32({seqs, In(ctx, 0).dims[1]})};
}

// x, gate [I,H], up [I,H], down [H,I], then optionally the three biases gate [I], up [I],
// down [H]: all three or none.
StatusOr<std::vector<Type>> InferMlp(const InferContext& ctx) {
  if (ctx.operands.size() != 4 && ctx.operands.size() != 7) {
    return ShapeError(ctx,
                      "takes x, gate, up, down and either no biases or all three (gate, up, "
                      "down), got " +
                          std::to_string(ctx.operands.size() - 4) + " biases");
  }
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  for (int i = 1; i <= 3; ++i) {
    MG_RETURN_IF_ERROR(RequireTensor(ctx, i, 2, "weight"));
    MG_RETURN_IF_ERROR(RequireMatmulWeight(ctx, i, "weight"));
  }
  const Dim& hidden = In(ctx, 0).dims[1];
  const Dim& inter = In(ctx, 1).dims[0];
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 1).dims[1], hidden, "gate [I,H]"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 2).dims[0], inter, "up [I,H]"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 2).dims[1], hidden, "up [I,H]"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 3).dims[0], hidden, "down [H,I]"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 3).dims[1], inter, "down [H,I]"));
  if (ctx.operands.size() == 7) {
    const char* roles[] = {"gate bias [I]", "up bias [I]", "down bias [H]"};
    for (int i = 0; i < 3; ++i) {
      MG_RETURN_IF_ERROR(RequireTensor(ctx, 4 + i, 1, roles[i]));
      MG_RETURN_IF_ERROR(RequireFloat(ctx, 4 + i, roles[i]));
      MG_RETURN_IF_ERROR(
          RequireSameDim(ctx, In(ctx, 4 + i).dims[0], i < 2 ? inter : hidden, roles[i]));
    }
  }
  return std::vector<Type>{In(ctx, 0)};
}

// Checks stacked expert weights [E, N, K] at operands first..first+count.
Status CheckStacked(const InferContext& ctx, int index, const Dim& experts, const Dim& n,
                    const Dim& k, const char* role) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, index, 3, role));
  MG_RETURN_IF_ERROR(RequireMatmulWeight(ctx, index, role));
  const Type& t = In(ctx, index);
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, t.dims[0], experts, std::string(role) + " experts"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, t.dims[1], n, std::string(role) + " rows"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, t.dims[2], k, std::string(role) + " columns"));
  return Status::Ok();
}

// The routing attributes against the expert count, and the optional
// score-correction bias (data operand `bias_index`, when the op has it).
Status CheckRoute(const InferContext& ctx, int64_t num_experts, int bias_index) {
  MG_ASSIGN_OR_RETURN(const TopkRouteParams p,
                      ParamsFromAttrs<TopkRouteParams>(ctx.op.attrs, ctx.op.name()));
  if (p.top_k > num_experts) {
    return ShapeError(ctx, "top_k (" + std::to_string(p.top_k) + ") exceeds the expert count (" +
                               std::to_string(num_experts) + ")");
  }
  if (num_experts % p.num_groups != 0) {
    return ShapeError(ctx, "num_groups (" + std::to_string(p.num_groups) +
                               ") must divide the expert count (" + std::to_string(num_experts) +
                               ")");
  }
  const int64_t group_size = num_experts / p.num_groups;
  if (p.num_groups > 1 && group_size < 2) {
    return ShapeError(ctx, "num_groups (" + std::to_string(p.num_groups) + ") leaves groups of " +
                               std::to_string(group_size) +
                               " expert; a group is scored by its top two, so it needs >= 2");
  }
  if (p.top_k_groups > p.num_groups) {
    return ShapeError(ctx, "top_k_groups (" + std::to_string(p.top_k_groups) +
                               ") exceeds num_groups (" + std::to_string(p.num_groups) + ")");
  }
  if (p.top_k > p.KeptGroups() * group_size) {
    return ShapeError(ctx, "top_k (" + std::to_string(p.top_k) + ") exceeds the " +
                               std::to_string(p.KeptGroups() * group_size) +
                               " experts of the kept groups (top_k_groups " +
                               std::to_string(p.KeptGroups()) + " x " + std::to_string(group_size) +
                               " experts)");
  }
  if (!(p.routed_scaling_factor > 0.0) || !std::isfinite(p.routed_scaling_factor)) {
    return ShapeError(ctx, "attribute 'routed_scaling_factor' must be finite and > 0, got " +
                               std::to_string(p.routed_scaling_factor));
  }
  if (!(p.norm_min >= 0.0) || !std::isfinite(p.norm_min)) {
    return ShapeError(
        ctx, "attribute 'norm_min' must be finite and >= 0, got " + std::to_string(p.norm_min));
  }
  if (p.norm_min > 0.0 && p.norm_topk_prob == 0) {
    return ShapeError(ctx, "attribute 'norm_min' only applies with norm_topk_prob = 1");
  }
  if (bias_index < static_cast<int>(ctx.operands.size())) {
    MG_RETURN_IF_ERROR(RequireTensor(ctx, bias_index, 1, "bias"));
    MG_RETURN_IF_ERROR(RequireDType(ctx, bias_index, DType::kF32, "bias"));
    MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, bias_index).dims[0], S(num_experts),
                                      "bias [E] and the expert count"));
  }
  return Status::Ok();
}

// Operand index `index` is a float bias with `dims`.
Status CheckBias(const InferContext& ctx, int index, const std::vector<Dim>& dims,
                 const char* role) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, index, static_cast<int>(dims.size()), role));
  MG_RETURN_IF_ERROR(RequireFloat(ctx, index, role));
  for (size_t d = 0; d < dims.size(); ++d) {
    MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, index).dims[d], dims[d], role));
  }
  return Status::Ok();
}

// Stacked [in, out] expert weights [E, K, N] (transformers' layout).
Status CheckStackedKn(const InferContext& ctx, int index, const Dim& experts, const Dim& k,
                      const Dim& n, const char* role) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, index, 3, role));
  MG_RETURN_IF_ERROR(RequireFloat(ctx, index, role));
  const Type& t = In(ctx, index);
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, t.dims[0], experts, std::string(role) + " experts"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, t.dims[1], k, std::string(role) + " rows (in)"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, t.dims[2], n, std::string(role) + " columns (out)"));
  return Status::Ok();
}

// moe with activation 1: x, router, gate_up [E, H, 2I], down [E, I, H] (out_major: gate_up
// [E, 2I, H], down [E, H, I]), and optionally (all three or none) the router bias [E],
// gate_up bias [E, 2I] and down bias [E, H].
StatusOr<std::vector<Type>> InferMoeClampedSwiglu(const InferContext& ctx, const Dim& experts,
                                                  const Dim& hidden, bool out_major) {
  const size_t n = ctx.operands.size();
  if (n != 4 && n != 7) {
    return ShapeError(ctx,
                      "activation = 1 takes x, router, gate_up, down and optionally the "
                      "router, gate_up and down biases (4 or 7 operands), got " +
                          std::to_string(n));
  }
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 2, 3, "gate_up"));
  const Dim& two_inter = In(ctx, 2).dims[out_major ? 1 : 2];
  MG_RETURN_IF_ERROR(RequireStatic(ctx, two_inter, "gate_up's 2I"));
  if (two_inter.size % 2 != 0) {
    return ShapeError(ctx, std::string("gate_up ") + (out_major ? "[E, 2I, H]" : "[E, H, 2I]") +
                               " needs an even 2I, got " + Describe(In(ctx, 2)));
  }
  const Dim inter = S(two_inter.size / 2);
  if (out_major) {  // [out, in], any matmul weight dtype (MXFP4 as published)
    MG_RETURN_IF_ERROR(CheckStacked(ctx, 2, experts, two_inter, hidden, "gate_up"));
    MG_RETURN_IF_ERROR(CheckStacked(ctx, 3, experts, hidden, inter, "down"));
  } else {
    MG_RETURN_IF_ERROR(CheckStackedKn(ctx, 2, experts, hidden, two_inter, "gate_up"));
    MG_RETURN_IF_ERROR(CheckStackedKn(ctx, 3, experts, inter, hidden, "down"));
  }
  if (n == 7) {
    MG_RETURN_IF_ERROR(CheckBias(ctx, 4, {experts}, "router bias [E]"));
    MG_RETURN_IF_ERROR(CheckBias(ctx, 5, {experts, two_inter}, "gate_up bias [E, 2I]"));
    MG_RETURN_IF_ERROR(CheckBias(ctx, 6, {experts, hidden}, "down bias [E, H]"));
  }
  return std::vector<Type>{In(ctx, 0)};
}

StatusOr<std::vector<Type>> InferMoe(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 2, "router"));
  MG_RETURN_IF_ERROR(RequireFloat(ctx, 1, "router"));
  const Dim& hidden = In(ctx, 0).dims[1];
  const Dim& experts = In(ctx, 1).dims[0];
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 1).dims[1], hidden, "router [E,H]"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, experts, "expert count"));
  MG_ASSIGN_OR_RETURN(const MoeParams p, ParamsFromAttrs<MoeParams>(ctx.op.attrs, ctx.op.name()));
  const bool clamped = p.activation == static_cast<int64_t>(ExpertActivation::kClampedSwiglu);
  if (!clamped && p.out_major != 0) return ShapeError(ctx, "out_major needs activation = 1");
  // The clamped variant's biases are the router's and the experts', never a correction bias.
  MG_RETURN_IF_ERROR(CheckRoute(ctx, experts.size, /*bias_index=*/clamped ? 99 : 5));
  // The fused op's reference kernel keeps a row's logits and routes on the stack.
  if (experts.size > kMoeOpMaxExperts || ctx.op.IntAttr("top_k") > kMoeOpMaxTopK) {
    return ShapeError(ctx, "the fused moe op supports at most " + std::to_string(kMoeOpMaxExperts) +
                               " experts and top_k " + std::to_string(kMoeOpMaxTopK));
  }
  if (clamped) {
    if (!(p.swiglu_limit > 0.0) || !std::isfinite(p.swiglu_limit) ||
        !std::isfinite(p.swiglu_alpha)) {
      return ShapeError(ctx, "swiglu_limit must be finite and > 0 and swiglu_alpha finite");
    }
    return InferMoeClampedSwiglu(ctx, experts, hidden, p.out_major != 0);
  }
  if (ctx.operands.size() < 5 || ctx.operands.size() > 6) {
    return ShapeError(ctx,
                      "activation 0 takes x, router, gate, up, down and optionally the "
                      "score-correction bias (5 or 6 operands), got " +
                          std::to_string(ctx.operands.size()));
  }
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 2, 3, "gate"));
  const Dim& inter = In(ctx, 2).dims[1];
  MG_RETURN_IF_ERROR(CheckStacked(ctx, 2, experts, inter, hidden, "gate"));
  MG_RETURN_IF_ERROR(CheckStacked(ctx, 3, experts, inter, hidden, "up"));
  MG_RETURN_IF_ERROR(CheckStacked(ctx, 4, experts, hidden, inter, "down"));
  return std::vector<Type>{In(ctx, 0)};
}

StatusOr<std::vector<Type>> InferTopkRoute(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "logits"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "logits"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, In(ctx, 0).dims[1], "expert count"));
  MG_RETURN_IF_ERROR(CheckRoute(ctx, In(ctx, 0).dims[1].size, /*bias_index=*/1));
  const Dim rows = In(ctx, 0).dims[0];
  const Dim k = S(ctx.op.IntAttr("top_k"));
  return std::vector<Type>{I32({rows, k}), F32({rows, k})};
}

// ids [T,k] with static dims; returns T*k.
StatusOr<int64_t> StaticPairs(const InferContext& ctx, int index) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, index, 2, "expert ids"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, index, DType::kI32, "expert ids"));
  const Type& ids = In(ctx, index);
  MG_RETURN_IF_ERROR(RequireStatic(ctx, ids.dims[0], "rows"));
  return ids.dims[0].size * ids.dims[1].size;
}

StatusOr<std::vector<Type>> InferMoeAlign(const InferContext& ctx) {
  MG_ASSIGN_OR_RETURN(int64_t pairs, StaticPairs(ctx, 0));
  return std::vector<Type>{I32({S(pairs)}), I32({S(ctx.op.IntAttr("num_experts") + 1)})};
}

StatusOr<std::vector<Type>> InferMoePermute(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 1, "sorted_pairs"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 1, DType::kI32, "sorted_pairs"));
  return std::vector<Type>{F32({In(ctx, 1).dims[0], In(ctx, 0).dims[1]})};
}

StatusOr<std::vector<Type>> InferGroupedMatmul(const InferContext& ctx, int num_weights) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 1, "expert_offsets"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 1, DType::kI32, "expert_offsets"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, In(ctx, 1).dims[0], "expert_offsets"));
  if (In(ctx, 1).dims[0].size < 2) {
    return ShapeError(ctx, "expert_offsets must hold num_experts + 1 >= 2 entries");
  }
  const Dim experts = S(In(ctx, 1).dims[0].size - 1);
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 2, 3, "weight"));
  const Dim& n = In(ctx, 2).dims[1];
  for (int i = 2; i < 2 + num_weights; ++i) {
    MG_RETURN_IF_ERROR(CheckStacked(ctx, i, experts, n, In(ctx, 0).dims[1], "weight"));
  }
  // grouped_matmul's optional bias [E, N] (GPT-OSS's expert biases).
  const size_t bias_index = 2 + static_cast<size_t>(num_weights);
  if (ctx.operands.size() > bias_index) {
    MG_RETURN_IF_ERROR(CheckBias(ctx, static_cast<int>(bias_index), {experts, n}, "bias [E, N]"));
  }
  return std::vector<Type>{F32({In(ctx, 0).dims[0], n})};
}
StatusOr<std::vector<Type>> InferGroupedMatmul1(const InferContext& ctx) {
  return InferGroupedMatmul(ctx, 1);
}
StatusOr<std::vector<Type>> InferGroupedMatmul2(const InferContext& ctx) {
  return InferGroupedMatmul(ctx, 2);
}

StatusOr<std::vector<Type>> InferUnpermuteReduce(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "y"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 1, "sorted_pairs"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 2, 2, "route_weights"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 2, DType::kF32, "route_weights"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[0], In(ctx, 1).dims[0], "pair count"));
  return std::vector<Type>{F32({In(ctx, 2).dims[0], In(ctx, 0).dims[1]})};
}

StatusOr<std::vector<Type>> InferMoeExpertBatch(const InferContext& ctx) {
  MG_ASSIGN_OR_RETURN(int64_t pairs, StaticPairs(ctx, 0));
  const int64_t slots = std::min(ctx.op.IntAttr("num_experts"), pairs);
  const Dim rows = In(ctx, 0).dims[0];
  return std::vector<Type>{I32({S(slots)}), I32({S(slots), rows})};
}

Status CheckBatchLayout(const InferContext& ctx, int experts_index) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, experts_index, 1, "batch_experts"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, experts_index + 1, 2, "batch_pairs"));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, experts_index).dims[0],
                                    In(ctx, experts_index + 1).dims[0], "slot count"));
  return Status::Ok();
}

StatusOr<std::vector<Type>> InferExpertBatchedGateUp(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, In(ctx, 0).dims[0], "rows"));
  MG_RETURN_IF_ERROR(CheckBatchLayout(ctx, 1));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 3, 3, "gate"));
  const Dim experts = In(ctx, 3).dims[0];
  const Dim inter = In(ctx, 3).dims[1];
  const Dim hidden = In(ctx, 0).dims[1];
  MG_RETURN_IF_ERROR(CheckStacked(ctx, 3, experts, inter, hidden, "gate"));
  MG_RETURN_IF_ERROR(CheckStacked(ctx, 4, experts, inter, hidden, "up"));
  return std::vector<Type>{F32({S(In(ctx, 0).dims[0].size * ctx.op.IntAttr("top_k")), inter})};
}

StatusOr<std::vector<Type>> InferExpertBatchedDown(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "h"));
  MG_RETURN_IF_ERROR(CheckBatchLayout(ctx, 1));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 3, 3, "down"));
  const Type& w = In(ctx, 3);
  MG_RETURN_IF_ERROR(CheckStacked(ctx, 3, w.dims[0], w.dims[1], In(ctx, 0).dims[1], "down"));
  return std::vector<Type>{F32({In(ctx, 0).dims[0], w.dims[1]})};
}

// x [P, K], offsets [E + 1], w [E, K, N], optional bias [E, N] -> [P, N].
StatusOr<std::vector<Type>> InferGroupedMatmulKn(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 1, "expert_offsets"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 1, DType::kI32, "expert_offsets"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, In(ctx, 1).dims[0], "expert_offsets"));
  if (In(ctx, 1).dims[0].size < 2) {
    return ShapeError(ctx, "expert_offsets must hold num_experts + 1 >= 2 entries");
  }
  const Dim experts = S(In(ctx, 1).dims[0].size - 1);
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 2, 3, "weight"));
  const Dim& n = In(ctx, 2).dims[2];
  MG_RETURN_IF_ERROR(CheckStackedKn(ctx, 2, experts, In(ctx, 0).dims[1], n, "weight"));
  if (ctx.operands.size() > 3) MG_RETURN_IF_ERROR(CheckBias(ctx, 3, {experts, n}, "bias [E, N]"));
  return std::vector<Type>{F32({In(ctx, 0).dims[0], n})};
}

// x [R, K], batch layout, w [E, K, N] when `kn`, else [E, N, K] (out-major, quantized or
// not), optional bias [E, N] -> [R * top_k, N].
StatusOr<std::vector<Type>> InferExpertBatched(const InferContext& ctx, bool kn) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, In(ctx, 0).dims[0], "rows"));
  MG_RETURN_IF_ERROR(CheckBatchLayout(ctx, 1));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 3, 3, "weight"));
  const Dim experts = In(ctx, 3).dims[0];
  const Dim& n = In(ctx, 3).dims[kn ? 2 : 1];
  const Dim& k = In(ctx, 0).dims[1];
  MG_RETURN_IF_ERROR(kn ? CheckStackedKn(ctx, 3, experts, k, n, "weight")
                        : CheckStacked(ctx, 3, experts, n, k, "weight"));
  if (ctx.operands.size() > 4) MG_RETURN_IF_ERROR(CheckBias(ctx, 4, {experts, n}, "bias [E, N]"));
  return std::vector<Type>{F32({S(In(ctx, 0).dims[0].size * ctx.op.IntAttr("top_k")), n})};
}
StatusOr<std::vector<Type>> InferExpertBatchedMatmulKn(const InferContext& ctx) {
  return InferExpertBatched(ctx, /*kn=*/true);
}
StatusOr<std::vector<Type>> InferExpertBatchedMatmul(const InferContext& ctx) {
  return InferExpertBatched(ctx, /*kn=*/false);
}

// x [R, 2I] -> [R, I].
StatusOr<std::vector<Type>> InferClampedSwiglu(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 0, DType::kF32, "x"));
  const Dim& cols = In(ctx, 0).dims[1];
  MG_RETURN_IF_ERROR(RequireStatic(ctx, cols, "columns"));
  if (cols.size % 2 != 0) {
    return ShapeError(
        ctx, "x [R, 2I] holds (gate, up) pairs: an even column count, got " + Describe(In(ctx, 0)));
  }
  if (!(ctx.op.FloatAttr("limit", 0.0) > 0.0)) {
    return ShapeError(ctx, "attribute 'limit' must be > 0");
  }
  return std::vector<Type>{F32({In(ctx, 0).dims[0], S(cols.size / 2)})};
}

StatusOr<std::vector<Type>> InferMoeCombine(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "y"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 2, "route_weights"));
  const Type& w = In(ctx, 1);
  MG_RETURN_IF_ERROR(RequireStatic(ctx, w.dims[0], "rows"));
  MG_RETURN_IF_ERROR(
      RequireSameDim(ctx, In(ctx, 0).dims[0], S(w.dims[0].size * w.dims[1].size), "pair count"));
  return std::vector<Type>{F32({w.dims[0], In(ctx, 0).dims[1]})};
}

StatusOr<std::vector<Type>> InferSliceRows(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, -1, "x"));
  const Type& x = In(ctx, 0);
  if (x.rank() < 1) return ShapeError(ctx, "x must have rank >= 1");
  MG_RETURN_IF_ERROR(RequireStatic(ctx, x.dims[0], "rows"));
  const int64_t begin = ctx.op.IntAttr("begin"), rows = ctx.op.IntAttr("rows");
  if (begin + rows > x.dims[0].size) {
    return ShapeError(ctx, "rows [" + std::to_string(begin) + ", " + std::to_string(begin + rows) +
                               ") exceed the operand's " + x.dims[0].ToString() + " rows");
  }
  Type out = x;
  out.dims[0] = S(rows);
  return std::vector<Type>{out};
}

StatusOr<std::vector<Type>> InferConcatRows(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, -1, "operand 0"));
  Type out = In(ctx, 0);
  if (out.rank() < 1) return ShapeError(ctx, "operands must have rank >= 1");
  MG_RETURN_IF_ERROR(RequireStatic(ctx, out.dims[0], "rows"));
  for (size_t i = 1; i < ctx.operands.size(); ++i) {
    const Type& t = *ctx.operands[i];
    if (!t.is_tensor() || t.rank() != out.rank() || t.dtype != out.dtype ||
        !std::equal(t.dims.begin() + 1, t.dims.end(), out.dims.begin() + 1)) {
      return ShapeError(ctx, "operand " + std::to_string(i) + " (" + Describe(t) +
                                 ") does not match " + Describe(out) + " past dim 0");
    }
    MG_RETURN_IF_ERROR(RequireStatic(ctx, t.dims[0], "rows"));
    out.dims[0].size += t.dims[0].size;
  }
  return std::vector<Type>{out};
}

StatusOr<std::vector<Type>> InferAllGather(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, -1, "x"));
  Type out = In(ctx, 0);
  const int64_t world = ctx.op.IntAttr("world_size", 1);
  if (world != 1) {
    MG_RETURN_IF_ERROR(RequireStatic(ctx, out.dims[0], "rows"));
    out.dims[0].size *= world;
  }
  return std::vector<Type>{out};
}

// ep_dispatch(%meta, x [T, H], ids [T, k]) -> rx [C, H], rids [C, 1], layout [T * k + 2 * ep].
StatusOr<std::vector<Type>> InferEpDispatch(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "x"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, In(ctx, 0).dims[0], "rows"));
  MG_ASSIGN_OR_RETURN(int64_t pairs, StaticPairs(ctx, 1));
  MG_RETURN_IF_ERROR(RequireSameDim(ctx, In(ctx, 0).dims[0], In(ctx, 1).dims[0], "rows"));
  const int64_t ep = ctx.op.IntAttr("ep_size"), rank = ctx.op.IntAttr("ep_rank");
  const int64_t experts = ctx.op.IntAttr("num_experts"), capacity = ctx.op.IntAttr("capacity");
  if (rank >= ep) return ShapeError(ctx, "ep_rank must be below ep_size");
  if (experts < ep) return ShapeError(ctx, "every rank must own an expert: num_experts >= ep_size");
  return std::vector<Type>{F32({S(capacity), In(ctx, 0).dims[1]}), I32({S(capacity), S(1)}),
                           I32({S(pairs + 2 * ep)})};
}

// ep_combine(%meta, yp [C, H], sorted [C], offsets [E_local + 1], w [T, k], layout) -> y [T, H].
StatusOr<std::vector<Type>> InferEpCombine(const InferContext& ctx) {
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 0, 2, "y"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 1, 1, "sorted_pairs"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 1, DType::kI32, "sorted_pairs"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 2, 1, "expert_offsets"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 2, DType::kI32, "expert_offsets"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 3, 2, "route_weights"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 3, DType::kF32, "route_weights"));
  MG_RETURN_IF_ERROR(RequireStatic(ctx, In(ctx, 3).dims[0], "rows"));
  MG_RETURN_IF_ERROR(RequireTensor(ctx, 4, 1, "layout"));
  MG_RETURN_IF_ERROR(RequireDType(ctx, 4, DType::kI32, "layout"));
  MG_ASSIGN_OR_RETURN(const EpParams p, ParamsFromAttrs<EpParams>(ctx.op.attrs, ctx.op.name()));
  if (p.ep_rank >= p.ep_size) return ShapeError(ctx, "ep_rank must be below ep_size");
  if (p.num_experts < p.ep_size) {
    return ShapeError(ctx, "every rank must own an expert: num_experts >= ep_size");
  }
  const Type& y = In(ctx, 0);
  MG_RETURN_IF_ERROR(RequireStatic(ctx, y.dims[0], "expert rows"));
  if (y.dims[0].size != p.capacity || In(ctx, 1).dims[0].size != p.capacity) {
    return ShapeError(
        ctx, "y and sorted_pairs must have capacity (" + std::to_string(p.capacity) + ") rows");
  }
  if (In(ctx, 2).dims[0].size != p.local().count + 1) {
    return ShapeError(ctx, "expert_offsets must hold this rank's experts + 1 = " +
                               std::to_string(p.local().count + 1) + " entries");
  }
  const Type& w = In(ctx, 3);
  const int64_t pairs = w.dims[0].size * w.dims[1].size;
  if (In(ctx, 4).dims[0].size != pairs + 2 * p.ep_size) {
    return ShapeError(ctx, "layout must hold rows * top_k + 2 * ep_size = " +
                               std::to_string(pairs + 2 * p.ep_size) + " entries");
  }
  return std::vector<Type>{F32({w.dims[0], y.dims[1]})};
}

// ---- the table -------------------------------------------------------------

AttrSpec IntAttr(std::string name, int64_t min = INT64_MIN, int64_t max = INT64_MAX,
                 bool required = true) {
  return AttrSpec{std::move(name), AttrKind::kInt, required, min, max};
}
AttrSpec StringAttr(std::string name, bool required = true) {
  return AttrSpec{std::move(name), AttrKind::kString, required};
}

constexpr uint32_t kMetaPure = kNeedsForwardMeta | kPure;
// ForwardMeta ops whose dim 0 is tokens (see kTokenRows).
constexpr uint32_t kTokenRowsPure = kNeedsForwardMeta | kTokenRows | kPure;

std::vector<OpDef> BuildDefs() {
  return {
      {.name = "weight",
       .summary =
           "a checkpoint tensor, by name; {e} in the name stacks experts (from first_expert on)",
       .example = "%w = weight() {name = \"model.norm.weight\"} : tensor<2048 x bf16>",
       .min_data_operands = 0,
       .max_data_operands = 0,
       .traits = kWeight | kPure,
       .other_attrs = {StringAttr("name"), IntAttr("experts", 1, 65536, false),
                       IntAttr("first_expert", 0, 65535, false),
                       IntAttr("row_offset", 0, INT64_MAX, false), StringAttr("quant", false),
                       StringAttr("scale", false), IntAttr("block_rows", 1, INT32_MAX, false),
                       IntAttr("block_cols", 1, INT32_MAX, false)},
       .infer = InferWeight},
      {.name = "zeros",
       .summary = "a tensor of zeros (padding rows no chunk covers)",
       .example = "%pad = zeros() : tensor<64 x 2048 x f32>",
       .min_data_operands = 0,
       .max_data_operands = 0,
       .traits = kPure | kKernel,
       .infer = InferZeros},
      {.name = "embedding",
       .summary = "gathers table rows by token id",
       .example = "%h = embedding(%tokens, %table) : tensor<T x 2048 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kPure | kKernel,
       .infer = InferEmbedding},
      {.name = "rms_norm",
       .summary = "RMSNorm over groups of the weight's size",
       .example = "%y = rms_norm(%x, %w) {eps = 1e-06} : tensor<T x 2048 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<RmsNormParams>,
       .infer = InferRmsNorm},
      {.name = "add_rms_norm",
       .summary = "residual add then RMSNorm; returns (sum, normed)",
       .example = "%s, %y = add_rms_norm(%x, %r, %w) {eps = 1e-06} : tensor<T x 64 x f32>, "
                  "tensor<T x 64 x "
                  "f32>",
       .min_data_operands = 3,
       .max_data_operands = 3,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<RmsNormParams>,
       .infer = InferAddRmsNorm},
      {.name = "add",
       .summary = "elementwise sum",
       .example = "%y = add(%a, %b) : tensor<T x 64 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kPure | kKernel,
       .infer = InferElementwise},
      {.name = "bias_add",
       .summary = "x + b with the bias b [N] broadcast over every row of x [R, N]",
       .example = "%y = bias_add(%x, %b) : tensor<T x 4096 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kPure | kKernel,
       .infer = InferBiasAdd},
      {.name = "sigmoid_gate_mul",
       .summary = "y * sigmoid(x @ w^T) with a gate weight w [1, K]: one gate per row of y "
                  "(Qwen2-MoE's shared-expert gate)",
       .example = "%y2 = sigmoid_gate_mul(%x, %w, %y) : tensor<T x 2048 x f32>",
       .min_data_operands = 3,
       .max_data_operands = 3,
       .traits = kPure | kKernel,
       .infer = InferSigmoidGateMul},
      {.name = "linear",
       .summary = "x @ w^T with w [N, K] as checkpoints store it",
       .example = "%y = linear(%x, %w) : tensor<T x 4096 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kPure | kKernel,
       .infer = InferLinear},
      {.name = "silu_mul",
       .summary = "silu(a) * b",
       .example = "%y = silu_mul(%a, %b) : tensor<T x 768 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kPure | kKernel,
       .infer = InferElementwise},
      {.name = "linear_silu_mul",
       .summary = "silu(x @ wg^T) * (x @ wu^T): gate/up GEMMs with the activation fused",
       .example = "%h = linear_silu_mul(%x, %wg, %wu) : tensor<T x 768 x f32>",
       .min_data_operands = 3,
       .max_data_operands = 3,
       .traits = kPure | kKernel,
       .infer = InferLinearSiluMul},
      {.name = "rope",
       .summary = "rotary embedding at ForwardMeta positions: rotate-half, or GPT-J pairs with "
                  "interleaved = 1, over the first rotary_dim (default head_dim) of each head; "
                  "scaling 1/2/3 = linear/yarn/llama3 frequencies (factor, ramp_low/high), "
                  "cos and sin times attention_factor",
       .example =
           "%q2 = rope(%meta, %q) {head_dim = 128, theta = 1000000.0} : tensor<T x 4096 x f32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kTokenRowsPure | kKernel,
       .params = &kParamsInfo<RopeParams>,
       .infer = InferRope},
      {.name = "attention",
       .summary = "writes k/v into the paged cache, then causal GQA attention over each "
                  "sequence; an optional %sinks [num_heads] adds one logit per head to the "
                  "softmax's denominator; window > 0 attends to the last window positions only "
                  "(GPT-OSS)",
       .example = "%o = attention(%meta, %q, %k, %v, %sinks) {head_dim = 128, layer = 0, "
                  "num_heads = 32, num_kv_heads = 4, scale = 0.088} : tensor<T x 4096 x f32>",
       .min_data_operands = 3,
       .max_data_operands = 4,
       .traits = kNeedsForwardMeta | kTokenRows | kKernel,
       .params = &kParamsInfo<AttentionParams>,
       .infer = InferAttention},
      {.name = "mla_attention",
       .summary = "multi-head latent attention (DeepSeek-V2/V3): writes the latent and rope key "
                  "into the paged latent cache, then causal attention in the absorbed form "
                  "(q_nope through kv_b's key half, output through its value half)",
       .example = "%o = mla_attention(%meta, %q_nope, %q_pe, %latent, %k_pe, %kv_b) "
                  "{kv_lora_rank = 512, layer = 0, num_heads = 128, qk_nope_head_dim = 128, "
                  "qk_rope_head_dim = 64, scale = 0.072, v_head_dim = 128} : "
                  "tensor<T x 16384 x f32>",
       .min_data_operands = 5,
       .max_data_operands = 5,
       .traits = kNeedsForwardMeta | kTokenRows | kKernel,
       .params = &kParamsInfo<MlaAttentionParams>,
       .infer = InferMlaAttention},
      {.name = "split_cols",
       .summary = "splits each row's column groups of `group`: the first `first` columns of "
                  "every group to the first result, the rest to the second",
       .example = "%a, %b = split_cols(%x) {first = 512, group = 576} : tensor<T x 512 x f32>, "
                  "tensor<T x 64 x f32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<SplitColsParams>,
       .infer = InferSplitCols},
      {.name = "gather_last",
       .summary = "the last token's row of each sequence",
       .example = "%last = gather_last(%meta, %x) : tensor<B x 2048 x f32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kMetaPure | kKernel,
       .infer = InferGatherLast},
      {.name = "mlp",
       .summary = "dense SwiGLU MLP (dense layer or shared expert): down(silu(gate x + bg) * "
                  "(up x + bu)) + bd, the biases optional (all three or none)",
       .example = "%y = mlp(%meta, %x, %wg, %wu, %wd, %bg, %bu, %bd) : tensor<T x 2048 x f32>",
       .min_data_operands = 4,
       .max_data_operands = 7,
       .traits = kTokenRowsPure,
       .infer = InferMlp},
      {.name = "moe",
       .summary = "sparse MoE block: router, top-k (TopkRouteParams; optional last operand "
                  "the score-correction bias [E]), SwiGLU experts, weighted sum; activation = 1: "
                  "GPT-OSS's clamped SwiGLU over gate_up [E, H, 2I] / down [E, I, H] with the "
                  "router and expert biases",
       .example = "%y = moe(%meta, %x, %router, %wg, %wu, %wd) {norm_topk_prob = 1, top_k = 8} : "
                  "tensor<T x 2048 x f32>",
       .min_data_operands = 4,
       .max_data_operands = 7,
       .traits = kTokenRowsPure,
       .params = &kParamsInfo<MoeParams>,
       .infer = InferMoe},
      {.name = "topk_route",
       .summary = "top-k routing (softmax or sigmoid scores, optional score-correction bias "
                  "[E] for the choice, groups, scaling); rows past num_tokens get expert -1",
       .example = "%ids, %w = topk_route(%meta, %logits, %bias) {norm_topk_prob = 1, "
                  "num_groups = 8, scoring = 1, top_k = 8, top_k_groups = 4} : "
                  "tensor<64 x 8 x i32>, tensor<64 x 8 x f32>",
       .min_data_operands = 1,
       .max_data_operands = 2,
       .traits = kTokenRowsPure | kKernel,
       .params = &kParamsInfo<TopkRouteParams>,
       .infer = InferTopkRoute},
      {.name = "moe_align",
       .summary = "sorts (token, expert) pairs by expert; offsets per expert",
       .example = "%sorted, %offsets = moe_align(%ids) {num_experts = 128} : tensor<512 x i32>, "
                  "tensor<129 x i32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<NumExpertsParams>,
       .infer = InferMoeAlign},
      {.name = "moe_permute",
       .summary = "gathers token rows into expert-sorted pair order",
       .example = "%xp = moe_permute(%x, %sorted) {top_k = 8} : tensor<512 x 2048 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<TopKParams>,
       .infer = InferMoePermute},
      {.name = "grouped_matmul",
       .summary = "per-expert row groups times that expert's weight, plus its optional bias "
                  "[E, N]",
       .example = "%y = grouped_matmul(%xp, %offsets, %wd, %bd) : tensor<512 x 2048 x f32>",
       .min_data_operands = 3,
       .max_data_operands = 4,
       .traits = kPure | kKernel,
       .infer = InferGroupedMatmul1},
      {.name = "grouped_matmul_silu_mul",
       .summary = "grouped gate/up GEMMs with SiLU-and-mul fused",
       .example = "%h = grouped_matmul_silu_mul(%xp, %offsets, %wg, %wu) : tensor<512 x 768 x f32>",
       .min_data_operands = 4,
       .max_data_operands = 4,
       .traits = kPure | kKernel,
       .infer = InferGroupedMatmul2},
      {.name = "moe_unpermute_reduce",
       .summary = "scatters pair rows back to tokens, weighted by the route",
       .example =
           "%y = moe_unpermute_reduce(%yp, %sorted, %w) {top_k = 8} : tensor<64 x 2048 x f32>",
       .min_data_operands = 3,
       .max_data_operands = 3,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<TopKParams>,
       .infer = InferUnpermuteReduce},
      {.name = "moe_expert_batch",
       .summary = "decode layout: active experts and their pairs, fixed shape",
       .example = "%be, %bp = moe_expert_batch(%ids) {num_experts = 128} : tensor<64 x i32>, "
                  "tensor<64 x 8 x i32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<NumExpertsParams>,
       .infer = InferMoeExpertBatch},
      {.name = "expert_batched_gate_up_silu",
       .summary = "decode: per active expert, gate/up GEMV + SiLU-and-mul",
       .example = "%h = expert_batched_gate_up_silu(%x, %be, %bp, %wg, %wu) {top_k = 8} : "
                  "tensor<64 x 768 x f32>",
       .min_data_operands = 5,
       .max_data_operands = 5,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<TopKParams>,
       .infer = InferExpertBatchedGateUp},
      {.name = "expert_batched_down",
       .summary = "decode: per active expert, down GEMV",
       .example = "%y = expert_batched_down(%h, %be, %bp, %wd) : tensor<64 x 2048 x f32>",
       .min_data_operands = 4,
       .max_data_operands = 4,
       .traits = kPure | kKernel,
       .infer = InferExpertBatchedDown},
      {.name = "grouped_matmul_kn",
       .summary = "per-expert row groups times that expert's [in, out] weight, plus its bias",
       .example = "%y = grouped_matmul_kn(%xp, %offsets, %w, %b) : tensor<512 x 5760 x f32>",
       .min_data_operands = 3,
       .max_data_operands = 4,
       .traits = kPure | kKernel,
       .infer = InferGroupedMatmulKn},
      {.name = "expert_batched_matmul_kn",
       .summary = "decode: per active expert, its pairs' rows (x row p / top_k) times its "
                  "[in, out] weight, plus its bias",
       .example = "%y = expert_batched_matmul_kn(%x, %be, %bp, %w, %b) {top_k = 4} : "
                  "tensor<64 x 5760 x f32>",
       .min_data_operands = 4,
       .max_data_operands = 5,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<TopKParams>,
       .infer = InferExpertBatchedMatmulKn},
      {.name = "expert_batched_matmul",
       .summary = "decode: per active expert, its pairs' rows (x row p / top_k) times its "
                  "[out, in] weight (quantized or not), plus its optional bias",
       .example = "%y = expert_batched_matmul(%x, %be, %bp, %w, %b) {top_k = 4} : "
                  "tensor<64 x 5760 x f32>",
       .min_data_operands = 4,
       .max_data_operands = 5,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<TopKParams>,
       .infer = InferExpertBatchedMatmul},
      {.name = "clamped_swiglu",
       .summary = "GPT-OSS's SwiGLU on interleaved (gate, up) pairs: (clamp(u) + 1) * g * "
                  "sigmoid(alpha * g), g = min(gate, limit)",
       .example = "%h = clamped_swiglu(%gu) {alpha = 1.702, limit = 7.0} : tensor<T x 2880 x f32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<ClampedSwigluParams>,
       .infer = InferClampedSwiglu},
      {.name = "moe_combine",
       .summary = "weighted sum of each token's k expert rows",
       .example = "%y = moe_combine(%meta, %yp, %w) : tensor<8 x 2048 x f32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kTokenRowsPure | kKernel,
       .infer = InferMoeCombine},
      {.name = "slice_rows",
       .summary = "rows [begin, begin + rows) of x",
       .example = "%c = slice_rows(%x) {begin = 256, rows = 256} : tensor<256 x 2048 x f32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kPure | kKernel,
       .params = &kParamsInfo<SliceRowsParams>,
       .infer = InferSliceRows},
      {.name = "concat_rows",
       .summary = "concatenates operands along dim 0",
       .example = "%y = concat_rows(%a, %b) : tensor<512 x 2048 x f32>",
       .min_data_operands = 1,
       .max_data_operands = -1,
       .traits = kPure | kKernel,
       .infer = InferConcatRows},
      {.name = "ep_dispatch",
       .summary = "expert parallelism: sends each (token, expert) pair's row to the expert's "
                  "rank (all-to-all); rx/rids are the pairs received (local expert, -1 past "
                  "them), layout what ep_combine needs to send results back",
       .example = "%rx, %rids, %layout = ep_dispatch(%meta, %x, %ids) {capacity = 96, ep_rank = 0, "
                  "ep_size = 2, num_experts = 8} : tensor<96 x 2048 x f32>, tensor<96 x 1 x i32>, "
                  "tensor<36 x i32>",
       .min_data_operands = 2,
       .max_data_operands = 2,
       .traits = kNeedsForwardMeta | kCollective | kHostSync | kKernel,
       .params = &kParamsInfo<EpParams>,
       .infer = InferEpDispatch},
      {.name = "ep_combine",
       .summary = "expert parallelism: returns the expert rows to their tokens' ranks "
                  "(all-to-all) and sums each token's k rows weighted by the route",
       .example = "%y = ep_combine(%meta, %yp, %sorted, %offsets, %w, %layout) {capacity = 96, "
                  "ep_rank = 0, ep_size = 2, num_experts = 8} : tensor<16 x 2048 x f32>",
       .min_data_operands = 5,
       .max_data_operands = 5,
       .traits = kNeedsForwardMeta | kCollective | kHostSync | kKernel,
       .params = &kParamsInfo<EpParams>,
       .infer = InferEpCombine},
      {.name = "all_gather",
       .summary = "gathers row shards from every rank (split/all-gather MoE path)",
       .example = "%y = all_gather(%meta, %x) {world_size = 1} : tensor<T x 2048 x f32>",
       .min_data_operands = 1,
       .max_data_operands = 1,
       .traits = kNeedsForwardMeta | kCollective | kKernel,
       .params = &kParamsInfo<AllGatherParams>,
       .infer = InferAllGather},
  };
}

struct Registry {
  std::vector<OpDef> defs = BuildDefs();
  std::vector<const OpDef*> pointers;
  Registry() {
    for (OpDef& def : defs) {
      if (def.params) {
        for (const ParamFieldInfo& f : *def.params) {
          def.attrs.push_back(AttrSpec{f.name, f.kind, f.required, f.min, f.max});
        }
      }
      def.attrs.insert(def.attrs.end(), def.other_attrs.begin(), def.other_attrs.end());
      pointers.push_back(&def);
    }
  }
};

const Registry& GetRegistry() {
  static const Registry* registry = new Registry();
  return *registry;
}

}  // namespace

const OpDef* LookupOp(std::string_view name) {
  for (const OpDef* def : GetRegistry().pointers) {
    if (def->name == name) return def;
  }
  return nullptr;
}

const std::vector<const OpDef*>& AllOps() {
  return GetRegistry().pointers;
}

StatusOr<std::vector<Type>> InferResultTypes(const Graph& graph, const Op& op) {
  if (!op.def) return InvalidArgument("unknown op");
  std::vector<const Type*> operands;
  for (size_t i = op.def->num_meta_operands(); i < op.operands.size(); ++i) {
    if (!graph.IsValid(op.operands[i])) {
      return InvalidArgument("'" + op.name() + "': operand " + std::to_string(i) + " is invalid");
    }
    operands.push_back(&graph.type(op.operands[i]));
  }
  std::vector<const Type*> declared;
  for (ValueId r : op.results) {
    if (graph.IsValid(r)) declared.push_back(&graph.type(r));
  }
  InferContext ctx{operands, op, declared};
  return op.def->infer(ctx);
}

KernelParams PackKernelParams(const Op& op) {
  KernelParams params;
  if (op.def->params == nullptr) return params;
  params.ints.resize(op.def->params->num_ints);
  params.floats.resize(op.def->params->num_floats);
  for (const ParamFieldInfo& f : *op.def->params) {
    if (f.kind == AttrKind::kInt) {
      params.ints[f.wire_index] = op.IntAttr(f.name, f.int_default);
    } else {
      params.floats[f.wire_index] = static_cast<float>(op.FloatAttr(f.name, f.float_default));
    }
  }
  return params;
}

uint64_t OpSetHash() {
  static const uint64_t hash = [] {
    // FNV-1a over a canonical text of the registry.
    std::string text;
    for (const OpDef* def : AllOps()) {
      text += def->name + "(" + std::to_string(def->min_data_operands) + "," +
              std::to_string(def->max_data_operands) + "," + std::to_string(def->traits) + ")";
      for (const AttrSpec& a : def->attrs) {
        text += a.name + ":" + std::to_string(static_cast<int>(a.kind)) + ":" +
                std::to_string(a.required) + ":" + std::to_string(a.min) + ":" +
                std::to_string(a.max) + ";";
      }
      // The wire order: integer fields, then float fields; and the defaults
      // an absent attribute packs as.
      if (def->params) {
        for (const AttrKind kind : {AttrKind::kInt, AttrKind::kFloat}) {
          for (const ParamFieldInfo& f : *def->params) {
            if (f.kind == kind)
              text += (kind == AttrKind::kInt ? "i:" : "f:") + std::string(f.name) + ";";
          }
        }
        for (const ParamFieldInfo& f : *def->params) {
          if (f.has_default) {
            text += std::string("d:") + f.name + "=" + std::to_string(f.int_default) + "/" +
                    std::to_string(f.float_default) + ";";
          }
        }
      }
      text += "\n";
    }
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) {
      h ^= c;
      h *= 1099511628211ull;
    }
    return h;
  }();
  return hash;
}

}  // namespace moegraph
