// The verifier: SSA and ordering, types and shapes, attribute ranges, and the
// ForwardMeta rule (every NeedsForwardMeta op takes the graph's %meta first).
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

struct Diagnostic {
  int op_index = -1;  // -1: about the graph, not one op
  std::string rule;   // "forward-meta", "ssa", "types", "attributes", "operands", "graph"
  std::string message;
};

// All faults in the graph, in op order.
std::vector<Diagnostic> VerifyGraph(const Graph& graph);

// "op #5 'mlp' (line 7): <message> [rule: forward-meta]".
std::string FormatDiagnostic(const Graph& graph, const Diagnostic& diagnostic);

// OK, or InvalidArgument listing the first faults (one per line).
Status Verify(const Graph& graph);

}  // namespace moegraph
