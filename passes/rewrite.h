// Helpers for passes that rebuild a graph's op list.
#pragma once

#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Appends new ops to `ops` (the op list being built), creating their result
// values in `graph` with types from the registry's rules.
class OpEmitter {
 public:
  OpEmitter(Graph& graph, std::vector<Op>& ops) : graph_(graph), ops_(ops) {}

  StatusOr<std::vector<ValueId>> Emit(std::string_view kind, std::vector<ValueId> operands,
                                      AttrMap attrs = {}, std::string_view name_hint = "");
  StatusOr<ValueId> Emit1(std::string_view kind, std::vector<ValueId> operands, AttrMap attrs = {},
                          std::string_view name_hint = "");

 private:
  Graph& graph_;
  std::vector<Op>& ops_;
};

// Use counts of every value (operands and graph outputs).
std::vector<int> CountUses(const Graph& graph);

}  // namespace moegraph
