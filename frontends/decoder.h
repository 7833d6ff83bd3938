// The skeleton every decoder-only family shares: embedding, pre-norm layers
// (h += attention(rms_norm(h)); h += ffn(rms_norm(h))), final RMSNorm, the last token of each
// sequence, LM head (tied or not). A family file supplies its config, its checkpoint names and
// each layer's feed-forward block; the rest is written once here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/blocks.h"
#include "frontends/builder.h"
#include "frontends/decoder_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// The variants of the skeleton a family's checkpoint picks, attention and LM head (the rest is
// DecoderConfig's sizes).
struct DecoderAttention {
  bool qk_norm = false;           // self_attn.{q,k}_norm.weight [head_dim] (Qwen3)
  bool qkv_bias = false;          // self_attn.{q,k,v}_proj.bias (Qwen2)
  bool o_bias = false;            // self_attn.o_proj.bias [hidden] (Ernie 4.5 use_bias)
  bool lm_head_bias = false;      // lm_head.bias [vocab], tied embeddings or not (Ernie 4.5)
  bool rope_interleaved = false;  // RoPE on GPT-J pairs (2i, 2i + 1), not halves (Ernie 4.5)
  bool sinks = false;             // self_attn.sinks [num_heads]: attention sinks (GPT-OSS)
  // Per layer: 0 for full attention, > 0 that layer's sliding window (GPT-OSS's layer_types);
  // empty: every layer full.
  std::vector<int64_t> layer_windows = {};
};

class DecoderBuilder {
 public:
  // A layer's feed-forward block: x = rms_norm(h) [T, hidden] -> [T, hidden]. `prefix` is the
  // layer's checkpoint prefix ("model.layers.3."), `name` its value-name prefix ("l3.").
  using Ffn = std::function<StatusOr<ValueId>(int64_t layer, const std::string& prefix,
                                              const std::string& name, ValueId x)>;

  DecoderBuilder(const DecoderConfig& config, const Checkpoint& checkpoint,
                 const std::string& graph_name)
      : c_(config), b_(graph_name), w_(checkpoint, b_, config.quantization) {}

  GraphBuilder& builder() { return b_; }
  WeightLoader& weights() { return w_; }
  AttrMap Eps() const { return {{"eps", c_.rms_norm_eps}}; }

  // The graph: @name(%meta, %tokens: tensor<T x i32>) -> logits [B, vocab]. Every layer's
  // attention is GQA over its own KV cache layer with RoPE (over the config's
  // partial_rotary_factor of each head, interleaved with `rope_interleaved`; q/k RMSNorm per
  // head with `qk_norm`, q/k/v projection biases with `qkv_bias`, the o projection's with
  // `o_bias`), then `ffn`; the LM head adds its bias with `lm_head_bias`.
  StatusOr<Graph> Build(const DecoderAttention& attention, const Ffn& ffn) &&;
  StatusOr<Graph> Build(bool qk_norm, const Ffn& ffn) && {
    return std::move(*this).Build(DecoderAttention{.qk_norm = qk_norm}, ffn);
  }

  // The same skeleton with the family's own attention block (multi-head latent attention):
  // `attention(layer, prefix, name, x)` takes x = rms_norm(h) [T, hidden] to [T, hidden] and
  // loads its weights; the LM head has no bias.
  using LayerAttention = Ffn;
  StatusOr<Graph> BuildWithAttention(const LayerAttention& attention, const Ffn& ffn) &&;

 private:
  StatusOr<ValueId> Layer(int64_t layer, ValueId h, const DecoderAttention& variant,
                          const Ffn& ffn);
  StatusOr<ValueId> Embed();
  StatusOr<Graph> Head(ValueId h, bool lm_head_bias) &&;

  const DecoderConfig& c_;
  GraphBuilder b_;
  WeightLoader w_;
  ValueId embed_ = kNoValue;  // model.embed_tokens.weight, the tied LM head
};

// The weights of Build's skeleton in file order, up to a layer's feed-forward block:
// `ffn(layer, prefix, out)` appends those.
using DecoderFfnWeights =
    std::function<void(int64_t layer, const std::string& prefix, std::vector<WeightSpec>& out)>;
std::vector<WeightSpec> DecoderWeightList(const DecoderConfig& config,
                                          const DecoderAttention& attention,
                                          const DecoderFfnWeights& ffn);
// BuildWithAttention's weights: `attention(layer, prefix, out)` appends a layer's attention
// tensors after its two norms.
std::vector<WeightSpec> DecoderWeightListWithAttention(const DecoderConfig& config,
                                                       const DecoderFfnWeights& attention,
                                                       const DecoderFfnWeights& ffn);
inline std::vector<WeightSpec> DecoderWeightList(const DecoderConfig& config, bool qk_norm,
                                                 const DecoderFfnWeights& ffn) {
  return DecoderWeightList(config, DecoderAttention{.qk_norm = qk_norm}, ffn);
}

}  // namespace moegraph
