// Graph verification.
#include "ir/verifier.h"

#include <algorithm>
#include <unordered_set>

#include "ir/op_registry.h"
#include "ir/printer.h"

namespace moegraph {
namespace {

const char* AttrKindName(AttrKind kind) {
  switch (kind) {
    case AttrKind::kInt:
      return "an integer";
    case AttrKind::kFloat:
      return "a float";
    case AttrKind::kString:
      return "a string";
    case AttrKind::kInts:
      return "an integer list";
  }
  return "?";
}

bool AttrHasKind(const Attribute& attr, AttrKind kind) {
  switch (kind) {
    case AttrKind::kInt:
      return std::holds_alternative<int64_t>(attr);
    case AttrKind::kFloat:  // integers are accepted where floats are expected
      return std::holds_alternative<double>(attr) || std::holds_alternative<int64_t>(attr);
    case AttrKind::kString:
      return std::holds_alternative<std::string>(attr);
    case AttrKind::kInts:
      return std::holds_alternative<std::vector<int64_t>>(attr);
  }
  return false;
}

class Verifier {
 public:
  explicit Verifier(const Graph& graph) : graph_(graph) {}

  std::vector<Diagnostic> Run() {
    CheckInputs();
    for (size_t i = 0; i < graph_.ops().size(); ++i)
      CheckOp(static_cast<int>(i));
    for (ValueId out : graph_.outputs()) {
      if (!graph_.IsValid(out) || !defined_.count(out)) {
        Add(-1, "ssa", "graph output " + ValueRef(graph_, out) + " is not defined");
      }
    }
    if (graph_.outputs().empty()) Add(-1, "graph", "the graph has no outputs");
    return std::move(diagnostics_);
  }

 private:
  void Add(int op, std::string rule, std::string message) {
    diagnostics_.push_back(Diagnostic{op, std::move(rule), std::move(message)});
  }

  void CheckInputs() {
    if (graph_.meta() == kNoValue) {
      Add(-1, "forward-meta", "the first graph input must be %meta : !forward_meta");
    }
    for (size_t i = 0; i < graph_.inputs().size(); ++i) {
      ValueId id = graph_.inputs()[i];
      if (!graph_.IsValid(id)) {
        Add(-1, "ssa", "graph input " + std::to_string(i) + " is invalid");
        continue;
      }
      if (i > 0 && graph_.type(id).is_meta()) {
        Add(-1, "forward-meta", "only the first graph input may be !forward_meta");
      }
      Define(-1, id);
    }
  }

  void Define(int op, ValueId id) {
    if (!defined_.insert(id).second) {
      Add(op, "ssa", ValueRef(graph_, id) + " is defined twice");
    }
  }

  void CheckOp(int index) {
    const Op& op = graph_.ops()[index];
    if (!op.def) {
      Add(index, "operands", "unknown op kind");
      return;
    }
    const OpDef& def = *op.def;
    bool operands_ok = true;
    for (size_t i = 0; i < op.operands.size(); ++i) {
      ValueId id = op.operands[i];
      if (!graph_.IsValid(id)) {
        Add(index, "ssa", "operand " + std::to_string(i) + " refers to no value");
        operands_ok = false;
      } else if (!defined_.count(id)) {
        Add(index, "ssa", "operand " + ValueRef(graph_, id) + " is used before it is defined");
        operands_ok = false;
      }
    }
    const ValueId meta = graph_.meta();
    bool meta_ok = true;
    if (def.Has(kNeedsForwardMeta)) {
      if (op.operands.empty() || op.operands[0] != meta) {
        const bool has_meta_elsewhere =
            meta != kNoValue &&
            std::find(op.operands.begin(), op.operands.end(), meta) != op.operands.end();
        Add(index, "forward-meta",
            "'" + def.name + "' needs ForwardMeta: its first operand must be the graph's %meta" +
                (has_meta_elsewhere ? " (it is passed, but not first)"
                                    : ", but the op was built without it") +
                "; every MoE op, attention, MLP in an MoE block, shared expert and "
                "split/all-gather "
                "helper reads the step's phase, token count and lengths from it");
        meta_ok = false;
      }
    }
    for (size_t i = def.num_meta_operands(); i < op.operands.size(); ++i) {
      if (graph_.IsValid(op.operands[i]) && graph_.type(op.operands[i]).is_meta()) {
        Add(index, "forward-meta",
            "operand " + std::to_string(i) + " is !forward_meta but '" + def.name +
                "' takes %meta only as its first operand");
        meta_ok = false;
      }
    }
    const int num_data =
        static_cast<int>(op.operands.size()) - (meta_ok ? def.num_meta_operands() : 0);
    if (meta_ok && (num_data < def.min_data_operands ||
                    (def.max_data_operands >= 0 && num_data > def.max_data_operands))) {
      std::string expected = std::to_string(def.min_data_operands);
      if (def.max_data_operands != def.min_data_operands) {
        expected +=
            def.max_data_operands < 0 ? " or more" : " to " + std::to_string(def.max_data_operands);
      }
      Add(index, "operands",
          "'" + def.name + "' takes " + expected + " data operands" +
              (def.Has(kNeedsForwardMeta) ? " after %meta" : "") + ", got " +
              std::to_string(num_data));
      operands_ok = false;
    }
    const bool attrs_ok = CheckAttrs(index, op);
    if (operands_ok && meta_ok && attrs_ok) CheckTypes(index, op);
    for (ValueId r : op.results) {
      if (!graph_.IsValid(r)) {
        Add(index, "ssa", "a result refers to no value");
      } else {
        Define(index, r);
      }
    }
    if (op.results.empty()) Add(index, "operands", "'" + def.name + "' must have results");
  }

