// DeepSeek-V3: the shared decoder skeleton with multi-head latent attention over a latent KV
// cache, dense SwiGLU MLPs in the first first_k_dense_replace layers and, after them, GLM4-MoE's
// MoE block (grouped sigmoid router with correction bias, routed scaling, shared experts).
#include "frontends/deepseek_v3.h"

#include "frontends/decoder.h"
#include "frontends/glm4_moe.h"

namespace moegraph {
namespace {

int64_t QCols(const DeepseekV3Config& c) {
  return c.num_attention_heads * c.qk_head_dim();
}

}  // namespace

StatusOr<Graph> BuildDeepseekV3Graph(const DeepseekV3Config& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, "deepseek_v3");
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  auto attention = [&](int64_t layer, const std::string& p, const std::string& l,
                       ValueId x) -> StatusOr<ValueId> {
    const std::string a = p + "self_attn.";
    MlaWeights mla_w;
    if (c.q_lora_rank > 0) {
      MG_ASSIGN_OR_RETURN(mla_w.q_a, w.Plain(a + "q_a_proj.weight", {c.q_lora_rank, hidden}));
      MG_ASSIGN_OR_RETURN(mla_w.q_a_norm, w.Plain(a + "q_a_layernorm.weight", {c.q_lora_rank}));
      MG_ASSIGN_OR_RETURN(mla_w.q_b, w.Plain(a + "q_b_proj.weight", {QCols(c), c.q_lora_rank}));
      if (c.attention_bias) {
        MG_ASSIGN_OR_RETURN(mla_w.q_bias, w.Plain(a + "q_a_proj.bias", {c.q_lora_rank}));
      }
    } else {
      MG_ASSIGN_OR_RETURN(mla_w.q, w.Plain(a + "q_proj.weight", {QCols(c), hidden}));
    }
    const int64_t kv_a_rows = c.kv_lora_rank + c.qk_rope_head_dim;
    MG_ASSIGN_OR_RETURN(mla_w.kv_a, w.Plain(a + "kv_a_proj_with_mqa.weight", {kv_a_rows, hidden}));
    if (c.attention_bias) {
      MG_ASSIGN_OR_RETURN(mla_w.kv_a_bias, w.Plain(a + "kv_a_proj_with_mqa.bias", {kv_a_rows}));
    }
    MG_ASSIGN_OR_RETURN(mla_w.kv_a_norm, w.Plain(a + "kv_a_layernorm.weight", {c.kv_lora_rank}));
    MG_ASSIGN_OR_RETURN(mla_w.kv_b,
                        w.Plain(a + "kv_b_proj.weight",
                                {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}));
    MG_ASSIGN_OR_RETURN(mla_w.o, w.Plain(a + "o_proj.weight", {hidden, heads * c.v_head_dim}));
    if (c.attention_bias) {
      MG_ASSIGN_OR_RETURN(mla_w.o_bias, w.Plain(a + "o_proj.bias", {hidden}));
    }
    MlaOptions mla;
    mla.layer = layer;
    mla.num_heads = heads;
    mla.q_lora_rank = c.q_lora_rank;
    mla.kv_lora_rank = c.kv_lora_rank;
    mla.qk_nope_head_dim = c.qk_nope_head_dim;
    mla.qk_rope_head_dim = c.qk_rope_head_dim;
    mla.v_head_dim = c.v_head_dim;
    mla.scale = c.Scale();
    mla.norm_eps = c.rms_norm_eps;
    mla.rope = c.rope;
    mla.rope.theta = c.rope_theta;
    mla.rope_interleaved = c.rope_interleave;
    // attention_bias puts a bias on q_a_proj (none on a plain q_proj, as transformers),
    // kv_a_proj_with_mqa and o_proj.
    mla.qkv_bias = c.attention_bias;
    mla.o_bias = c.attention_bias;
    return BuildMlaAttention(b, mla, mla_w, x, l);
  };
  // The feed-forward blocks are GLM4-MoE's: the same router rule, experts and layer rule.
  auto ffn = [&](int64_t layer, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    return BuildGlm4MoeFeedForward(d, c, layer, p, l, x);
  };
  return std::move(d).BuildWithAttention(attention, ffn);
}

std::vector<WeightSpec> DeepseekV3WeightList(const DeepseekV3Config& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  auto attention = [&](int64_t, const std::string& p, std::vector<WeightSpec>& w) {
    const std::string a = p + "self_attn.";
    if (c.q_lora_rank > 0) {
      w.push_back({a + "q_a_proj.weight", {c.q_lora_rank, hidden}, kLinear});
      if (c.attention_bias) w.push_back({a + "q_a_proj.bias", {c.q_lora_rank}, kBias});
      w.push_back({a + "q_a_layernorm.weight", {c.q_lora_rank}, kNorm});
      w.push_back({a + "q_b_proj.weight", {QCols(c), c.q_lora_rank}, kLinear});
    } else {
      w.push_back({a + "q_proj.weight", {QCols(c), hidden}, kLinear});
    }
    const int64_t kv_a_rows = c.kv_lora_rank + c.qk_rope_head_dim;
    w.push_back({a + "kv_a_proj_with_mqa.weight", {kv_a_rows, hidden}, kLinear});
    if (c.attention_bias) w.push_back({a + "kv_a_proj_with_mqa.bias", {kv_a_rows}, kBias});
    w.push_back({a + "kv_a_layernorm.weight", {c.kv_lora_rank}, kNorm});
    w.push_back({a + "kv_b_proj.weight",
                 {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
                 kLinear});
    w.push_back({a + "o_proj.weight", {hidden, heads * c.v_head_dim}, kLinear});
    if (c.attention_bias) w.push_back({a + "o_proj.bias", {hidden}, kBias});
  };
  auto ffn = [&](int64_t layer, const std::string& p, std::vector<WeightSpec>& w) {
    auto mlp = [&](const std::string& prefix, int64_t inter) {
      w.push_back({prefix + "gate_proj.weight", {inter, hidden}, kLinear});
      w.push_back({prefix + "up_proj.weight", {inter, hidden}, kLinear});
      w.push_back({prefix + "down_proj.weight", {hidden, inter}, kLinear});
    };
    if (!c.IsMoeLayer(layer)) return mlp(p + "mlp.", c.intermediate_size);
    // f32 in every checkpoint (_keep_in_fp32_modules_strict).
    w.push_back({p + "mlp.gate.weight", {c.n_routed_experts, hidden}, kLinear, /*keep_f32=*/true});
    w.push_back({p + "mlp.gate.e_score_correction_bias",
                 {c.n_routed_experts},
                 kBias,
                 /*keep_f32=*/true});
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      mlp(p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size);
    mlp(p + "mlp.shared_experts.", c.moe_intermediate_size * c.n_shared_experts);
  };
  return DecoderWeightListWithAttention(c, attention, ffn);
}

}  // namespace moegraph
