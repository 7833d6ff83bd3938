// The shared decoder-only skeleton.
#include "frontends/decoder.h"

#include <utility>

namespace moegraph {

StatusOr<ValueId> DecoderBuilder::Embed() {
  ValueId tokens = b_.Input("tokens", Type::Tensor(DType::kI32, {Dim::Symbol("T")}));
  MG_ASSIGN_OR_RETURN(embed_,
                      w_.Plain("model.embed_tokens.weight", {c_.vocab_size, c_.hidden_size}));
  return b_.Add1("embedding", {tokens, embed_}, {}, "h");
}

StatusOr<Graph> DecoderBuilder::Build(const DecoderAttention& attention, const Ffn& ffn) && {
  MG_ASSIGN_OR_RETURN(ValueId h, Embed());
  for (int64_t layer = 0; layer < c_.num_hidden_layers; ++layer) {
    MG_ASSIGN_OR_RETURN(h, Layer(layer, h, attention, ffn));
  }
  return std::move(*this).Head(h, attention.lm_head_bias);
}

StatusOr<Graph> DecoderBuilder::BuildWithAttention(const LayerAttention& attention,
                                                   const Ffn& ffn) && {
  const int64_t hidden = c_.hidden_size;
  MG_ASSIGN_OR_RETURN(ValueId h, Embed());
  for (int64_t layer = 0; layer < c_.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const std::string l = "l" + std::to_string(layer) + ".";
    MG_ASSIGN_OR_RETURN(ValueId ln1, w_.Plain(p + "input_layernorm.weight", {hidden}));
    MG_ASSIGN_OR_RETURN(ValueId ln2, w_.Plain(p + "post_attention_layernorm.weight", {hidden}));
    ValueId x = b_.Add1("rms_norm", {h, ln1}, Eps(), l + "attn_in");
    MG_ASSIGN_OR_RETURN(ValueId o, attention(layer, p, l, x));
    h = b_.Add1("add", {h, o}, {}, l + "h_attn");
    ValueId y = b_.Add1("rms_norm", {h, ln2}, Eps(), l + "mlp_in");
    MG_ASSIGN_OR_RETURN(ValueId ffn_out, ffn(layer, p, l, y));
    h = b_.Add1("add", {h, ffn_out}, {}, l + "h");
  }
  return std::move(*this).Head(h, /*lm_head_bias=*/false);
}

StatusOr<Graph> DecoderBuilder::Head(ValueId h, bool lm_head_bias) && {
  const int64_t hidden = c_.hidden_size;
  MG_ASSIGN_OR_RETURN(ValueId final_norm, w_.Plain("model.norm.weight", {hidden}));
  ValueId normed = b_.Add1("rms_norm", {h, final_norm}, Eps(), "final_norm");
  ValueId last = b_.Add1("gather_last", {b_.meta(), normed}, {}, "last");
  ValueId head = embed_;
  if (!c_.tie_word_embeddings) {
    MG_ASSIGN_OR_RETURN(head, w_.Plain("lm_head.weight", {c_.vocab_size, hidden}));
  }
  ValueId logits = b_.Add1("linear", {last, head}, {}, "logits");
  if (lm_head_bias) {
    // Tying shares lm_head.weight only: the bias is the head's own either way.
    MG_ASSIGN_OR_RETURN(ValueId bias, w_.Plain("lm_head.bias", {c_.vocab_size}));
    logits = b_.Add1("bias_add", {logits, bias}, {}, "logits_bias");
  }
  b_.Output(logits);
  return std::move(b_).Finish();
}

StatusOr<ValueId> DecoderBuilder::Layer(int64_t layer, ValueId h, const DecoderAttention& variant,
                                        const Ffn& ffn) {
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
  if (variant.qkv_bias) {
    MG_ASSIGN_OR_RETURN(attn_w.q_bias, w_.Plain(a + "q_proj.bias", {q_cols}));
    MG_ASSIGN_OR_RETURN(attn_w.k_bias, w_.Plain(a + "k_proj.bias", {kv_cols}));
    MG_ASSIGN_OR_RETURN(attn_w.v_bias, w_.Plain(a + "v_proj.bias", {kv_cols}));
  }
  if (variant.o_bias) {
    MG_ASSIGN_OR_RETURN(attn_w.o_bias, w_.Plain(a + "o_proj.bias", {hidden}));
  }
  if (variant.sinks) {
    MG_ASSIGN_OR_RETURN(attn_w.sinks, w_.Plain(a + "sinks", {c_.num_attention_heads}));
  }
  if (variant.qk_norm) {
    MG_ASSIGN_OR_RETURN(attn_w.q_norm, w_.Plain(a + "q_norm.weight", {hd}));
    MG_ASSIGN_OR_RETURN(attn_w.k_norm, w_.Plain(a + "k_norm.weight", {hd}));
  }
  MG_ASSIGN_OR_RETURN(ValueId ln2, w_.Plain(p + "post_attention_layernorm.weight", {hidden}));

  AttentionOptions attn;
  attn.layer = layer;
  attn.num_heads = c_.num_attention_heads;
  attn.num_kv_heads = c_.num_key_value_heads;
  attn.head_dim = hd;
  attn.qk_norm = variant.qk_norm;
  attn.qkv_bias = variant.qkv_bias;
  attn.o_bias = variant.o_bias;
  attn.sinks = variant.sinks;
  if (!variant.layer_windows.empty()) {
    if (static_cast<int64_t>(variant.layer_windows.size()) != c_.num_hidden_layers) {
      return InvalidArgument(
          "DecoderAttention::layer_windows has " + std::to_string(variant.layer_windows.size()) +
          " entries, expected one per layer (" + std::to_string(c_.num_hidden_layers) + ")");
    }
    attn.sliding_window = variant.layer_windows[static_cast<size_t>(layer)];
  }
  attn.norm_eps = c_.rms_norm_eps;
  attn.rope = c_.rope;
  attn.rope.theta = c_.rope_theta;
  attn.rope.partial_rotary_factor = c_.partial_rotary_factor;
  attn.rope_interleaved = variant.rope_interleaved;
  ValueId x = b_.Add1("rms_norm", {h, ln1}, Eps(), l + "attn_in");
  MG_ASSIGN_OR_RETURN(ValueId o, BuildAttention(b_, attn, attn_w, x, l));
  h = b_.Add1("add", {h, o}, {}, l + "h_attn");
  ValueId y = b_.Add1("rms_norm", {h, ln2}, Eps(), l + "mlp_in");
  MG_ASSIGN_OR_RETURN(ValueId ffn_out, ffn(layer, p, l, y));
  return b_.Add1("add", {h, ffn_out}, {}, l + "h");
}

std::vector<WeightSpec> DecoderWeightListWithAttention(const DecoderConfig& c,
                                                       const DecoderFfnWeights& attention,
                                                       const DecoderFfnWeights& ffn) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size;
  std::vector<WeightSpec> w;
  w.push_back({"model.embed_tokens.weight", {c.vocab_size, hidden}, kEmbedding});
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    w.push_back({p + "input_layernorm.weight", {hidden}, kNorm});
    w.push_back({p + "post_attention_layernorm.weight", {hidden}, kNorm});
    attention(layer, p, w);
    ffn(layer, p, w);
  }
  w.push_back({"model.norm.weight", {hidden}, kNorm});
  if (!c.tie_word_embeddings) w.push_back({"lm_head.weight", {c.vocab_size, hidden}, kLinear});
  return w;
}

std::vector<WeightSpec> DecoderWeightList(const DecoderConfig& c, const DecoderAttention& attention,
                                          const DecoderFfnWeights& ffn) {
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
    if (attention.qkv_bias) {
      w.push_back({p + "self_attn.q_proj.bias", {q_dim}, kBias});
      w.push_back({p + "self_attn.k_proj.bias", {kv_dim}, kBias});
      w.push_back({p + "self_attn.v_proj.bias", {kv_dim}, kBias});
    }
    if (attention.o_bias) w.push_back({p + "self_attn.o_proj.bias", {hidden}, kBias});
    // Random writers draw the sinks like a bias: small, and not constant.
    if (attention.sinks) w.push_back({p + "self_attn.sinks", {c.num_attention_heads}, kBias});
    if (attention.qk_norm) {
      w.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, kNorm});
      w.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, kNorm});
    }
    ffn(layer, p, w);
  }
  w.push_back({"model.norm.weight", {hidden}, kNorm});
  if (!c.tie_word_embeddings) w.push_back({"lm_head.weight", {c.vocab_size, hidden}, kLinear});
  if (attention.lm_head_bias) w.push_back({"lm_head.bias", {c.vocab_size}, kBias});
  return w;
}

}  // namespace moegraph
