// Qwen2-MoE: the shared decoder skeleton with optional q/k/v projection biases (no q/k norm),
// and per layer (Qwen3-MoE's rule) either a sparse MoE block (softmax top-k router, SwiGLU
// experts, a shared expert under a sigmoid gate) or a dense SwiGLU MLP.
#include "frontends/qwen2_moe.h"

#include "frontends/decoder.h"

namespace moegraph {

StatusOr<Graph> BuildQwen2MoeGraph(const Qwen2MoeConfig& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, "qwen2_moe");
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  const int64_t hidden = c.hidden_size;
  auto mlp = [&](const std::string& p, int64_t inter) -> StatusOr<MlpWeights> {
    MlpWeights mlp_w;
    MG_ASSIGN_OR_RETURN(mlp_w.gate, w.Plain(p + "gate_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.up, w.Plain(p + "up_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.down, w.Plain(p + "down_proj.weight", {hidden, inter}));
    return mlp_w;
  };
  auto ffn = [&](int64_t layer, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    if (!c.IsMoeLayer(layer)) {
      MG_ASSIGN_OR_RETURN(MlpWeights mlp_w, mlp(p + "mlp.", c.intermediate_size));
      return BuildMlp(b, {}, mlp_w, x, l + "mlp");
    }
    MoeWeights moe_w;
    MG_ASSIGN_OR_RETURN(moe_w.router, w.Plain(p + "mlp.gate.weight", {c.num_experts, hidden}));
    MG_ASSIGN_OR_RETURN(ExpertWeights experts,
                        w.Experts(p + "mlp.", c.num_experts, c.moe_intermediate_size, hidden));
    moe_w.gate = experts.gate;
    moe_w.up = experts.up;
    moe_w.down = experts.down;
    MG_ASSIGN_OR_RETURN(moe_w.shared,
                        mlp(p + "mlp.shared_expert.", c.shared_expert_intermediate_size));
    MG_ASSIGN_OR_RETURN(moe_w.shared_gate,
                        w.Plain(p + "mlp.shared_expert_gate.weight", {1, hidden}));
    MoeOptions moe;
    moe.num_experts = c.num_experts;
    moe.top_k = c.num_experts_per_tok;
    moe.norm_topk_prob = c.norm_topk_prob;
    moe.shared_expert = true;
    moe.shared_expert_gate = true;
    return BuildMoe(b, moe, moe_w, x, l + "moe");
  };
  return std::move(d).Build(DecoderAttention{.qkv_bias = c.qkv_bias}, ffn);
}

std::vector<WeightSpec> Qwen2MoeWeightList(const Qwen2MoeConfig& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size;
  auto mlp = [&](const std::string& p, int64_t inter, std::vector<WeightSpec>& w) {
    w.push_back({p + "gate_proj.weight", {inter, hidden}, kLinear});
    w.push_back({p + "up_proj.weight", {inter, hidden}, kLinear});
    w.push_back({p + "down_proj.weight", {hidden, inter}, kLinear});
  };
  return DecoderWeightList(
      c, DecoderAttention{.qkv_bias = c.qkv_bias},
      [&](int64_t layer, const std::string& p, std::vector<WeightSpec>& w) {
        if (!c.IsMoeLayer(layer)) return mlp(p + "mlp.", c.intermediate_size, w);
        w.push_back({p + "mlp.gate.weight", {c.num_experts, hidden}, kLinear});
        for (int64_t e = 0; e < c.num_experts; ++e) {
          mlp(p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size, w);
        }
        mlp(p + "mlp.shared_expert.", c.shared_expert_intermediate_size, w);
        w.push_back({p + "mlp.shared_expert_gate.weight", {1, hidden}, kLinear});
      });
}

}  // namespace moegraph
