// The frontend block library: builders a family file composes (in the spirit of llama.cpp's
// build_attn / build_ffn / build_moe_ffn). A variant is an option of one block, not a copy of
// it. Each options struct names every variant real checkpoints use; an option that needs an op
// the registry does not have yet is rejected with Unimplemented naming the option and the op it
// waits for, never ignored. Blocks take resolved weights (see WeightLoader), so a family file
// decides the checkpoint names and the order weights appear in the graph.
#pragma once

#include <cstdint>
#include <string>

#include "frontends/builder.h"
#include "frontends/rope.h"
#include "support/status.h"

namespace moegraph {

// ---- Attention ---------------------------------------------------------------

// GQA (1 < num_heads / num_kv_heads < num_heads), MQA (num_kv_heads = 1) or MHA
// (num_kv_heads = num_heads), over the paged KV cache of `layer`.
struct AttentionOptions {
  int64_t layer = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double scale = 0;               // softmax scale; 0 means 1 / sqrt(head_dim)
  bool qk_norm = false;           // RMSNorm over each head of q and k before RoPE (Qwen3)
  double norm_eps = 1e-6;         // of the q/k norms
  RopeParameters rope;            // any type but dynamic (RopeScalingForOp); a
                                  // partial_rotary_factor rotates int(head_dim * factor) values
  bool rope_interleaved = false;  // GPT-J pairs (2i, 2i + 1), not NeoX halves (Ernie 4.5)
  bool qkv_bias = false;          // bias_add after the q/k/v projections (Qwen2)
  bool o_bias = false;            // bias_add after the o projection
  bool sinks = false;  // one learned softmax logit per head (GPT-OSS): AttentionWeights::sinks
  int64_t sliding_window = 0;  // > 0: the attention op's window (positions (p - w, p])
  bool mla = false;            // Unimplemented here: MLA is BuildMlaAttention's
};

// Weights of one attention block; the optional ones are kNoValue when absent.
struct AttentionWeights {
  ValueId q = kNoValue;       // [num_heads * head_dim, hidden]
  ValueId k = kNoValue;       // [num_kv_heads * head_dim, hidden]
  ValueId v = kNoValue;       // [num_kv_heads * head_dim, hidden]
  ValueId o = kNoValue;       // [hidden, num_heads * head_dim]
  ValueId q_norm = kNoValue;  // [head_dim], with qk_norm
  ValueId k_norm = kNoValue;  // [head_dim], with qk_norm
  ValueId q_bias = kNoValue;  // [num_heads * head_dim], with qkv_bias
  ValueId k_bias = kNoValue;  // [num_kv_heads * head_dim], with qkv_bias
  ValueId v_bias = kNoValue;  // [num_kv_heads * head_dim], with qkv_bias
  ValueId o_bias = kNoValue;  // [hidden], with o_bias
  ValueId sinks = kNoValue;   // [num_heads], with sinks (self_attn.sinks)
};

// Ok, or Unimplemented / InvalidArgument naming the first option the engine cannot build.
Status CheckAttentionOptions(const AttentionOptions& options);

// x [T, hidden] -> [T, hidden]: q/k/v projections (each with its bias under qkv_bias), optional q/k
// norm, RoPE, attention (with the %sinks operand under sinks), o projection. Value names are `name`
// + ".q", ".k", ... (`name` like "l3.").
StatusOr<ValueId> BuildAttention(GraphBuilder& b, const AttentionOptions& options,
                                 const AttentionWeights& weights, ValueId x,
                                 const std::string& name);

// Multi-head latent attention (DeepSeek-V2/V3) over the latent KV cache of `layer`: queries
// through q_a_proj -> q_a_layernorm -> q_b_proj (q_lora_rank > 0) or q_proj; kv_a_proj_with_mqa
// splits into the latent (kv_lora_rank, RMSNorm'd by kv_a_layernorm) and one rope key
// (qk_rope_head_dim) shared by all heads; RoPE on the rope parts only; the mla_attention op
// caches [latent, rope key] per token and attends in the absorbed form through kv_b_proj.
struct MlaOptions {
  int64_t layer = 0;
  int64_t num_heads = 0;
  int64_t q_lora_rank = 0;  // 0: a plain q_proj
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  double scale = 0;               // softmax scale; 0 means (qk_nope + qk_rope)^-0.5
  double norm_eps = 1e-6;         // of q_a_layernorm and kv_a_layernorm
  RopeParameters rope;            // over qk_rope_head_dim; any type but dynamic
  bool rope_interleaved = false;  // GPT-J pairs (DeepSeek's rope_interleave)
  // attention_bias: biases on kv_a_proj_with_mqa and, with q_lora_rank, q_a_proj (a plain
  // q_proj has none in transformers).
  bool qkv_bias = false;
  bool o_bias = false;  // attention_bias: o_proj's bias
};

struct MlaWeights {
  ValueId q = kNoValue;          // q_proj [nh * (nope + rope), hidden], without q_lora_rank
  ValueId q_a = kNoValue;        // q_a_proj [q_lora_rank, hidden]
  ValueId q_a_norm = kNoValue;   // q_a_layernorm [q_lora_rank]
  ValueId q_b = kNoValue;        // q_b_proj [nh * (nope + rope), q_lora_rank]
  ValueId kv_a = kNoValue;       // kv_a_proj_with_mqa [kv_lora_rank + rope, hidden]
  ValueId kv_a_norm = kNoValue;  // kv_a_layernorm [kv_lora_rank]
  ValueId kv_b = kNoValue;       // kv_b_proj [nh * (nope + v), kv_lora_rank]
  ValueId o = kNoValue;          // o_proj [hidden, nh * v]
  ValueId q_bias = kNoValue;     // q_a_proj's (or q_proj's) bias, with qkv_bias
  ValueId kv_a_bias = kNoValue;  // kv_a_proj_with_mqa's bias, with qkv_bias
  ValueId o_bias = kNoValue;     // [hidden], with o_bias
};

// x [T, hidden] -> [T, hidden]. Value names are `name` + ".q", ".latent", ...
StatusOr<ValueId> BuildMlaAttention(GraphBuilder& b, const MlaOptions& options,
                                    const MlaWeights& weights, ValueId x, const std::string& name);

// ---- MLP ---------------------------------------------------------------------

enum class Activation {
  kSilu,           // SwiGLU: silu(gate x) * up x
  kGeluTanh,       // Unimplemented: GeGLU with tanh-approximated GELU (Gemma)
  kClampedSwiglu,  // GPT-OSS: MoE experts only (MoeOptions); Unimplemented in a dense MLP
};
const char* ActivationName(Activation activation);

struct MlpOptions {
  Activation activation = Activation::kSilu;
  bool gated = true;  // false (up, activation, down): Unimplemented, needs an activation op
  bool bias = false;  // biases on the gate, up and down projections (Ernie 4.5 use_bias)
};

struct MlpWeights {
  ValueId gate = kNoValue;       // [I, H]
  ValueId up = kNoValue;         // [I, H]
  ValueId down = kNoValue;       // [H, I]
  ValueId gate_bias = kNoValue;  // [I], with bias
  ValueId up_bias = kNoValue;    // [I], with bias
  ValueId down_bias = kNoValue;  // [H], with bias
};

Status CheckMlpOptions(const MlpOptions& options, const std::string& what = "MLP");

// x [T, H] -> [T, H]: a dense MLP (a dense layer or a shared expert), one `mlp` op with the
// three biases as operands under `bias`. It always takes %meta.
StatusOr<ValueId> BuildMlp(GraphBuilder& b, const MlpOptions& options, const MlpWeights& weights,
                           ValueId x, const std::string& name);

// ---- MoE ---------------------------------------------------------------------

// "softmax" / "sigmoid" (RouteScoring is the topk_route op's, ir/op_params.h).
const char* RouteScoringName(RouteScoring scoring);

// The router: scores (softmax over all experts: Qwen-MoE, Mixtral, Ernie; sigmoid of each logit:
// GLM4-MoE, DeepSeek V3), an optional score-correction bias added for the choice only,
// group-limited top-k, renormalisation and scaling; see TopkRouteParams (ir/op_params.h) for the
// exact rule. The defaults are plain softmax top-k.
struct MoeOptions {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  bool norm_topk_prob = false;  // divide the top-k weights by max(their sum, norm_min)
  RouteScoring scoring = RouteScoring::kSoftmax;
  int64_t num_groups = 1;              // expert groups (n_group); divides num_experts
  int64_t top_k_groups = 0;            // groups kept (topk_group); 0: all num_groups
  bool score_correction_bias = false;  // e_score_correction_bias [E]: MoeWeights::correction_bias
  double routed_scaling_factor = 1.0;  // the final weights' factor
  double norm_min = 0.0;  // with norm_topk_prob (Ernie's moe_norm_min; GLM's + 1e-20 is 1e-20)
  // GPT-OSS's experts: expert_mlp.activation = kClampedSwiglu over MoeWeights::gate_up [E, H,
  // 2I] (interleaved gate/up columns) and down [E, I, H], transformers' [in, out] layout (the
  // moe op's activation = 1). router_bias and expert_bias go with it, both or neither
  // (Unimplemented with SiLU experts).
  bool router_bias = false;         // MoeWeights::router_bias [E], added to the router logits
  bool expert_bias = false;         // MoeWeights::gate_up_bias [E, 2I] and down_bias [E, H]
  double swiglu_alpha = 1.702;      // clamped SwiGLU's sigmoid gain
  double swiglu_limit = 7.0;        // and its clamp
  bool out_major = false;           // gate_up [E, 2I, H], down [E, H, I] (MXFP4 checkpoints)
  MlpOptions expert_mlp;            // the experts' activation (SiLU or clamped SwiGLU; no bias)
  bool shared_expert = false;       // an always-on dense MLP added to the routed output
  MlpOptions shared_mlp;            // the shared expert's MLP
  bool shared_expert_gate = false;  // sigmoid(x @ gate^T) * shared (Qwen2-MoE)
};

struct MoeWeights {
  ValueId router = kNoValue;           // [E, H]
  ValueId gate = kNoValue;             // [E, I, H] stacked
  ValueId up = kNoValue;               // [E, I, H] stacked
  ValueId down = kNoValue;             // [E, H, I] stacked ([E, I, H] with clamped SwiGLU)
  ValueId correction_bias = kNoValue;  // [E] f32, with score_correction_bias
  ValueId gate_up = kNoValue;          // [E, H, 2I] [in, out] ([E, 2I, H] out_major), clamped
                                       // SwiGLU (gate/up unused)
  ValueId router_bias = kNoValue;      // [E], with router_bias
  ValueId gate_up_bias = kNoValue;     // [E, 2I], with expert_bias
  ValueId down_bias = kNoValue;        // [E, H], with expert_bias
  MlpWeights shared;                   // with shared_expert
  ValueId shared_gate = kNoValue;      // [1, H], with shared_expert_gate
};

Status CheckMoeOptions(const MoeOptions& options);

// x [T, H] -> [T, H]: routed experts (one `moe` op, lowered per key by moe-lower; the router
// options are its attributes, printed only when not the default, and the correction bias its
// last operand), plus the shared expert's MLP when there is one (scaled per token by
// sigmoid_gate_mul under shared_expert_gate); the moe op and the MLP take %meta.
StatusOr<ValueId> BuildMoe(GraphBuilder& b, const MoeOptions& options, const MoeWeights& weights,
                           ValueId x, const std::string& name);

}  // namespace moegraph
