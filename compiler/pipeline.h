// The per-key compilation pipeline (DESIGN §5) and the whole-model driver
// that compiles every key of a key set into a Plan.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/spec_key.h"
#include "passes/lower_to_kernels.h"
#include "passes/moe_lower.h"
#include "passes/pass.h"
#include "plan/plan.h"

namespace moegraph {

struct PipelineOptions {
  int32_t chunk_size = 256;
  bool fuse = true;
  PassManagerOptions pass_manager;
  // The expert-parallel rank this pipeline compiles for (moe-lower); CompileKeys sets it per
  // rank and phase from the key options.
  ExpertParallelLowering expert_parallel;
  // Stop after this pass (graph-dump --after); empty runs the whole pipeline.
  std::string stop_after;
};

// The pass names in pipeline order.
std::vector<std::string> PipelinePassNames(bool fuse = true);

// Runs the pipeline on a copy of `generic` for `key`. The lowered program goes
// to `program` (when the pipeline reaches lower-to-kernels); the final graph
// is returned.
StatusOr<Graph> RunPipeline(const Graph& generic, const SpecKey& key,
                            const PipelineOptions& options, WeightTable& weights,
                            KeyProgram* program);

struct CompileProgress {
  size_t done = 0, total = 0;
  const KeyProgram* program = nullptr;
  double seconds = 0;
};

// The expert-parallel lowering of `rank` for keys of `phase` under `key_options`: its
// dispatch capacity covers the largest chunk any rank's key of that phase has.
ExpertParallelLowering ExpertParallelFor(const KeySetOptions& key_options, int32_t rank,
                                         MoePhase phase);

// Compiles every key of `key_options` for `generic` (for each expert-parallel rank, when
// key_options.expert_parallel > 1), checks that the ranks' collectives agree, and fills the
// plan's programs and weight table entries (names, attributes, types; the caller resolves
// the bytes). `progress` is called after each key.
Status CompileKeys(const Graph& generic, const KeySetOptions& key_options,
                   const PipelineOptions& options, Plan& plan, WeightTable& weights,
                   const std::function<void(const CompileProgress&)>& progress = {});

}  // namespace moegraph
