// memory-plan: a static arena plan for a specialized graph.
//
// Invariant established: every non-weight op carries `arena_offsets` (one
// byte offset per result) and the graph carries `arena_bytes`, such that two
// results live at the same time never share a byte of the arena. Graph
// inputs and weights are owned by the runtime and take no arena space.
//   * A result's buffer is numel * dtype bytes rounded up to 64; a zero-size
//     buffer gets offset 0 and takes no space. Offsets are multiples of 64.
//   * A result lives from its defining op to its last reader, inclusive; a
//     graph output lives to the end of the graph (the runtime reads it after
//     the step); a result nothing reads lives only at its own op.
//   * One arena serves every key of a model: keys never run concurrently on
//     one stream, so the runtime sizes it to the largest key's arena_bytes.
// Planning an already planned graph whose ops did not change writes the same
// offsets and reports no change.
//
// Steps (greedy by size, best fit):
// 1. refuse (FailedPrecondition, naming the value) a graph with a symbolic dim;
// 2. collect the buffers and their live ranges [def, last use];
// 3. sort them by size, largest first (ties: earlier definition first);
// 4. for each, take the placed buffers whose live ranges overlap its own,
//    in offset order, and choose the smallest gap below or between them that
//    holds it (lowest offset on ties); if none holds it, place it at the
//    highest end among them (0 when none overlaps);
// 5. arena_bytes is the highest end of any buffer; write the attributes.
#pragma once

#include <cstdint>

#include "passes/pass.h"

namespace moegraph {

// The graph attribute holding the arena size in bytes.
inline constexpr const char* kArenaBytesAttr = "arena_bytes";
// Buffers are sized and placed in multiples of this many bytes.
inline constexpr int64_t kArenaAlignment = 64;

class MemoryPlanPass : public Pass {
 public:
  std::string_view name() const override { return "memory-plan"; }
  StatusOr<bool> Run(Graph& graph) override;
};

// The planned arena size of `graph` in bytes, or -1 when it has no plan.
int64_t ArenaBytes(const Graph& graph);

}  // namespace moegraph