  bool CheckAttrs(int index, const Op& op) {
    bool ok = true;
    for (const AttrSpec& spec : op.def->attrs) {
      auto it = op.attrs.find(spec.name);
      if (it == op.attrs.end()) {
        if (spec.required) {
          Add(index, "attributes", "missing attribute '" + spec.name + "'");
          ok = false;
        }
        continue;
      }
      if (!AttrHasKind(it->second, spec.kind)) {
        Add(index, "attributes",
            "attribute '" + spec.name + "' must be " + AttrKindName(spec.kind) + ", got " +
                AttributeToString(it->second));
        ok = false;
        continue;
      }
      if (spec.kind == AttrKind::kInt) {
        int64_t v = std::get<int64_t>(it->second);
        if (v < spec.min || v > spec.max) {
          Add(index, "attributes",
              "attribute '" + spec.name + "' = " + std::to_string(v) + " is outside [" +
                  std::to_string(spec.min) + ", " + std::to_string(spec.max) + "]");
          ok = false;
        }
      }
    }
    for (const auto& [key, value] : op.attrs) {
      if (key == kArenaOffsetsAttr) {
        ok &= CheckArenaOffsets(index, op, value);
        continue;
      }
      bool known = false;
      for (const AttrSpec& spec : op.def->attrs)
        known |= spec.name == key;
      if (!known) {
        Add(index, "attributes", "'" + op.def->name + "' has no attribute '" + key + "'");
        ok = false;
      }
    }
    return ok;
  }

  // memory-plan's annotation: one non-negative byte offset per result.
  bool CheckArenaOffsets(int index, const Op& op, const Attribute& value) {
    const auto* offsets = std::get_if<std::vector<int64_t>>(&value);
    if (!offsets || offsets->size() != op.results.size()) {
      Add(index, "attributes",
          std::string("'") + kArenaOffsetsAttr + "' must list one offset per result");
      return false;
    }
    for (int64_t offset : *offsets) {
      if (offset < 0) {
        Add(index, "attributes", std::string("'") + kArenaOffsetsAttr + "' has a negative offset");
        return false;
      }
    }
    return true;
  }

  void CheckTypes(int index, const Op& op) {
    StatusOr<std::vector<Type>> inferred = InferResultTypes(graph_, op);
    if (!inferred.ok()) {
      Add(index, "types", inferred.status().message());
      return;
    }
    if (inferred->size() != op.results.size()) {
      Add(index, "types",
          "'" + op.def->name + "' has " + std::to_string(inferred->size()) + " results, got " +
              std::to_string(op.results.size()));
      return;
    }
    for (size_t i = 0; i < op.results.size(); ++i) {
      if (!graph_.IsValid(op.results[i])) continue;
      const Type& declared = graph_.type(op.results[i]);
      if (!(declared == (*inferred)[i])) {
        Add(index, "types",
            "result " + ValueRef(graph_, op.results[i]) + " is declared " + declared.ToString() +
                " but the operands give " + (*inferred)[i].ToString());
      }
    }
  }

  const Graph& graph_;
  std::unordered_set<ValueId> defined_;
  std::vector<Diagnostic> diagnostics_;
};

}  // namespace

std::vector<Diagnostic> VerifyGraph(const Graph& graph) {
  return Verifier(graph).Run();
}

std::string FormatDiagnostic(const Graph& graph, const Diagnostic& d) {
  std::string where = "graph @" + graph.name();
  if (d.op_index >= 0) {
    const std::string name =
        d.op_index < static_cast<int>(graph.ops().size()) ? graph.ops()[d.op_index].name() : "?";
    where = "op #" + std::to_string(d.op_index) + " '" + name + "' (line " +
            std::to_string(OpLine(d.op_index)) + ")";
  }
  return where + ": " + d.message + " [rule: " + d.rule + "]";
}

Status Verify(const Graph& graph) {
  std::vector<Diagnostic> diagnostics = VerifyGraph(graph);
  if (diagnostics.empty()) return Status::Ok();
  std::string message = "graph @" + graph.name() + " failed verification (" +
                        std::to_string(diagnostics.size()) + " fault" +
                        (diagnostics.size() > 1 ? "s" : "") + "):";
  constexpr size_t kMaxListed = 8;
  for (size_t i = 0; i < diagnostics.size() && i < kMaxListed; ++i) {
    message += "\n  " + FormatDiagnostic(graph, diagnostics[i]);
  }
  return InvalidArgument(message);
}

}  // namespace moegraph
