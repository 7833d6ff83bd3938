// OpEmitter and use counting.
#include "passes/rewrite.h"

#include "ir/op_registry.h"

namespace moegraph {

StatusOr<std::vector<ValueId>> OpEmitter::Emit(std::string_view kind, std::vector<ValueId> operands,
                                               AttrMap attrs, std::string_view name_hint) {
  const OpDef* def = LookupOp(kind);
  if (!def) return Internal("no op '" + std::string(kind) + "' in the registry");
  Op op;
  op.def = def;
  op.operands = std::move(operands);
  op.attrs = std::move(attrs);
  MG_ASSIGN_OR_RETURN(std::vector<Type> types, InferResultTypes(graph_, op));
  for (Type& type : types) {
    ValueId id = graph_.NewValue(name_hint.empty() ? std::string_view(def->name) : name_hint,
                                 std::move(type));
    op.results.push_back(id);
  }
  std::vector<ValueId> results = op.results;
  ops_.push_back(std::move(op));
  return results;
}

StatusOr<ValueId> OpEmitter::Emit1(std::string_view kind, std::vector<ValueId> operands,
                                   AttrMap attrs, std::string_view name_hint) {
  MG_ASSIGN_OR_RETURN(std::vector<ValueId> results,
                      Emit(kind, std::move(operands), std::move(attrs), name_hint));
  if (results.size() != 1) return Internal("'" + std::string(kind) + "' has several results");
  return results[0];
}

std::vector<int> CountUses(const Graph& graph) {
  std::vector<int> uses(graph.values().size(), 0);
  for (const Op& op : graph.ops()) {
    for (ValueId v : op.operands) {
      if (graph.IsValid(v)) ++uses[v];
    }
  }
  for (ValueId v : graph.outputs()) {
    if (graph.IsValid(v)) ++uses[v];
  }
  return uses;
}

}  // namespace moegraph
