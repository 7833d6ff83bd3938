// Attention, MLP and MoE blocks.
#include "frontends/blocks.h"

#include <cmath>
#include <vector>

#include "support/format.h"

namespace moegraph {
namespace {

// An option whose op does not exist yet: the message names the option and what it waits for.
Status NeedsOp(const std::string& block, const std::string& option, const std::string& needs) {
  return Unimplemented(block + ": option " + option + " is not supported yet: " + needs);
}

// bias_add exists and the mlp op takes biases; the fused moe op has no bias operands yet.
constexpr const char* kBiasOp = "needs bias operands on the fused moe op (issue 11)";

// transformers: dim = int(head_dim * partial_rotary_factor).
int64_t RotaryDim(const AttentionOptions& o) {
  return static_cast<int64_t>(static_cast<double>(o.head_dim) * o.rope.partial_rotary_factor);
}

}  // namespace

const char* ActivationName(Activation activation) {
  switch (activation) {
    case Activation::kSilu:
      return "silu";
    case Activation::kGeluTanh:
      return "gelu_pytorch_tanh";
    case Activation::kClampedSwiglu:
      return "clamped_swiglu";
  }
  return "?";
}

const char* RouteScoringName(RouteScoring scoring) {
  switch (scoring) {
    case RouteScoring::kSoftmax:
      return "softmax";
    case RouteScoring::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

// ---- Attention ---------------------------------------------------------------

Status CheckAttentionOptions(const AttentionOptions& o) {
  const std::string block = "attention (layer " + std::to_string(o.layer) + ")";
  if (o.num_heads <= 0 || o.num_kv_heads <= 0 || o.head_dim <= 0 ||
      o.num_heads % o.num_kv_heads != 0) {
    return InvalidArgument(block + ": num_heads (" + std::to_string(o.num_heads) +
                           ") must be a positive multiple of num_kv_heads (" +
                           std::to_string(o.num_kv_heads) + ") and head_dim (" +
                           std::to_string(o.head_dim) + ") positive");
  }
  if (o.mla) {
    return NeedsOp(block, "mla",
                   "multi-head latent attention is BuildMlaAttention's (MlaOptions, the "
                   "mla_attention op), not this GQA block's");
  }
  if (o.sliding_window < 0 || o.sliding_window > kMaxAttentionWindow) {
    return InvalidArgument(block + ": sliding_window (" + std::to_string(o.sliding_window) +
                           ") must be in [0, " + std::to_string(kMaxAttentionWindow) +
                           "] (0: full attention)");
  }
  const int64_t rotary_dim = RotaryDim(o);
  if (rotary_dim < 2 || rotary_dim % 2 != 0 || rotary_dim > o.head_dim) {
    return InvalidArgument(
        Format("{}: rope.partial_rotary_factor = {} rotates int(head_dim {} * "
               "factor) = {} values, expected an even count in [2, head_dim]",
               block, o.rope.partial_rotary_factor, o.head_dim, rotary_dim));
  }
  if (o.rope.type == RopeType::kDynamic) {
    return NeedsOp(block, "rope.type = dynamic",
                   "dynamic NTK RoPE rescales theta with the sequence length; the rope op "
                   "rotates by one fixed table (linear, yarn and llama3 run)");
  }
  return Status::Ok();
}

StatusOr<ValueId> BuildAttention(GraphBuilder& b, const AttentionOptions& o,
                                 const AttentionWeights& w, ValueId x, const std::string& l) {
  MG_RETURN_IF_ERROR(CheckAttentionOptions(o));
  if (o.qk_norm != (w.q_norm != kNoValue && w.k_norm != kNoValue)) {
    return InvalidArgument("attention (layer " + std::to_string(o.layer) +
                           "): qk_norm and the q/k norm weights disagree");
  }
  // qkv_bias takes all three biases; without it, none.
  const bool all_qkv_bias = w.q_bias != kNoValue && w.k_bias != kNoValue && w.v_bias != kNoValue;
  const bool any_qkv_bias = w.q_bias != kNoValue || w.k_bias != kNoValue || w.v_bias != kNoValue;
  if (o.qkv_bias ? !all_qkv_bias : any_qkv_bias) {
    return InvalidArgument("attention (layer " + std::to_string(o.layer) +
                           "): qkv_bias and the q/k/v bias weights disagree");
  }
  if (o.o_bias != (w.o_bias != kNoValue)) {
    return InvalidArgument("attention (layer " + std::to_string(o.layer) +
                           "): o_bias and the o bias weight disagree");
  }
  if (o.sinks != (w.sinks != kNoValue)) {
    return InvalidArgument("attention (layer " + std::to_string(o.layer) +
                           "): sinks and the sinks weight disagree");
  }
  const ValueId meta = b.meta();
  const RmsNormParams eps{.eps = o.norm_eps};
  ValueId q = b.Add1("linear", {x, w.q}, {}, l + "q");
  ValueId k = b.Add1("linear", {x, w.k}, {}, l + "k");
  ValueId v = b.Add1("linear", {x, w.v}, {}, l + "v");
  if (o.qkv_bias) {
    q = b.Add1("bias_add", {q, w.q_bias}, {}, l + "q_bias");
    k = b.Add1("bias_add", {k, w.k_bias}, {}, l + "k_bias");
    v = b.Add1("bias_add", {v, w.v_bias}, {}, l + "v_bias");
  }
  if (o.qk_norm) {
    q = b.Add1("rms_norm", {q, w.q_norm}, eps, l + "q_norm");
    k = b.Add1("rms_norm", {k, w.k_norm}, eps, l + "k_norm");
  }
  // A whole-head, rotate-half rope carries neither attribute (rotary_dim 0 is head_dim).
  const int64_t rotary_dim = RotaryDim(o);
  MG_ASSIGN_OR_RETURN(const RopeOpScaling scaling, RopeScalingForOp(o.rope, rotary_dim));
  const RopeParams rope{.head_dim = o.head_dim,
                        .theta = o.rope.theta,
                        .rotary_dim = rotary_dim == o.head_dim ? 0 : rotary_dim,
                        .interleaved = o.rope_interleaved ? 1 : 0,
                        .scaling = scaling.scaling,
                        .factor = scaling.factor,
                        .ramp_low = scaling.ramp_low,
                        .ramp_high = scaling.ramp_high,
                        .attention_factor = scaling.attention_factor};
  q = b.Add1("rope", {meta, q}, rope, l + "q_rope");
  k = b.Add1("rope", {meta, k}, rope, l + "k_rope");
  const double scale = o.scale != 0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(o.head_dim));
  std::vector<ValueId> attn_in = {meta, q, k, v};
  if (o.sinks) attn_in.push_back(w.sinks);
  ValueId attn = b.Add1("attention", attn_in,
                        AttentionParams{.layer = o.layer,
                                        .num_heads = o.num_heads,
                                        .num_kv_heads = o.num_kv_heads,
                                        .head_dim = o.head_dim,
                                        .scale = scale,
                                        .window = o.sliding_window},
                        l + "attn");
  ValueId out = b.Add1("linear", {attn, w.o}, {}, l + "o");
  if (o.o_bias) out = b.Add1("bias_add", {out, w.o_bias}, {}, l + "o_bias");
  return out;
}

// ---- Multi-head latent attention ---------------------------------------------

StatusOr<ValueId> BuildMlaAttention(GraphBuilder& b, const MlaOptions& o, const MlaWeights& w,
                                    ValueId x, const std::string& l) {
  const std::string block = "mla attention (layer " + std::to_string(o.layer) + ")";
  if (o.num_heads <= 0 || o.kv_lora_rank <= 0 || o.qk_nope_head_dim <= 0 ||
      o.qk_rope_head_dim <= 0 || o.qk_rope_head_dim % 2 != 0 || o.v_head_dim <= 0 ||
      o.q_lora_rank < 0) {
    return InvalidArgument(Format(
        "{}: num_heads ({}), kv_lora_rank ({}), qk_nope_head_dim ({}), v_head_dim ({}) must be "
        "positive, qk_rope_head_dim ({}) positive and even, q_lora_rank ({}) >= 0",
        block, o.num_heads, o.kv_lora_rank, o.qk_nope_head_dim, o.v_head_dim, o.qk_rope_head_dim,
        o.q_lora_rank));
  }
  if (o.rope.partial_rotary_factor != 1.0) {
    return InvalidArgument(
        Format("{}: rope.partial_rotary_factor = {}; MLA rotates whole qk_rope_head_dim heads",
               block, o.rope.partial_rotary_factor));
  }
  if (o.rope.type == RopeType::kDynamic) {
    return NeedsOp(block, "rope.type = dynamic",
                   "dynamic NTK RoPE rescales theta with the sequence length; the rope op "
                   "rotates by one fixed table (linear, yarn and llama3 run)");
  }
  // q_pe and k_pe rotate with the scaled table and its attention factor (cos and sin times it,
  // as transformers' DeepseekV3RotaryEmbedding); the softmax scale's mscale is the caller's.
  MG_ASSIGN_OR_RETURN(const RopeOpScaling scaling, RopeScalingForOp(o.rope, o.qk_rope_head_dim));
  const bool lora = o.q_lora_rank > 0;
  if (lora != (w.q_a != kNoValue && w.q_a_norm != kNoValue && w.q_b != kNoValue) ||
      lora == (w.q != kNoValue) || w.kv_a == kNoValue || w.kv_a_norm == kNoValue ||
      w.kv_b == kNoValue || w.o == kNoValue || o.qkv_bias != (w.kv_a_bias != kNoValue) ||
      (o.qkv_bias && lora) != (w.q_bias != kNoValue) || o.o_bias != (w.o_bias != kNoValue)) {
    return InvalidArgument(
        block +
        ": the weights disagree with the options (q_lora_rank: q_a/q_a_norm/"
        "q_b, else q; kv_a, kv_a_norm, kv_b, o always; qkv_bias: kv_a's bias and, "
        "with q_lora_rank, q_a's; o_bias: o's)");
  }
  const ValueId meta = b.meta();
  const RmsNormParams eps{.eps = o.norm_eps};
  const int64_t nope = o.qk_nope_head_dim, rope_dim = o.qk_rope_head_dim;
  ValueId q;
  if (lora) {
    ValueId qa = b.Add1("linear", {x, w.q_a}, {}, l + "q_a");
    if (o.qkv_bias) qa = b.Add1("bias_add", {qa, w.q_bias}, {}, l + "q_a_bias");
    qa = b.Add1("rms_norm", {qa, w.q_a_norm}, eps, l + "q_a_norm");
    q = b.Add1("linear", {qa, w.q_b}, {}, l + "q");
  } else {
    q = b.Add1("linear", {x, w.q}, {}, l + "q");
  }
  // Each head's [nope | rope] columns apart; the latent from the shared rope key.
  const std::vector<ValueId> q_parts = b.Add(
      "split_cols", {q}, SplitColsParams{.group = nope + rope_dim, .first = nope}, l + "q_parts");
  ValueId kv = b.Add1("linear", {x, w.kv_a}, {}, l + "kv_a");
  if (o.qkv_bias) kv = b.Add1("bias_add", {kv, w.kv_a_bias}, {}, l + "kv_a_bias");
  const std::vector<ValueId> kv_parts = b.Add(
      "split_cols", {kv},
      SplitColsParams{.group = o.kv_lora_rank + rope_dim, .first = o.kv_lora_rank}, l + "kv_parts");
  if (q_parts.size() != 2 || kv_parts.size() != 2) {
    return Internal(block + ": split_cols did not build");
  }
  const ValueId latent = b.Add1("rms_norm", {kv_parts[0], w.kv_a_norm}, eps, l + "latent");
  // Both q_pe and k_pe rotate whole rope-sized heads; transformers' rope_interleave output
  // is de-interleaved ([evens | odds]), a permutation shared by q and k that leaves every
  // score as GPT-J pairs in place give.
  const RopeParams rope{.head_dim = rope_dim,
                        .theta = o.rope.theta,
                        .interleaved = o.rope_interleaved ? 1 : 0,
                        .scaling = scaling.scaling,
                        .factor = scaling.factor,
                        .ramp_low = scaling.ramp_low,
                        .ramp_high = scaling.ramp_high,
                        .attention_factor = scaling.attention_factor};
  const ValueId q_pe = b.Add1("rope", {meta, q_parts[1]}, rope, l + "q_pe_rope");
  const ValueId k_pe = b.Add1("rope", {meta, kv_parts[1]}, rope, l + "k_pe_rope");
  const double scale =
      o.scale != 0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(nope + rope_dim));
  ValueId attn = b.Add1("mla_attention", {meta, q_parts[0], q_pe, latent, k_pe, w.kv_b},
                        MlaAttentionParams{.layer = o.layer,
                                           .num_heads = o.num_heads,
                                           .kv_lora_rank = o.kv_lora_rank,
                                           .qk_nope_head_dim = nope,
                                           .qk_rope_head_dim = rope_dim,
                                           .v_head_dim = o.v_head_dim,
                                           .scale = scale},
                        l + "attn");
  ValueId out = b.Add1("linear", {attn, w.o}, {}, l + "o");
  if (o.o_bias) out = b.Add1("bias_add", {out, w.o_bias}, {}, l + "o_bias");
  return out;
}

// ---- MLP ---------------------------------------------------------------------

Status CheckMlpOptions(const MlpOptions& o, const std::string& what) {
  if (o.activation == Activation::kGeluTanh) {
    return NeedsOp(what, "activation = gelu_pytorch_tanh",
                   "GeGLU needs a gelu_tanh_mul op (the Gemma family issue)");
  }
  if (o.activation == Activation::kClampedSwiglu) {
    return NeedsOp(what, "activation = clamped_swiglu",
                   "clamped SwiGLU needs a clamped_swiglu op with alpha and limit (the GPT-OSS "
                   "family issue)");
  }
  if (!o.gated) {
    return NeedsOp(what, "gated = false", "an ungated MLP needs an elementwise activation op");
  }
  return Status::Ok();
}

StatusOr<ValueId> BuildMlp(GraphBuilder& b, const MlpOptions& o, const MlpWeights& w, ValueId x,
                           const std::string& name) {
  const std::string what = "MLP '" + name + "'";
  MG_RETURN_IF_ERROR(CheckMlpOptions(o, what));
  // bias takes all three biases; without it, none.
  const bool all_bias = w.gate_bias != kNoValue && w.up_bias != kNoValue && w.down_bias != kNoValue;
  const bool any_bias = w.gate_bias != kNoValue || w.up_bias != kNoValue || w.down_bias != kNoValue;
  if (o.bias ? !all_bias : any_bias) {
    return InvalidArgument(what + ": bias and the gate/up/down bias weights disagree");
  }
  if (!o.bias) return b.Add1("mlp", {b.meta(), x, w.gate, w.up, w.down}, {}, name);
  return b.Add1("mlp", {b.meta(), x, w.gate, w.up, w.down, w.gate_bias, w.up_bias, w.down_bias}, {},
                name);
}

// ---- MoE ---------------------------------------------------------------------

Status CheckMoeOptions(const MoeOptions& o) {
  const std::string block = "MoE";
  if (o.num_experts <= 0 || o.top_k < 1 || o.top_k > o.num_experts) {
    return InvalidArgument(block + ": top_k (" + std::to_string(o.top_k) + ") must be in [1, " +
                           "num_experts = " + std::to_string(o.num_experts) + "]");
  }
  if (o.scoring != RouteScoring::kSoftmax && o.scoring != RouteScoring::kSigmoid) {
    return InvalidArgument(block + ": scoring " + std::to_string(static_cast<int64_t>(o.scoring)) +
                           " is neither softmax nor sigmoid");
  }
  if (o.num_groups < 1 || o.num_groups > kMaxRouteGroups || o.num_experts % o.num_groups != 0) {
    return InvalidArgument(block + ": num_groups (" + std::to_string(o.num_groups) +
                           ") must divide num_experts (" + std::to_string(o.num_experts) +
                           ") and be at most " + std::to_string(kMaxRouteGroups));
  }
  const int64_t group_size = o.num_experts / o.num_groups;
  if (o.num_groups > 1 && group_size < 2) {
    return InvalidArgument(block + ": num_groups (" + std::to_string(o.num_groups) +
                           ") leaves one expert per group; a group is scored by its top two");
  }
  if (o.top_k_groups < 0 || o.top_k_groups > o.num_groups) {
    return InvalidArgument(block + ": top_k_groups (" + std::to_string(o.top_k_groups) +
                           ") must be in [1, num_groups = " + std::to_string(o.num_groups) +
                           "] (0: all groups)");
  }
  const int64_t kept_groups = o.top_k_groups > 0 ? o.top_k_groups : o.num_groups;
  if (o.top_k > kept_groups * group_size) {
    return InvalidArgument(
        block + ": top_k (" + std::to_string(o.top_k) + ") exceeds the " +
        std::to_string(kept_groups * group_size) + " experts of the kept groups (top_k_groups = " +
        std::to_string(kept_groups) + " of " + std::to_string(group_size) + " experts)");
  }
  if (!(o.routed_scaling_factor > 0.0) || !std::isfinite(o.routed_scaling_factor)) {
    return InvalidArgument(block + ": routed_scaling_factor (" +
                           std::to_string(o.routed_scaling_factor) + ") must be finite and > 0");
  }
  if (!(o.norm_min >= 0.0) || !std::isfinite(o.norm_min)) {
    return InvalidArgument(block + ": norm_min (" + std::to_string(o.norm_min) +
                           ") must be finite and >= 0");
  }
  if (o.norm_min > 0.0 && !o.norm_topk_prob) {
    return InvalidArgument(block + ": norm_min (" + std::to_string(o.norm_min) +
                           ") needs norm_topk_prob");
  }
  const bool clamped = o.expert_mlp.activation == Activation::kClampedSwiglu;
  if (!clamped && o.router_bias) {
    return NeedsOp(block, "router_bias", std::string("router bias ") + kBiasOp);
  }
  if (!clamped && o.expert_bias) {
    return NeedsOp(block, "expert_bias",
                   "expert biases on SiLU experts need bias operands on the grouped GEMMs (only "
                   "the clamped SwiGLU experts take them)");
  }
  if (clamped) {
    if (o.router_bias != o.expert_bias) {
      return InvalidArgument(block +
                             ": clamped SwiGLU experts take router_bias and expert_bias "
                             "together or neither");
    }
    if (o.score_correction_bias || o.shared_expert) {
      return InvalidArgument(block +
                             ": clamped SwiGLU experts take no correction bias or "
                             "shared expert");
    }
    if (!(o.swiglu_limit > 0.0) || !std::isfinite(o.swiglu_limit) ||
        !std::isfinite(o.swiglu_alpha)) {
      return InvalidArgument(block + ": swiglu_limit must be finite and > 0, swiglu_alpha finite");
    }
  } else {
    MG_RETURN_IF_ERROR(CheckMlpOptions(o.expert_mlp, "MoE experts"));
  }
  if (o.expert_mlp.bias) {
    return NeedsOp(block, "expert_mlp.bias",
                   "expert biases need bias operands on the moe op and the grouped GEMMs (the "
                   "GPT-OSS family issue)");
  }
  if (o.shared_expert) MG_RETURN_IF_ERROR(CheckMlpOptions(o.shared_mlp, "MoE shared expert"));
  if (o.shared_expert_gate && !o.shared_expert) {
    return InvalidArgument("MoE: shared_expert_gate without shared_expert");
  }
  return Status::Ok();
}

StatusOr<ValueId> BuildMoe(GraphBuilder& b, const MoeOptions& o, const MoeWeights& w, ValueId x,
                           const std::string& name) {
  MG_RETURN_IF_ERROR(CheckMoeOptions(o));
  if (o.shared_expert_gate != (w.shared_gate != kNoValue)) {
    return InvalidArgument("MoE '" + name +
                           "': shared_expert_gate and the shared-expert gate weight disagree");
  }
  if (o.score_correction_bias != (w.correction_bias != kNoValue)) {
    return InvalidArgument("MoE '" + name +
                           "': score_correction_bias and the correction bias weight disagree");
  }
  const TopkRouteParams route{.top_k = o.top_k,
                              .norm_topk_prob = o.norm_topk_prob ? 1 : 0,
                              .scoring = static_cast<int64_t>(o.scoring),
                              .num_groups = o.num_groups,
                              .top_k_groups = o.top_k_groups,
                              .routed_scaling_factor = o.routed_scaling_factor,
                              .norm_min = o.norm_min};
  // Attributes, not the struct: an unchunked moe op carries no row_offset (moe-chunk adds it
  // per chunk; its presence marks a chunk). The options at their defaults are not written.
  AttrMap attrs = ParamsToAttrs(route);
  attrs.erase("row_offset");
  std::vector<ValueId> operands = {b.meta(), x, w.router, w.gate, w.up, w.down};
  if (o.score_correction_bias) operands.push_back(w.correction_bias);
  if (o.expert_mlp.activation == Activation::kClampedSwiglu) {
    const MoeParams moe{route, static_cast<int64_t>(ExpertActivation::kClampedSwiglu),
                        o.swiglu_alpha, o.swiglu_limit, o.out_major ? 1 : 0};
    attrs = ParamsToAttrs(moe);
    attrs.erase("row_offset");
    operands = {b.meta(), x, w.router, w.gate_up, w.down};
    if (o.router_bias) {
      if (w.router_bias == kNoValue || w.gate_up_bias == kNoValue || w.down_bias == kNoValue) {
        return InvalidArgument("MoE '" + name + "': router_bias / expert_bias without the weights");
      }
      operands.insert(operands.end(), {w.router_bias, w.gate_up_bias, w.down_bias});
    }
  }
  ValueId routed = b.Add1("moe", operands, attrs, name);
  if (!o.shared_expert) return routed;
  // The shared expert is an ordinary MLP and takes %meta like every other one.
  MG_ASSIGN_OR_RETURN(ValueId shared, BuildMlp(b, o.shared_mlp, w.shared, x, name + ".shared"));
  if (o.shared_expert_gate) {
    shared = b.Add1("sigmoid_gate_mul", {x, w.shared_gate, shared}, {}, name + ".shared_gated");
  }
  return b.Add1("add", {routed, shared}, {}, name + ".sum");
}

}  // namespace moegraph
