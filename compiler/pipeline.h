// The per-key compilation pipeline (DESIGN §5) and the whole-model driver
// that compiles every key of a key set into a Plan.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/spec_key.h"
#include "passes/lower_to_kernels.h"
#include "passes/pass.h"
#include "plan/plan.h"

namespace moegraph {

struct PipelineOptions {
  int32_t chunk_size = 256;
  bool fuse = true;
  PassManagerOptions pass_manager;
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

// Compiles every key of `key_options` for `generic`, and fills the plan's
// programs and weight table entries (names, attributes, types; the caller
// resolves the bytes). `progress` is called after each key.
Status CompileKeys(const Graph& generic, const KeySetOptions& key_options,
                   const PipelineOptions& options, Plan& plan, WeightTable& weights,
                   const std::function<void(const CompileProgress&)>& progress = {});

}  // namespace moegraph
