// GPT-OSS: the shared decoder skeleton with q/k/v/o biases, attention sinks and per-layer
// sliding windows (layer_types), and in every layer a MoE block: a router with a bias, softmax
// over the top-k logits, and clamped SwiGLU experts with biases over transformers' [in, out]
// fused weights (interleaved gate/up columns).
#include "frontends/gpt_oss.h"

#include "frontends/decoder.h"

namespace moegraph {
namespace {

DecoderAttention GptOssAttention(const GptOssConfig& c) {
  DecoderAttention attention{
      .qkv_bias = c.attention_bias, .o_bias = c.attention_bias, .sinks = true};
  attention.layer_windows.assign(static_cast<size_t>(c.num_hidden_layers), 0);
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    if (c.IsSlidingLayer(layer))
      attention.layer_windows[static_cast<size_t>(layer)] = c.sliding_window;
  }
  return attention;
}

MoeOptions GptOssRouter(const GptOssConfig& c) {
  MoeOptions moe;
  moe.num_experts = c.num_local_experts;
  moe.top_k = c.num_experts_per_tok;
  // GptOssTopKRouter: softmax over the top-k logits, which is the softmax over all experts
  // renormalised over the chosen ones.
  moe.norm_topk_prob = true;
  moe.router_bias = true;
  moe.expert_bias = true;
  moe.swiglu_alpha = c.swiglu_alpha;
  moe.swiglu_limit = c.swiglu_limit;
  moe.expert_mlp.activation = Activation::kClampedSwiglu;
  return moe;
}

}  // namespace

StatusOr<Graph> BuildGptOssGraph(const GptOssConfig& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, "gpt_oss");
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  const int64_t hidden = c.hidden_size;
  const int64_t experts = c.num_local_experts;
  const int64_t inter = c.intermediate_size;
  auto ffn = [&](int64_t /*layer*/, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    MoeWeights moe_w;
    MoeOptions moe = GptOssRouter(c);
    MG_ASSIGN_OR_RETURN(moe_w.router, w.Plain(p + "mlp.router.weight", {experts, hidden}));
    MG_ASSIGN_OR_RETURN(moe_w.router_bias, w.Plain(p + "mlp.router.bias", {experts}));
    const std::string gate_up = p + "mlp.experts.gate_up_proj", down = p + "mlp.experts.down_proj";
    // The published MXFP4 checkpoints store [out, in] experts (gate_up rows interleaved);
    // transformers' bf16 ones [in, out] stacks (every row of each expert: FusedRows marks
    // them stacked).
    moe.out_major = w.quantization().scheme == QuantScheme::kMxfp4 && w.Has(gate_up + "_blocks");
    auto experts_weight = [&](const std::string& name, int64_t in,
                              int64_t out) -> StatusOr<ValueId> {
      if (moe.out_major) return w.Mxfp4Experts(name, {experts, out, in});
      return w.FusedRows(name, {experts, in, out}, 0, in);
    };
    MG_ASSIGN_OR_RETURN(moe_w.gate_up, experts_weight(gate_up, hidden, 2 * inter));
    MG_ASSIGN_OR_RETURN(moe_w.gate_up_bias, w.Plain(gate_up + "_bias", {experts, 2 * inter}));
    MG_ASSIGN_OR_RETURN(moe_w.down, experts_weight(down, inter, hidden));
    MG_ASSIGN_OR_RETURN(moe_w.down_bias, w.Plain(down + "_bias", {experts, hidden}));
    return BuildMoe(b, moe, moe_w, x, l + "moe");
  };
  return std::move(d).Build(GptOssAttention(c), ffn);
}

std::vector<WeightSpec> GptOssWeightList(const GptOssConfig& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size;
  const int64_t experts = c.num_local_experts;
  const int64_t inter = c.intermediate_size;
  return DecoderWeightList(
      c, GptOssAttention(c), [&](int64_t, const std::string& p, std::vector<WeightSpec>& w) {
        w.push_back({p + "mlp.router.weight", {experts, hidden}, kLinear});
        w.push_back({p + "mlp.router.bias", {experts}, kBias});
        // The experts as transformers stores them ([in, out]), or as the published MXFP4
        // checkpoints do ([out, in] code blocks and their scales).
        auto experts_weight = [&](const std::string& name, int64_t in, int64_t out) {
          if (c.quantization.scheme != QuantScheme::kMxfp4) {
            w.push_back({name, {experts, in, out}, kLinear});
            return;
          }
          w.push_back({name + "_blocks", {experts, out, in / 32, 16}, kMxfp4Blocks});
          w.push_back({name + "_scales", {experts, out, in / 32}, kMxfp4Scales});
        };
        experts_weight(p + "mlp.experts.gate_up_proj", hidden, 2 * inter);
        w.push_back({p + "mlp.experts.gate_up_proj_bias", {experts, 2 * inter}, kBias});
        experts_weight(p + "mlp.experts.down_proj", inter, hidden);
        w.push_back({p + "mlp.experts.down_proj_bias", {experts, hidden}, kBias});
      });
}

}  // namespace moegraph
