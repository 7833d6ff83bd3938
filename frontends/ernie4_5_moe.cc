// Ernie 4.5 MoE: the shared decoder skeleton with interleaved RoPE (no q/k norm), and per layer a
// sparse MoE block or a dense SwiGLU MLP. The router is softmax top-k whose choice adds
// moe_statics.e_score_correction_bias and whose weights (the unbiased softmax) are divided by
// max(sum, moe_norm_min); moe_num_shared_experts shared experts are one MLP. use_bias puts biases
// on q/k/v/o, on the dense and shared-expert MLPs and on lm_head, never on the routed experts.
#include "frontends/ernie4_5_moe.h"

#include "frontends/decoder.h"

namespace moegraph {
namespace {

DecoderAttention ErnieAttention(const Ernie4_5_MoeConfig& c) {
  return {.qkv_bias = c.use_bias,
          .o_bias = c.use_bias,
          .lm_head_bias = c.use_bias,
          .rope_interleaved = true};
}

// The gated MLP's weights under `p` ("model.layers.0.mlp." or
// "model.layers.1.mlp.shared_experts."), with its three biases under use_bias.
StatusOr<MlpWeights> LoadMlp(WeightLoader& w, const std::string& p, int64_t inter, int64_t hidden,
                             bool bias) {
  MlpWeights m;
  MG_ASSIGN_OR_RETURN(m.gate, w.Plain(p + "gate_proj.weight", {inter, hidden}));
  MG_ASSIGN_OR_RETURN(m.up, w.Plain(p + "up_proj.weight", {inter, hidden}));
  MG_ASSIGN_OR_RETURN(m.down, w.Plain(p + "down_proj.weight", {hidden, inter}));
  if (bias) {
    MG_ASSIGN_OR_RETURN(m.gate_bias, w.Plain(p + "gate_proj.bias", {inter}));
    MG_ASSIGN_OR_RETURN(m.up_bias, w.Plain(p + "up_proj.bias", {inter}));
    MG_ASSIGN_OR_RETURN(m.down_bias, w.Plain(p + "down_proj.bias", {hidden}));
  }
  return m;
}

void ListMlp(std::vector<WeightSpec>& w, const std::string& p, int64_t inter, int64_t hidden,
             bool bias) {
  using enum WeightInit;
  w.push_back({p + "gate_proj.weight", {inter, hidden}, kLinear});
  w.push_back({p + "up_proj.weight", {inter, hidden}, kLinear});
  w.push_back({p + "down_proj.weight", {hidden, inter}, kLinear});
  if (!bias) return;
  w.push_back({p + "gate_proj.bias", {inter}, kBias});
  w.push_back({p + "up_proj.bias", {inter}, kBias});
  w.push_back({p + "down_proj.bias", {hidden}, kBias});
}

}  // namespace

StatusOr<Graph> BuildErnie4_5_MoeGraph(const Ernie4_5_MoeConfig& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, "ernie4_5_moe");
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  const int64_t hidden = c.hidden_size, experts = c.moe_num_experts;
  auto ffn = [&](int64_t layer, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    const std::string mlp = p + "mlp.";
    const MlpOptions mlp_options{.bias = c.use_bias};
    if (!c.IsMoeLayer(layer)) {
      MG_ASSIGN_OR_RETURN(MlpWeights dense,
                          LoadMlp(w, mlp, c.intermediate_size, hidden, c.use_bias));
      return BuildMlp(b, mlp_options, dense, x, l + "mlp");
    }
    MoeWeights moe_w;
    MG_ASSIGN_OR_RETURN(moe_w.router, w.Plain(mlp + "gate.weight", {experts, hidden}));
    // Published checkpoints keep the bias beside the router; transformers' in-memory layout
    // moves it under it.
    const std::string bias = mlp + (w.Has(mlp + "moe_statics.e_score_correction_bias")
                                        ? "moe_statics.e_score_correction_bias"
                                        : "gate.moe_statics.e_score_correction_bias");
    MG_ASSIGN_OR_RETURN(moe_w.correction_bias, w.Squeezed(bias, {1, experts}, {experts}));
    MG_ASSIGN_OR_RETURN(ExpertWeights e, w.Experts(mlp, experts, c.moe_intermediate_size, hidden));
    moe_w.gate = e.gate;
    moe_w.up = e.up;
    moe_w.down = e.down;
    MoeOptions moe;
    moe.num_experts = experts;
    moe.top_k = c.moe_k;
    moe.scoring = RouteScoring::kSoftmax;
    moe.score_correction_bias = true;
    moe.norm_topk_prob = true;  // Ernie4_5_MoeTopKRouter always renormalises, clamped
    moe.norm_min = c.moe_norm_min;
    if (c.moe_num_shared_experts > 0) {
      // The shared experts are one MLP of moe_intermediate_size * moe_num_shared_experts.
      moe.shared_expert = true;
      moe.shared_mlp = mlp_options;
      MG_ASSIGN_OR_RETURN(moe_w.shared, LoadMlp(w, mlp + "shared_experts.",
                                                c.moe_intermediate_size * c.moe_num_shared_experts,
                                                hidden, c.use_bias));
    }
    return BuildMoe(b, moe, moe_w, x, l + "moe");
  };
  return std::move(d).Build(ErnieAttention(c), ffn);
}

std::vector<WeightSpec> Ernie4_5_MoeWeightList(const Ernie4_5_MoeConfig& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size, experts = c.moe_num_experts;
  return DecoderWeightList(
      c, ErnieAttention(c), [&](int64_t layer, const std::string& p, std::vector<WeightSpec>& w) {
        const std::string mlp = p + "mlp.";
        if (!c.IsMoeLayer(layer)) {
          ListMlp(w, mlp, c.intermediate_size, hidden, c.use_bias);
          return;
        }
        w.push_back({mlp + "gate.weight", {experts, hidden}, kLinear, /*keep_f32=*/true});
        w.push_back(
            {mlp + "moe_statics.e_score_correction_bias", {1, experts}, kBias, /*keep_f32=*/true});
        const int64_t inter = c.moe_intermediate_size;
        for (int64_t e = 0; e < experts; ++e) {
          const std::string ep = mlp + "experts." + std::to_string(e) + ".";
          w.push_back({ep + "gate_proj.weight", {inter, hidden}, kLinear});
          w.push_back({ep + "up_proj.weight", {inter, hidden}, kLinear});
          w.push_back({ep + "down_proj.weight", {hidden, inter}, kLinear});
        }
        if (c.moe_num_shared_experts > 0) {
          ListMlp(w, mlp + "shared_experts.", inter * c.moe_num_shared_experts, hidden, c.use_bias);
        }
      });
}

}  // namespace moegraph
