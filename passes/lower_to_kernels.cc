// The lower-to-kernels pass.
#include "passes/lower_to_kernels.h"

#include "ir/op_registry.h"
#include "ir/printer.h"
#include "passes/memory_plan.h"
#include "passes/specialize.h"

namespace moegraph {

int32_t WeightTable::Intern(const Op& weight_op, const Type& type) {
  std::string key = type.ToString();
  for (const auto& [name, value] : weight_op.attrs)
    key += "|" + name + "=" + AttributeToString(value);
  auto it = index_.find(key);
  if (it != index_.end()) return it->second;
  const int32_t index = static_cast<int32_t>(entries_.size());
  entries_.push_back(Entry{weight_op.StringAttr("name"), weight_op.attrs, type});
  index_[key] = index;
  return index;
}

namespace {

StatusOr<std::vector<int64_t>> StaticShape(const Graph& graph, ValueId id) {
  std::vector<int64_t> shape;
  for (const Dim& d : graph.type(id).dims) {
    if (!d.is_static()) {
      return FailedPrecondition("%" + graph.value(id).name + " has symbolic dim " + d.symbol +
                                ": run specialize first");
    }
    shape.push_back(d.size);
  }
  return shape;
}

}  // namespace

StatusOr<KeyProgram> LowerToKernels(const Graph& graph, const SpecKey& key, int32_t chunk_size,
                                    WeightTable& weights) {
  MG_RETURN_IF_ERROR(CheckSpecializedFor(graph, key, chunk_size));
  KeyProgram program;
  program.key = key;
  auto arena = graph.attrs().find(kArenaBytesAttr);
  if (arena == graph.attrs().end() || !std::holds_alternative<int64_t>(arena->second)) {
    return FailedPrecondition("graph has no arena_bytes: run memory-plan first");
  }
  program.arena_bytes = std::get<int64_t>(arena->second);

  std::vector<ArgRef> refs(graph.values().size());
  std::vector<bool> bound(graph.values().size(), false);
  auto bind = [&](ValueId id, ArgRef ref) -> Status {
    ref.dtype = graph.type(id).dtype;
    MG_ASSIGN_OR_RETURN(ref.shape, StaticShape(graph, id));
    refs[id] = std::move(ref);
    bound[id] = true;
    return Status::Ok();
  };
  for (size_t i = 1; i < graph.inputs().size(); ++i) {
    ArgRef ref;
    ref.kind = ArgKind::kInput;
    ref.index = static_cast<int32_t>(i - 1);
    MG_RETURN_IF_ERROR(bind(graph.inputs()[i], ref));
  }
  for (size_t index = 0; index < graph.ops().size(); ++index) {
    const Op& op = graph.ops()[index];
    const std::string where = "op #" + std::to_string(index) + " '" + op.name() + "' (line " +
                              std::to_string(OpLine(static_cast<int>(index))) + ")";
    if (op.def->Has(kWeight)) {
      ArgRef ref;
      ref.kind = ArgKind::kWeight;
      ref.index = weights.Intern(op, graph.type(op.results[0]));
      MG_RETURN_IF_ERROR(bind(op.results[0], ref));
      continue;
    }
    if (!op.def->Has(kKernel)) {
      return FailedPrecondition(where + ": op is not legal after lowering (no kernel step)");
    }
    auto offsets_it = op.attrs.find(kArenaOffsetsAttr);
    if (offsets_it == op.attrs.end()) {
      return FailedPrecondition(where + ": no arena_offsets; run memory-plan first");
    }
    const auto& offsets = std::get<std::vector<int64_t>>(offsets_it->second);
    KernelStep step;
    step.kernel = op.def->name;
    step.op_index = static_cast<int32_t>(index);
    for (size_t i = op.def->num_meta_operands(); i < op.operands.size(); ++i) {
      if (!bound[op.operands[i]]) return Internal(where + ": operand is not bound");
      step.inputs.push_back(refs[op.operands[i]]);
    }
    for (size_t r = 0; r < op.results.size(); ++r) {
      ArgRef ref;
      ref.kind = ArgKind::kArena;
      ref.arena_offset = offsets.at(r);
      MG_RETURN_IF_ERROR(bind(op.results[r], ref));
      if (ref.arena_offset + refs[op.results[r]].bytes() > program.arena_bytes) {
        return Internal(where + ": result lies outside the arena");
      }
      step.outputs.push_back(refs[op.results[r]]);
    }
    KernelParams params = PackKernelParams(op);
    step.ints = std::move(params.ints);
    step.floats = std::move(params.floats);
    program.steps.push_back(std::move(step));
  }
  if (graph.outputs().size() != 1 || !bound[graph.outputs()[0]] ||
      refs[graph.outputs()[0]].kind != ArgKind::kArena) {
    return FailedPrecondition("the graph must have one output computed in the arena (the logits)");
  }
  program.logits = refs[graph.outputs()[0]];
  program.ir = PrintGraph(graph);
  return program;
}

StatusOr<bool> LowerToKernelsPass::Run(Graph& graph) {
  MG_ASSIGN_OR_RETURN(*out_, LowerToKernels(graph, key_, chunk_size_, *weights_));
  return false;
}

}  // namespace moegraph
