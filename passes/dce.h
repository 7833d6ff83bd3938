// dce: removes pure ops whose results nothing reads.
//
// Invariant established: every op that has the kPure trait (weights
// included) has at least one result read by a later op or by the graph's
// outputs. Ops without kPure (attention writes the KV cache, collectives must
// line up across ranks) always stay, and so does everything they read.
//
// Steps: 1. count the uses of every value (operands and graph outputs);
// 2. walk the ops backwards; a pure op whose results all have zero uses is
// dead: drop it and decrement the use count of each of its operands, so that
// its producers, visited later in the walk, see it gone. One walk reaches the
// fixed point because every producer sits before its consumers; 3. rebuild
// the op list in the original order.
#pragma once

#include "passes/pass.h"

namespace moegraph {

class DcePass : public Pass {
 public:
  std::string_view name() const override { return "dce"; }
  StatusOr<bool> Run(Graph& graph) override;
};

}  // namespace moegraph
