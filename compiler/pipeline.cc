// Pipeline assembly.
#include "compiler/pipeline.h"

#include <algorithm>
#include <chrono>

#include "passes/cse.h"
#include "passes/dce.h"
#include "passes/fuse.h"
#include "passes/memory_plan.h"
#include "passes/moe_chunk.h"
#include "passes/moe_lower.h"
#include "passes/specialize.h"
#include "plan/collectives.h"

namespace moegraph {
namespace {

std::vector<std::unique_ptr<Pass>> MakePasses(const SpecKey& key, const PipelineOptions& options,
                                              WeightTable& weights, KeyProgram* program) {
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::make_unique<SpecializePass>(key, options.chunk_size));
  passes.push_back(std::make_unique<MoeChunkPass>(key, options.chunk_size));
  passes.push_back(
      std::make_unique<MoeLowerPass>(key, options.chunk_size, options.expert_parallel));
  if (options.fuse) passes.push_back(std::make_unique<FusePass>());
  passes.push_back(std::make_unique<DcePass>());
  passes.push_back(std::make_unique<CsePass>());
  passes.push_back(std::make_unique<MemoryPlanPass>());
  if (program)
    passes.push_back(
        std::make_unique<LowerToKernelsPass>(key, options.chunk_size, &weights, program));
  return passes;
}

}  // namespace

std::vector<std::string> PipelinePassNames(bool fuse) {
  WeightTable weights;
  KeyProgram program;
  PipelineOptions options;
  options.fuse = fuse;
  std::vector<std::string> names;
  for (const auto& pass : MakePasses(SpecKey{}, options, weights, &program)) {
    names.emplace_back(pass->name());
  }
  return names;
}

StatusOr<Graph> RunPipeline(const Graph& generic, const SpecKey& key,
                            const PipelineOptions& options, WeightTable& weights,
                            KeyProgram* program) {
  PassManagerOptions pm = options.pass_manager;
  pm.dump_tag = key.ToString();
  PassManager manager(pm);
  bool found = options.stop_after.empty();
  for (auto& pass : MakePasses(key, options, weights, program)) {
    const std::string name(pass->name());
    manager.Add(std::move(pass));
    if (name == options.stop_after) {
      found = true;
      break;
    }
  }
  if (!found) {
    std::string known;
    for (const std::string& name : PipelinePassNames(options.fuse))
      known += " " + name;
    return InvalidArgument("no pass named '" + options.stop_after +
                           "'; the pipeline runs:" + known);
  }
  Graph graph = generic;
  MG_RETURN_IF_ERROR(manager.Run(graph).WithContext("compiling key " + key.ToString()));
  return graph;
}

ExpertParallelLowering ExpertParallelFor(const KeySetOptions& key_options, int32_t rank,
                                         MoePhase phase) {
  ExpertParallelLowering ep;
  ep.size = key_options.expert_parallel;
  ep.rank = rank;
  const std::vector<int32_t>& buckets =
      phase == MoePhase::kDecode ? key_options.decode_buckets : key_options.prefill_buckets;
  const int32_t largest = buckets.empty() ? 0 : *std::max_element(buckets.begin(), buckets.end());
  ep.max_chunk_rows = std::min(largest, key_options.chunk_size);
  return ep;
}

Status CompileKeys(const Graph& generic, const KeySetOptions& key_options,
                   const PipelineOptions& options, Plan& plan, WeightTable& weights,
                   const std::function<void(const CompileProgress&)>& progress) {
  MG_ASSIGN_OR_RETURN(std::vector<SpecKey> keys, EnumerateKeys(key_options));
  plan.key_options = key_options;
  plan.programs.clear();
  const int32_t ranks = key_options.expert_parallel;
  const size_t total = keys.size() * static_cast<size_t>(ranks);
  for (int32_t rank = 0; rank < ranks; ++rank) {
    for (size_t i = 0; i < keys.size(); ++i) {
      const auto start = std::chrono::steady_clock::now();
      KeyProgram program;
      PipelineOptions key_pipeline = options;
      key_pipeline.stop_after.clear();
      if (ranks > 1)
        key_pipeline.expert_parallel = ExpertParallelFor(key_options, rank, keys[i].phase);
      StatusOr<Graph> compiled = RunPipeline(generic, keys[i], key_pipeline, weights, &program);
      if (!compiled.ok() && ranks > 1) {
        return compiled.status().WithContext("expert-parallel rank " + std::to_string(rank));
      }
      MG_RETURN_IF_ERROR(compiled.status());
      program.rank = rank;
      plan.programs.push_back(std::move(program));
      if (progress) {
        CompileProgress p;
        p.done = plan.programs.size();
        p.total = total;
        p.program = &plan.programs.back();
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        progress(p);
      }
    }
  }
  return CheckRanksAgree(plan);
}

}  // namespace moegraph
