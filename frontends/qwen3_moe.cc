// Qwen3-MoE and dense Qwen3: the shared decoder skeleton with q/k RMSNorm, and per layer a
// sparse MoE block (softmax top-k router, SwiGLU experts) or a dense SwiGLU MLP.
#include "frontends/qwen3_moe.h"

#include "frontends/decoder.h"

namespace moegraph {

StatusOr<Graph> BuildQwen3MoeGraph(const Qwen3MoeConfig& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, c.num_experts > 0 ? "qwen3_moe" : "qwen3");
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  const int64_t hidden = c.hidden_size;
  auto ffn = [&](int64_t layer, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    if (c.IsMoeLayer(layer)) {
      MoeWeights moe_w;
      MG_ASSIGN_OR_RETURN(moe_w.router, w.Plain(p + "mlp.gate.weight", {c.num_experts, hidden}));
      MG_ASSIGN_OR_RETURN(ExpertWeights experts,
                          w.Experts(p + "mlp.", c.num_experts, c.moe_intermediate_size, hidden));
      moe_w.gate = experts.gate;
      moe_w.up = experts.up;
      moe_w.down = experts.down;
      MoeOptions moe;
      moe.num_experts = c.num_experts;
      moe.top_k = c.num_experts_per_tok;
      moe.norm_topk_prob = c.norm_topk_prob;
      return BuildMoe(b, moe, moe_w, x, l + "moe");
    }
    const int64_t inter = c.intermediate_size;
    MlpWeights mlp_w;
    MG_ASSIGN_OR_RETURN(mlp_w.gate, w.Plain(p + "mlp.gate_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.up, w.Plain(p + "mlp.up_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.down, w.Plain(p + "mlp.down_proj.weight", {hidden, inter}));
    return BuildMlp(b, {}, mlp_w, x, l + "mlp");
  };
  return std::move(d).Build(/*qk_norm=*/true, ffn);
}

std::vector<WeightSpec> Qwen3MoeWeightList(const Qwen3MoeConfig& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size;
  return DecoderWeightList(
      c, /*qk_norm=*/true, [&](int64_t layer, const std::string& p, std::vector<WeightSpec>& w) {
        if (c.IsMoeLayer(layer)) {
          const int64_t inter = c.moe_intermediate_size;
          w.push_back({p + "mlp.gate.weight", {c.num_experts, hidden}, kLinear});
          for (int64_t e = 0; e < c.num_experts; ++e) {
            const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
            w.push_back({ep + "gate_proj.weight", {inter, hidden}, kLinear});
            w.push_back({ep + "up_proj.weight", {inter, hidden}, kLinear});
            w.push_back({ep + "down_proj.weight", {hidden, inter}, kLinear});
          }
        } else {
          const int64_t inter = c.intermediate_size;
          w.push_back({p + "mlp.gate_proj.weight", {inter, hidden}, kLinear});
          w.push_back({p + "mlp.up_proj.weight", {inter, hidden}, kLinear});
          w.push_back({p + "mlp.down_proj.weight", {hidden, inter}, kLinear});
        }
      });
}

}  // namespace moegraph
