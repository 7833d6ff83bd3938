// GLM4-MoE: the shared decoder skeleton (partial rotary, optional q/k/v biases and q/k norm)
// with dense SwiGLU MLPs in the first first_k_dense_replace layers and, after them, MoE blocks:
// a sigmoid group-limited router whose correction bias moves only the choice, routed scaling,
// and a shared expert.
#include "frontends/glm4_moe.h"

#include "frontends/decoder.h"

namespace moegraph {
namespace {

DecoderAttention Glm4MoeAttention(const Glm4MoeConfig& c) {
  return {.qk_norm = c.use_qk_norm, .qkv_bias = c.attention_bias};
}

MoeOptions Glm4MoeRouter(const Glm4MoeConfig& c) {
  MoeOptions moe;
  moe.num_experts = c.n_routed_experts;
  moe.top_k = c.num_experts_per_tok;
  moe.scoring = RouteScoring::kSigmoid;
  moe.num_groups = c.n_group;
  moe.top_k_groups = c.topk_group;
  moe.score_correction_bias = true;
  moe.routed_scaling_factor = c.routed_scaling_factor;
  moe.norm_topk_prob = c.norm_topk_prob;
  // Glm4MoeTopkRouter (and DeepseekV3TopkRouter) divides by sum + 1e-20: max(sum, 1e-20) for
  // the positive sums sigmoid scores give, to f32 precision.
  moe.norm_min = c.norm_topk_prob ? 1e-20 : 0.0;
  moe.shared_expert = true;
  return moe;
}

}  // namespace

StatusOr<ValueId> BuildGlm4MoeFeedForward(DecoderBuilder& d, const Glm4MoeConfig& c, int64_t layer,
                                          const std::string& p, const std::string& l, ValueId x) {
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  const int64_t hidden = c.hidden_size;
  auto mlp = [&](const std::string& prefix, int64_t inter) -> StatusOr<MlpWeights> {
    MlpWeights mlp_w;
    MG_ASSIGN_OR_RETURN(mlp_w.gate, w.Plain(prefix + "gate_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.up, w.Plain(prefix + "up_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.down, w.Plain(prefix + "down_proj.weight", {hidden, inter}));
    return mlp_w;
  };
  if (!c.IsMoeLayer(layer)) {
    MG_ASSIGN_OR_RETURN(MlpWeights dense, mlp(p + "mlp.", c.intermediate_size));
    return BuildMlp(b, {}, dense, x, l + "mlp");
  }
  const int64_t experts = c.n_routed_experts;
  MoeWeights moe_w;
  MG_ASSIGN_OR_RETURN(moe_w.router, w.Plain(p + "mlp.gate.weight", {experts, hidden}));
  MG_ASSIGN_OR_RETURN(moe_w.correction_bias,
                      w.Plain(p + "mlp.gate.e_score_correction_bias", {experts}));
  MG_ASSIGN_OR_RETURN(ExpertWeights routed,
                      w.Experts(p + "mlp.", experts, c.moe_intermediate_size, hidden));
  moe_w.gate = routed.gate;
  moe_w.up = routed.up;
  moe_w.down = routed.down;
  MG_ASSIGN_OR_RETURN(moe_w.shared,
                      mlp(p + "mlp.shared_experts.", c.moe_intermediate_size * c.n_shared_experts));
  return BuildMoe(b, Glm4MoeRouter(c), moe_w, x, l + "moe");
}

StatusOr<Graph> BuildGlm4MoeGraph(const Glm4MoeConfig& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, "glm4_moe");
  auto ffn = [&](int64_t layer, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    return BuildGlm4MoeFeedForward(d, c, layer, p, l, x);
  };
  return std::move(d).Build(Glm4MoeAttention(c), ffn);
}

std::vector<WeightSpec> Glm4MoeWeightList(const Glm4MoeConfig& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size;
  return DecoderWeightList(
      c, Glm4MoeAttention(c), [&](int64_t layer, const std::string& p, std::vector<WeightSpec>& w) {
        auto mlp = [&](const std::string& prefix, int64_t inter) {
          w.push_back({prefix + "gate_proj.weight", {inter, hidden}, kLinear});
          w.push_back({prefix + "up_proj.weight", {inter, hidden}, kLinear});
          w.push_back({prefix + "down_proj.weight", {hidden, inter}, kLinear});
        };
        if (!c.IsMoeLayer(layer)) return mlp(p + "mlp.", c.intermediate_size);
        // f32 in every checkpoint (_keep_in_fp32_modules_strict).
        w.push_back({p + "mlp.gate.weight",
                     {c.n_routed_experts, hidden},
                     kLinear,
                     /*keep_f32=*/true});
        w.push_back({p + "mlp.gate.e_score_correction_bias",
                     {c.n_routed_experts},
                     kBias,
                     /*keep_f32=*/true});
        for (int64_t e = 0; e < c.n_routed_experts; ++e)
          mlp(p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size);
        mlp(p + "mlp.shared_experts.", c.moe_intermediate_size * c.n_shared_experts);
      });
}

}  // namespace moegraph
