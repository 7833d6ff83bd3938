// The dce pass.
#include "passes/dce.h"

#include "ir/op_registry.h"
#include "passes/rewrite.h"

namespace moegraph {

StatusOr<bool> DcePass::Run(Graph& graph) {
  std::vector<int> uses = CountUses(graph);
  const std::vector<Op>& ops = graph.ops();
  std::vector<bool> dead(ops.size(), false);
  bool changed = false;
  for (size_t i = ops.size(); i-- > 0;) {
    const Op& op = ops[i];
    if (!op.def || !op.def->Has(kPure)) continue;
    bool used = false;
    for (ValueId r : op.results) {
      used |= graph.IsValid(r) && uses[r] > 0;
    }
    if (used) continue;
    dead[i] = true;
    changed = true;
    for (ValueId v : op.operands) {
      if (graph.IsValid(v)) --uses[v];
    }
  }
  if (!changed) return false;
  std::vector<Op> live;
  live.reserve(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!dead[i]) live.push_back(ops[i]);
  }
  graph.ReplaceOps(std::move(live));
  return true;
}

}  // namespace moegraph
