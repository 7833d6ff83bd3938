// Pipeline assembly.
#include "compiler/pipeline.h"

#include <chrono>

#include "passes/cse.h"
#include "passes/dce.h"
#include "passes/fuse.h"
#include "passes/memory_plan.h"
#include "passes/moe_chunk.h"
#include "passes/moe_lower.h"
#include "passes/specialize.h"

namespace moegraph {
namespace {

std::vector<std::unique_ptr<Pass>> MakePasses(const SpecKey& key, const PipelineOptions& options,
                                              WeightTable& weights, KeyProgram* program) {
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::make_unique<SpecializePass>(key, options.chunk_size));
  passes.push_back(std::make_unique<MoeChunkPass>(key, options.chunk_size));
  passes.push_back(std::make_unique<MoeLowerPass>(key, options.chunk_size));
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

Status CompileKeys(const Graph& generic, const KeySetOptions& key_options,
                   const PipelineOptions& options, Plan& plan, WeightTable& weights,
                   const std::function<void(const CompileProgress&)>& progress) {
  MG_ASSIGN_OR_RETURN(std::vector<SpecKey> keys, EnumerateKeys(key_options));
  plan.key_options = key_options;
  plan.programs.clear();
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    KeyProgram program;
    PipelineOptions key_pipeline = options;
    key_pipeline.stop_after.clear();
    MG_RETURN_IF_ERROR(RunPipeline(generic, keys[i], key_pipeline, weights, &program).status());
    plan.programs.push_back(std::move(program));
    if (progress) {
      CompileProgress p;
      p.done = i + 1;
      p.total = keys.size();
      p.program = &plan.programs.back();
      p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress(p);
    }
  }
  return Status::Ok();
}

}  // namespace moegraph
