// Qwen3-MoE: embedding, per layer [RMSNorm, GQA attention with q/k RMSNorm and RoPE, RMSNorm,
// sparse MoE or dense MLP], final RMSNorm, LM head.
#include "frontends/qwen3_moe.h"

#include "frontends/blocks.h"
#include "frontends/builder.h"

namespace moegraph {
namespace {

class Qwen3MoeDefinition {
 public:
  Qwen3MoeDefinition(const Qwen3MoeConfig& config, const Checkpoint& checkpoint)
      : c_(config), b_("qwen3_moe"), w_(checkpoint, b_) {}

  StatusOr<Graph> Build() {
    const int64_t hidden = c_.hidden_size;
    ValueId tokens = b_.Input("tokens", Type::Tensor(DType::kI32, {Dim::Symbol("T")}));
    MG_ASSIGN_OR_RETURN(ValueId embed,
                        w_.Plain("model.embed_tokens.weight", {c_.vocab_size, hidden}));
    ValueId h = b_.Add1("embedding", {tokens, embed}, {}, "h");
    for (int64_t layer = 0; layer < c_.num_hidden_layers; ++layer) {
      MG_ASSIGN_OR_RETURN(h, DecoderLayer(layer, h));
    }
    MG_ASSIGN_OR_RETURN(ValueId final_norm, w_.Plain("model.norm.weight", {hidden}));
    ValueId normed = b_.Add1("rms_norm", {h, final_norm}, Eps(), "final_norm");
    ValueId last = b_.Add1("gather_last", {b_.meta(), normed}, {}, "last");
    ValueId head = embed;
    if (!c_.tie_word_embeddings) {
      MG_ASSIGN_OR_RETURN(head, w_.Plain("lm_head.weight", {c_.vocab_size, hidden}));
    }
    b_.Output(b_.Add1("linear", {last, head}, {}, "logits"));
    return std::move(b_).Finish();
  }

 private:
  AttrMap Eps() const { return {{"eps", c_.rms_norm_eps}}; }

  StatusOr<ValueId> DecoderLayer(int64_t layer, ValueId h) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const std::string l = "l" + std::to_string(layer) + ".";
    const int64_t hidden = c_.hidden_size, hd = c_.head_dim;
    const int64_t q_cols = c_.num_attention_heads * hd, kv_cols = c_.num_key_value_heads * hd;
    const std::string a = p + "self_attn.";
    AttentionWeights attn_w;
    MG_ASSIGN_OR_RETURN(ValueId ln1, w_.Plain(p + "input_layernorm.weight", {hidden}));
    MG_ASSIGN_OR_RETURN(attn_w.q, w_.Plain(a + "q_proj.weight", {q_cols, hidden}));
    MG_ASSIGN_OR_RETURN(attn_w.k, w_.Plain(a + "k_proj.weight", {kv_cols, hidden}));
    MG_ASSIGN_OR_RETURN(attn_w.v, w_.Plain(a + "v_proj.weight", {kv_cols, hidden}));
    MG_ASSIGN_OR_RETURN(attn_w.o, w_.Plain(a + "o_proj.weight", {hidden, q_cols}));
    MG_ASSIGN_OR_RETURN(attn_w.q_norm, w_.Plain(a + "q_norm.weight", {hd}));
    MG_ASSIGN_OR_RETURN(attn_w.k_norm, w_.Plain(a + "k_norm.weight", {hd}));
    MG_ASSIGN_OR_RETURN(ValueId ln2, w_.Plain(p + "post_attention_layernorm.weight", {hidden}));

    AttentionOptions attn;
    attn.layer = layer;
    attn.num_heads = c_.num_attention_heads;
    attn.num_kv_heads = c_.num_key_value_heads;
    attn.head_dim = hd;
    attn.qk_norm = true;
    attn.norm_eps = c_.rms_norm_eps;
    attn.rope.theta = c_.rope_theta;
    ValueId x = b_.Add1("rms_norm", {h, ln1}, Eps(), l + "attn_in");
    MG_ASSIGN_OR_RETURN(ValueId o, BuildAttention(b_, attn, attn_w, x, l));
    h = b_.Add1("add", {h, o}, {}, l + "h_attn");
    ValueId y = b_.Add1("rms_norm", {h, ln2}, Eps(), l + "mlp_in");
    ValueId mlp_out;
    if (c_.IsMoeLayer(layer)) {
      MoeWeights moe_w;
      MG_ASSIGN_OR_RETURN(moe_w.router, w_.Plain(p + "mlp.gate.weight", {c_.num_experts, hidden}));
      MG_ASSIGN_OR_RETURN(ExpertWeights experts,
                          w_.Experts(p + "mlp.", c_.num_experts, c_.moe_intermediate_size, hidden));
      moe_w.gate = experts.gate;
      moe_w.up = experts.up;
      moe_w.down = experts.down;
      MoeOptions moe;
      moe.num_experts = c_.num_experts;
      moe.top_k = c_.num_experts_per_tok;
      moe.norm_topk_prob = c_.norm_topk_prob;
      MG_ASSIGN_OR_RETURN(mlp_out, BuildMoe(b_, moe, moe_w, y, l + "moe"));
    } else {
      const int64_t inter = c_.intermediate_size;
      MlpWeights mlp_w;
      MG_ASSIGN_OR_RETURN(mlp_w.gate, w_.Plain(p + "mlp.gate_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(mlp_w.up, w_.Plain(p + "mlp.up_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(mlp_w.down, w_.Plain(p + "mlp.down_proj.weight", {hidden, inter}));
      MG_ASSIGN_OR_RETURN(mlp_out, BuildMlp(b_, {}, mlp_w, y, l + "mlp"));
    }
    return b_.Add1("add", {h, mlp_out}, {}, l + "h");
  }

  const Qwen3MoeConfig& c_;
  GraphBuilder b_;
  WeightLoader w_;
};

}  // namespace

StatusOr<Graph> BuildQwen3MoeGraph(const Qwen3MoeConfig& config, const Checkpoint& checkpoint) {
  return Qwen3MoeDefinition(config, checkpoint).Build();
}

std::vector<WeightSpec> Qwen3MoeWeightList(const Qwen3MoeConfig& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = c.num_attention_heads * c.head_dim;
  const int64_t kv_dim = c.num_key_value_heads * c.head_dim;
  std::vector<WeightSpec> w;
  w.push_back({"model.embed_tokens.weight", {c.vocab_size, hidden}, kEmbedding});
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    w.push_back({p + "input_layernorm.weight", {hidden}, kNorm});
    w.push_back({p + "post_attention_layernorm.weight", {hidden}, kNorm});
    w.push_back({p + "self_attn.q_proj.weight", {q_dim, hidden}, kLinear});
    w.push_back({p + "self_attn.k_proj.weight", {kv_dim, hidden}, kLinear});
    w.push_back({p + "self_attn.v_proj.weight", {kv_dim, hidden}, kLinear});
    w.push_back({p + "self_attn.o_proj.weight", {hidden, q_dim}, kLinear});
    w.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, kNorm});
    w.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, kNorm});
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
  }
  w.push_back({"model.norm.weight", {hidden}, kNorm});
  if (!c.tie_word_embeddings) w.push_back({"lm_head.weight", {c.vocab_size, hidden}, kLinear});
  return w;
}

}  // namespace moegraph
