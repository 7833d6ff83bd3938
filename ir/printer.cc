// Printer for the generic text form.
#include "ir/printer.h"

#include "ir/op_registry.h"

namespace moegraph {
namespace {

std::string PrintAttrs(const AttrMap& attrs) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : attrs) {
    if (!first) out += ", ";
    first = false;
    out += key + " = " + AttributeToString(value);
  }
  return out + "}";
}

std::string TypeOf(const Graph& graph, ValueId id) {
  return graph.IsValid(id) ? graph.type(id).ToString() : "<invalid>";
}

}  // namespace

std::string ValueRef(const Graph& graph, ValueId id) {
  if (!graph.IsValid(id)) return "%<invalid:" + std::to_string(id) + ">";
  return "%" + graph.value(id).name;
}

std::string PrintGraph(const Graph& graph, const PrintOptions& options) {
  std::string out = "graph @" + graph.name() + "(";
  for (size_t i = 0; i < graph.inputs().size(); ++i) {
    if (i) out += ", ";
    ValueId id = graph.inputs()[i];
    out += ValueRef(graph, id) + ": " + TypeOf(graph, id);
  }
  out += ")";
  if (!graph.attrs().empty()) out += " attributes " + PrintAttrs(graph.attrs());
  out += " {\n";
  for (size_t i = 0; i < graph.ops().size(); ++i) {
    const Op& op = graph.ops()[i];
    out += "  ";
    for (size_t r = 0; r < op.results.size(); ++r) {
      if (r) out += ", ";
      out += ValueRef(graph, op.results[r]);
    }
    if (!op.results.empty()) out += " = ";
    out += op.name() + "(";
    for (size_t o = 0; o < op.operands.size(); ++o) {
      if (o) out += ", ";
      out += ValueRef(graph, op.operands[o]);
    }
    out += ")";
    if (!op.attrs.empty()) out += " " + PrintAttrs(op.attrs);
    if (!op.results.empty()) {
      out += " : ";
      for (size_t r = 0; r < op.results.size(); ++r) {
        if (r) out += ", ";
        out += TypeOf(graph, op.results[r]);
      }
    }
    auto fault = options.op_faults.find(static_cast<int>(i));
    if (fault != options.op_faults.end()) {
      std::string note = fault->second;
      for (char& c : note) {
        if (c == '\n') c = ' ';
      }
      out += "  // FAULT: " + note;
    }
    out += "\n";
  }
  out += "  return";
  for (size_t i = 0; i < graph.outputs().size(); ++i) {
    out += i ? ", " : " ";
    out += ValueRef(graph, graph.outputs()[i]);
  }
  out += "\n}\n";
  return out;
}

}  // namespace moegraph
