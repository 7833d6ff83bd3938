// Qwen3-MoE: embedding, per layer [RMSNorm, GQA attention with q/k RMSNorm and
// RoPE, RMSNorm, sparse MoE or dense MLP], final RMSNorm, LM head.
#include "frontends/qwen3_moe.h"

#include <cmath>

#include "frontends/builder.h"
#include "support/strings.h"

namespace moegraph {
namespace {

class Qwen3MoeDefinition {
 public:
  Qwen3MoeDefinition(const Qwen3MoeConfig& config, const Checkpoint& checkpoint)
      : c_(config), ckpt_(checkpoint), b_("qwen3_moe") {}

  StatusOr<Graph> Build() {
    const int64_t hidden = c_.hidden_size;
    ValueId tokens = b_.Input("tokens", Type::Tensor(DType::kI32, {Dim::Symbol("T")}));
    MG_ASSIGN_OR_RETURN(ValueId embed,
                        Weight("model.embed_tokens.weight", {c_.vocab_size, hidden}));
    ValueId h = b_.Add1("embedding", {tokens, embed}, {}, "h");
    for (int64_t layer = 0; layer < c_.num_hidden_layers; ++layer) {
      MG_ASSIGN_OR_RETURN(h, DecoderLayer(layer, h));
    }
    MG_ASSIGN_OR_RETURN(ValueId final_norm, Weight("model.norm.weight", {hidden}));
    ValueId normed = b_.Add1("rms_norm", {h, final_norm}, Eps(), "final_norm");
    ValueId last = b_.Add1("gather_last", {b_.meta(), normed}, {}, "last");
    ValueId head = embed;
    if (!c_.tie_word_embeddings) {
      MG_ASSIGN_OR_RETURN(head, Weight("lm_head.weight", {c_.vocab_size, hidden}));
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
    MG_ASSIGN_OR_RETURN(ValueId ln1, Weight(p + "input_layernorm.weight", {hidden}));
    MG_ASSIGN_OR_RETURN(ValueId wq, Weight(p + "self_attn.q_proj.weight", {q_cols, hidden}));
    MG_ASSIGN_OR_RETURN(ValueId wk, Weight(p + "self_attn.k_proj.weight", {kv_cols, hidden}));
    MG_ASSIGN_OR_RETURN(ValueId wv, Weight(p + "self_attn.v_proj.weight", {kv_cols, hidden}));
    MG_ASSIGN_OR_RETURN(ValueId wo, Weight(p + "self_attn.o_proj.weight", {hidden, q_cols}));
    MG_ASSIGN_OR_RETURN(ValueId qn, Weight(p + "self_attn.q_norm.weight", {hd}));
    MG_ASSIGN_OR_RETURN(ValueId kn, Weight(p + "self_attn.k_norm.weight", {hd}));
    MG_ASSIGN_OR_RETURN(ValueId ln2, Weight(p + "post_attention_layernorm.weight", {hidden}));

    const ValueId meta = b_.meta();
    ValueId x = b_.Add1("rms_norm", {h, ln1}, Eps(), l + "attn_in");
    ValueId q = b_.Add1("linear", {x, wq}, {}, l + "q");
    ValueId k = b_.Add1("linear", {x, wk}, {}, l + "k");
    ValueId v = b_.Add1("linear", {x, wv}, {}, l + "v");
    q = b_.Add1("rms_norm", {q, qn}, Eps(), l + "q_norm");
    k = b_.Add1("rms_norm", {k, kn}, Eps(), l + "k_norm");
    const AttrMap rope = {{"head_dim", hd}, {"theta", c_.rope_theta}};
    q = b_.Add1("rope", {meta, q}, rope, l + "q_rope");
    k = b_.Add1("rope", {meta, k}, rope, l + "k_rope");
    ValueId attn = b_.Add1("attention", {meta, q, k, v},
                           {{"layer", layer},
                            {"num_heads", c_.num_attention_heads},
                            {"num_kv_heads", c_.num_key_value_heads},
                            {"head_dim", hd},
                            {"scale", 1.0 / std::sqrt(static_cast<double>(hd))}},
                           l + "attn");
    ValueId o = b_.Add1("linear", {attn, wo}, {}, l + "o");
    h = b_.Add1("add", {h, o}, {}, l + "h_attn");
    ValueId y = b_.Add1("rms_norm", {h, ln2}, Eps(), l + "mlp_in");
    ValueId mlp_out;
    if (c_.IsMoeLayer(layer)) {
      MG_ASSIGN_OR_RETURN(mlp_out, SparseMoe(p + "mlp.", l, y));
    } else {
      const int64_t inter = c_.intermediate_size;
      MG_ASSIGN_OR_RETURN(ValueId wg, Weight(p + "mlp.gate_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(ValueId wu, Weight(p + "mlp.up_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(ValueId wd, Weight(p + "mlp.down_proj.weight", {hidden, inter}));
      mlp_out = b_.Add1("mlp", {meta, y, wg, wu, wd}, {}, l + "mlp");
    }
    return b_.Add1("add", {h, mlp_out}, {}, l + "h");
  }

  StatusOr<ValueId> SparseMoe(const std::string& p, const std::string& l, ValueId y) {
    const int64_t hidden = c_.hidden_size, inter = c_.moe_intermediate_size, e = c_.num_experts;
    MG_ASSIGN_OR_RETURN(ValueId router, Weight(p + "gate.weight", {e, hidden}));
    ValueId wg, wu, wd;
    if (!ckpt_.Get(p + "experts.0.gate_proj.weight").ok() &&
        ckpt_.Get(p + "experts.gate_up_proj").ok()) {
      // transformers' fused layout: gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I].
      MG_ASSIGN_OR_RETURN(
          wg, FusedExperts(p + "experts.gate_up_proj", {e, 2 * inter, hidden}, 0, inter));
      MG_ASSIGN_OR_RETURN(
          wu, FusedExperts(p + "experts.gate_up_proj", {e, 2 * inter, hidden}, inter, inter));
      MG_ASSIGN_OR_RETURN(wd, FusedExperts(p + "experts.down_proj", {e, hidden, inter}, 0, hidden));
    } else {
      // The published layout: one tensor per expert and projection.
      MG_ASSIGN_OR_RETURN(wg, Experts(p + "experts.{e}.gate_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(wu, Experts(p + "experts.{e}.up_proj.weight", {inter, hidden}));
      MG_ASSIGN_OR_RETURN(wd, Experts(p + "experts.{e}.down_proj.weight", {hidden, inter}));
    }
    return b_.Add1("moe", {b_.meta(), y, router, wg, wu, wd},
                   {{"top_k", c_.num_experts_per_tok},
                    {"norm_topk_prob", static_cast<int64_t>(c_.norm_topk_prob ? 1 : 0)}},
                   l + "moe");
  }

  // Rows [row_offset, row_offset + rows) of every expert of a fused tensor
  // `stored` = [E, R, K], as a stacked [E, rows, K] weight.
  StatusOr<ValueId> FusedExperts(const std::string& name, const std::vector<int64_t>& stored,
                                 int64_t row_offset, int64_t rows) {
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Lookup(name, stored));
    AttrMap attrs = {{"experts", stored[0]}};
    if (row_offset != 0) attrs["row_offset"] = row_offset;
    return b_.Weight(
        name,
        Type::Tensor(t->dtype, {Dim::Static(stored[0]), Dim::Static(rows), Dim::Static(stored[2])}),
        std::move(attrs));
  }

  // Looks `name` up and checks it against the config's shape.
  StatusOr<const SafetensorsTensor*> Lookup(const std::string& name,
                                            const std::vector<int64_t>& shape) {
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, ckpt_.Get(name));
    if (t->shape != shape) {
      return InvalidArgument(ckpt_.FileOf(name) + ": tensor '" + name + "' has shape " +
                             ShapeString(t->shape) + " but config.json implies " +
                             ShapeString(shape));
    }
    if (t->dtype != DType::kF32 && t->dtype != DType::kBF16 && t->dtype != DType::kF16) {
      return Unimplemented(ckpt_.FileOf(name) + ": tensor '" + name + "' has dtype " +
                           DTypeSafetensorsName(t->dtype) + "; supported: F32, BF16, F16");
    }
    return t;
  }

  StatusOr<ValueId> Weight(const std::string& name, const std::vector<int64_t>& shape) {
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Lookup(name, shape));
    std::vector<Dim> dims;
    for (int64_t d : shape)
      dims.push_back(Dim::Static(d));
    return b_.Weight(name, Type::Tensor(t->dtype, dims));
  }

  // Per-expert tensors named by `pattern` with {e} = 0..E-1, stacked [E, ...].
  StatusOr<ValueId> Experts(const std::string& pattern, const std::vector<int64_t>& shape) {
    const int64_t e = c_.num_experts;
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* first,
                        Lookup(ExpandExpertName(pattern, 0), shape));
    for (int64_t i = 1; i < e; ++i) {
      const std::string name = ExpandExpertName(pattern, i);
      MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, Lookup(name, shape));
      if (t->dtype != first->dtype) {
        return InvalidArgument(ckpt_.FileOf(name) + ": tensor '" + name + "' is " +
                               DTypeSafetensorsName(t->dtype) + " but expert 0 is " +
                               DTypeSafetensorsName(first->dtype) +
                               "; all experts of a layer must share a dtype");
      }
    }
    std::vector<Dim> dims = {Dim::Static(e)};
    for (int64_t d : shape)
      dims.push_back(Dim::Static(d));
    return b_.Weight(pattern, Type::Tensor(first->dtype, dims), {{"experts", e}});
  }

  const Qwen3MoeConfig& c_;
  const Checkpoint& ckpt_;
  GraphBuilder b_;
};

}  // namespace

StatusOr<Graph> BuildQwen3MoeGraph(const Qwen3MoeConfig& config, const Checkpoint& checkpoint) {
  return Qwen3MoeDefinition(config, checkpoint).Build();
}

}  // namespace moegraph
