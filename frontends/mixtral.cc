// Mixtral: the shared decoder skeleton (no q/k norm) with a sparse MoE block in every layer:
// softmax over all experts, top-k, weights renormalised over the chosen experts.
#include "frontends/mixtral.h"

#include "frontends/decoder.h"

namespace moegraph {
namespace {

// Mixtral's experts: w1 = gate, w3 = up, w2 = down.
const ExpertNames kMixtralExperts = {.gate = "w1", .up = "w3", .down = "w2"};

}  // namespace

StatusOr<Graph> BuildMixtralGraph(const MixtralConfig& c, const Checkpoint& checkpoint) {
  DecoderBuilder d(c, checkpoint, "mixtral");
  GraphBuilder& b = d.builder();
  WeightLoader& w = d.weights();
  auto ffn = [&](int64_t, const std::string& p, const std::string& l,
                 ValueId x) -> StatusOr<ValueId> {
    // The published layout keeps the block under block_sparse_moe. with w1/w3/w2;
    // transformers' in-memory layout renames it mlp. and fuses the experts.
    const std::string block =
        p + (w.Has(p + "block_sparse_moe.gate.weight") ? "block_sparse_moe." : "mlp.");
    MoeWeights moe_w;
    MG_ASSIGN_OR_RETURN(moe_w.router,
                        w.Plain(block + "gate.weight", {c.num_local_experts, c.hidden_size}));
    MG_ASSIGN_OR_RETURN(
        ExpertWeights experts,
        w.Experts(block, c.num_local_experts, c.intermediate_size, c.hidden_size, kMixtralExperts));
    moe_w.gate = experts.gate;
    moe_w.up = experts.up;
    moe_w.down = experts.down;
    MoeOptions moe;
    moe.num_experts = c.num_local_experts;
    moe.top_k = c.num_experts_per_tok;
    moe.norm_topk_prob = true;  // MixtralTopKRouter always renormalises
    return BuildMoe(b, moe, moe_w, x, l + "moe");
  };
  return std::move(d).Build(/*qk_norm=*/false, ffn);
}

std::vector<WeightSpec> MixtralWeightList(const MixtralConfig& c) {
  using enum WeightInit;
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  return DecoderWeightList(
      c, /*qk_norm=*/false, [&](int64_t, const std::string& p, std::vector<WeightSpec>& w) {
        const std::string block = p + "block_sparse_moe.";
        w.push_back({block + "gate.weight", {c.num_local_experts, hidden}, kLinear});
        for (int64_t e = 0; e < c.num_local_experts; ++e) {
          const std::string ep = block + "experts." + std::to_string(e) + ".";
          w.push_back({ep + "w1.weight", {inter, hidden}, kLinear});
          w.push_back({ep + "w2.weight", {hidden, inter}, kLinear});
          w.push_back({ep + "w3.weight", {inter, hidden}, kLinear});
        }
      });
}

}  // namespace moegraph
