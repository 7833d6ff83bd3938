// The compile driver.
#include "compiler/compile_model.h"

#include <filesystem>
#include <set>

#include "checkpoint/weights.h"
#include "ir/op_registry.h"
#include "ir/printer.h"

namespace moegraph {

StatusOr<Plan> CompileModel(const HfModel& model, const CompileModelOptions& options,
                            const std::function<void(const CompileProgress&)>& progress) {
  Plan plan;
  plan.model = model.Info();
  plan.model_dir = std::filesystem::absolute(model.dir).lexically_normal().string();
  plan.source_ir = PrintGraph(model.graph);
  plan.compile_options = options.command_line;
  PipelineOptions pipeline = options.pipeline;
  pipeline.chunk_size = options.keys.chunk_size;
  WeightTable table;
  MG_RETURN_IF_ERROR(CompileKeys(model.graph, options.keys, pipeline, plan, table, progress));
  for (const WeightTable::Entry& entry : table.entries()) {
    Op op;
    op.def = LookupOp("weight");
    op.attrs = entry.attrs;
    MG_ASSIGN_OR_RETURN(ResolvedWeight resolved, ResolveWeight(op, entry.type, model.checkpoint));
    PlanWeight w;
    w.name = entry.name;
    w.experts = op.IntAttr("experts", 0);
    w.row_offset = op.IntAttr("row_offset", 0);
    w.dtype = resolved.dtype;
    w.shape = resolved.shape;
    for (const WeightSlice& s : resolved.slices) {
      w.slices.push_back(
          PlanWeightSlice{std::filesystem::path(s.file).filename().string(), s.offset, s.bytes});
    }
    plan.weights.push_back(std::move(w));
  }
  // Fingerprints of the files the weights come from, to detect a checkpoint
  // changed after this compile.
  std::set<std::string> files;
  for (const PlanWeight& w : plan.weights) {
    for (const PlanWeightSlice& s : w.slices)
      files.insert(s.file);
  }
  for (const std::string& file : files) {
    MG_ASSIGN_OR_RETURN(PlanCheckpointFile fingerprint,
                        FingerprintCheckpointFile(model.dir, file, options.hash_checkpoint));
    plan.checkpoint_files.push_back(std::move(fingerprint));
  }
  plan.op_set_hash = OpSetHash();
  return plan;
}

}  // namespace moegraph
