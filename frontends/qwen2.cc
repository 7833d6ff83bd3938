// Qwen2: the shared decoder skeleton with q/k/v projection biases (no q/k norm) and a dense
// SwiGLU MLP in every layer.
#include "frontends/qwen2.h"

#include "frontends/decoder.h"

namespace moegraph {
namespace {

constexpr DecoderAttention kQwen2Attention = {.qk_norm = false, .qkv_bias = true};

}  // namespace

StatusOr<Graph> BuildQwen2Graph(const Qwen2Config& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, "qwen2");
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  auto ffn = [&](int64_t, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    MlpWeights mlp_w;
    MG_ASSIGN_OR_RETURN(mlp_w.gate, w.Plain(p + "mlp.gate_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.up, w.Plain(p + "mlp.up_proj.weight", {inter, hidden}));
    MG_ASSIGN_OR_RETURN(mlp_w.down, w.Plain(p + "mlp.down_proj.weight", {hidden, inter}));
    return BuildMlp(b, {}, mlp_w, x, l + "mlp");
  };
  return std::move(d).Build(kQwen2Attention, ffn);
}

std::vector<WeightSpec> Qwen2WeightList(const Qwen2Config& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  return DecoderWeightList(c, kQwen2Attention,
                           [&](int64_t, const std::string& p, std::vector<WeightSpec>& w) {
                             w.push_back({p + "mlp.gate_proj.weight", {inter, hidden}, kLinear});
                             w.push_back({p + "mlp.up_proj.weight", {inter, hidden}, kLinear});
                             w.push_back({p + "mlp.down_proj.weight", {hidden, inter}, kLinear});
                           });
}

}  // namespace moegraph
