// GraphBuilder implementation.
#include "frontends/builder.h"

#include "ir/op_registry.h"
#include "ir/printer.h"
#include "ir/verifier.h"

namespace moegraph {

GraphBuilder::GraphBuilder(std::string graph_name) : graph_(std::move(graph_name)) {
  meta_ = graph_.AddInput("meta", Type::ForwardMeta());
}

ValueId GraphBuilder::Input(std::string_view name, Type type) {
  return graph_.AddInput(name, std::move(type));
}

void GraphBuilder::Fail(Status status) {
  if (first_error_.ok()) first_error_ = std::move(status);
}

bool GraphBuilder::CheckParamsType(std::string_view kind, const ParamsInfo& params) {
  const OpDef* def = LookupOp(kind);
  if (def == nullptr || def->params == &params) return true;  // Add names an unknown op
  Fail(InvalidArgument("building op #" + std::to_string(graph_.ops().size()) + " '" +
                       std::string(kind) + "': its parameters are " +
                       (def->params ? std::string(def->params->type_name) : "none") + ", not " +
                       params.type_name));
  return false;
}

namespace {

// A readable value name for a checkpoint tensor:
// "model.layers.3.mlp.experts.{e}.up_proj.weight" -> "l3.mlp.experts.up_proj".
std::string WeightValueName(std::string name) {
  auto strip = [&](const std::string& piece) {
    size_t at = name.find(piece);
    if (at != std::string::npos) name.erase(at, piece.size());
  };
  strip(".{e}");
  strip(".weight");
  if (name.rfind("model.layers.", 0) == 0) {
    name = "l" + name.substr(13);
  } else if (name.rfind("model.", 0) == 0) {
    name = name.substr(6);
  }
  return name;
}

}  // namespace

ValueId GraphBuilder::Weight(const std::string& name, Type type, AttrMap attrs) {
  attrs["name"] = name;
  std::string key = name;
  for (const auto& [k, v] : attrs)
    key += "|" + k + "=" + AttributeToString(v);
  auto it = weights_.find(key);
  if (it != weights_.end()) return it->second;
  std::string hint = WeightValueName(name);
  if (auto row = attrs.find("row_offset"); row != attrs.end()) {
    hint += ".rows" + AttributeToString(row->second);
  }
  int32_t index = graph_.AddOp(LookupOp("weight"), {}, std::move(attrs), {std::move(type)}, hint);
  ValueId id = graph_.ops()[index].results[0];
  weights_[key] = id;
  return id;
}

std::vector<ValueId> GraphBuilder::Add(std::string_view kind, std::vector<ValueId> operands,
                                       AttrMap attrs, std::string_view name_hint) {
  const OpDef* def = LookupOp(kind);
  const std::string where = "building op #" + std::to_string(graph_.ops().size()) + " '" +
                            std::string(kind) + "' (line " +
                            std::to_string(OpLine(static_cast<int>(graph_.ops().size()))) + ")";
  if (!def) {
    Fail(InvalidArgument(where + ": no such op in the registry"));
    return {};
  }
  for (ValueId id : operands) {
    if (!graph_.IsValid(id)) return {};  // an earlier fault; already recorded
  }
  if (def->Has(kNeedsForwardMeta) && (operands.empty() || operands[0] != meta_)) {
    Fail(InvalidArgument(where + ": '" + def->name +
                         "' needs ForwardMeta: its first operand must be the graph's %meta, but "
                         "the op was built without it [rule: forward-meta]"));
    return {};
  }
  Op probe;
  probe.def = def;
  probe.operands = operands;
  probe.attrs = attrs;
  StatusOr<std::vector<Type>> types = InferResultTypes(graph_, probe);
  if (!types.ok()) {
    Fail(types.status().WithContext(where));
    return {};
  }
  int32_t index = graph_.AddOp(def, std::move(operands), std::move(attrs), *types, name_hint);
  return graph_.ops()[index].results;
}

ValueId GraphBuilder::Add1(std::string_view kind, std::vector<ValueId> operands, AttrMap attrs,
                           std::string_view name_hint) {
  std::vector<ValueId> results = Add(kind, std::move(operands), std::move(attrs), name_hint);
  return results.empty() ? kNoValue : results[0];
}

StatusOr<Graph> GraphBuilder::Finish() && {
  if (!first_error_.ok()) return first_error_;
  MG_RETURN_IF_ERROR(Verify(graph_));
  return std::move(graph_);
}

}  // namespace moegraph
