// The cse pass.
#include "passes/cse.h"

#include <unordered_map>

#include "ir/op_registry.h"

namespace moegraph {
namespace {

// "kind(%3,%7){attrs}->types": equal keys mean equal values.
std::string CanonicalKey(const Graph& graph, const Op& op) {
  std::string key = op.def->name + "(";
  for (ValueId v : op.operands) {
    key += std::to_string(v) + ",";
  }
  key += "){";
  for (const auto& [name, value] : op.attrs) {
    if (name == kArenaOffsetsAttr) continue;
    key += name + "=" + AttributeToString(value) + ",";
  }
  key += "}->";
  for (ValueId r : op.results) {
    key += graph.IsValid(r) ? graph.type(r).ToString() : "<invalid>";
    key += ",";
  }
  return key;
}

}  // namespace

StatusOr<bool> CsePass::Run(Graph& graph) {
  std::vector<ValueId> replacement(graph.values().size());
  for (size_t v = 0; v < replacement.size(); ++v) {
    replacement[v] = static_cast<ValueId>(v);
  }
  auto resolve = [&](ValueId v) { return graph.IsValid(v) ? replacement[v] : v; };

  std::unordered_map<std::string, size_t> first_with_key;  // key -> index in `kept`
  std::vector<Op> kept;
  kept.reserve(graph.ops().size());
  bool changed = false;
  for (const Op& original : graph.ops()) {
    Op op = original;
    for (ValueId& v : op.operands) {
      v = resolve(v);
    }
    if (!op.def || !op.def->Has(kPure)) {
      kept.push_back(std::move(op));
      continue;
    }
    auto [it, inserted] = first_with_key.emplace(CanonicalKey(graph, op), kept.size());
    if (inserted) {
      kept.push_back(std::move(op));
      continue;
    }
    const Op& earlier = kept[it->second];
    for (size_t r = 0; r < op.results.size(); ++r) {
      if (graph.IsValid(op.results[r])) replacement[op.results[r]] = earlier.results[r];
    }
    changed = true;
  }
  if (!changed) return false;
  std::vector<ValueId> outputs = graph.outputs();
  for (ValueId& v : outputs) {
    v = resolve(v);
  }
  graph.SetOutputs(std::move(outputs));
  graph.ReplaceOps(std::move(kept));
  return true;
}

}  // namespace moegraph
