// The generic text form of a graph. Printing never fails: an ill-formed
// graph still prints, with the faults marked so the text shows where.
#pragma once

#include <map>
#include <string>

#include "ir/graph.h"

namespace moegraph {

struct PrintOptions {
  // Per-op notes (e.g. verifier faults), printed as `// FAULT: ...` after the op.
  std::map<int, std::string> op_faults;
};

// One op per line: line 1 is the graph header and op i sits on line i + 2.
std::string PrintGraph(const Graph& graph, const PrintOptions& options = {});

// The 1-based line of op `op_index` in PrintGraph's output.
inline int OpLine(int op_index) {
  return op_index + 2;
}

// "%name", or "%<invalid:N>" for an id that does not name a value.
std::string ValueRef(const Graph& graph, ValueId id);

}  // namespace moegraph
