// cse: merges pure ops that compute the same values.
//
// Invariant established: no two kPure ops share a kind, operands, attributes
// and result types. Such ops compute the same values, so the later one's
// results are replaced by the earlier one's and the later op is removed.
// Weights (kWeight | kPure) merge the same way: two declarations of one
// checkpoint tensor with the same type become one. The arena_offsets
// annotation is not part of what an op computes and is ignored. Ops without
// kPure (attention, collectives) never merge.
//
// Steps: 1. walk the ops in order, first rewriting each op's operands through
// the replacements made so far; 2. for a pure op, build a canonical key from
// its kind, operand ids, attributes and result types; 3. if an earlier op has
// the key, map each of this op's results to that op's result and drop this
// op, else record the key; 4. rewrite the graph outputs through the
// replacements. Kept ops keep their order.
#pragma once

#include "passes/pass.h"

namespace moegraph {

class CsePass : public Pass {
 public:
  std::string_view name() const override { return "cse"; }
  StatusOr<bool> Run(Graph& graph) override;
};

}  // namespace moegraph
