// Graph construction, rewriting helpers and structural equality.
#include "ir/graph.h"

#include "ir/op_registry.h"

namespace moegraph {

const std::string& Op::name() const {
  static const std::string kNull = "<null-op>";
  return def ? def->name : kNull;
}

int64_t Op::IntAttr(const std::string& key, int64_t fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (const auto* v = std::get_if<int64_t>(&it->second)) return *v;
  return fallback;
}

double Op::FloatAttr(const std::string& key, double fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (const auto* v = std::get_if<double>(&it->second)) return *v;
  if (const auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return fallback;
}

std::string Op::StringAttr(const std::string& key, const std::string& fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (const auto* v = std::get_if<std::string>(&it->second)) return *v;
  return fallback;
}

std::string Graph::UniqueName(std::string_view hint) {
  std::string base(hint.empty() ? "v" : hint);
  if (used_names_.insert(base).second) return base;
  for (int suffix = 1;; ++suffix) {
    std::string candidate = base + "." + std::to_string(suffix);
    if (used_names_.insert(candidate).second) return candidate;
  }
}

void Graph::SetValueName(ValueId id, const std::string& name) {
  used_names_.erase(values_[id].name);
  used_names_.insert(name);
  values_[id].name = name;
}

ValueId Graph::NewValue(std::string_view name_hint, Type type) {
  values_.push_back(Value{UniqueName(name_hint), std::move(type), -1});
  return static_cast<ValueId>(values_.size() - 1);
}

ValueId Graph::AddInput(std::string_view name_hint, Type type) {
  ValueId id = NewValue(name_hint, std::move(type));
  inputs_.push_back(id);
  return id;
}

int32_t Graph::AddOp(const OpDef* def, std::vector<ValueId> operands, AttrMap attrs,
                     const std::vector<Type>& result_types, std::string_view name_hint) {
  Op op;
  op.def = def;
  op.operands = std::move(operands);
  op.attrs = std::move(attrs);
  const int32_t op_index = static_cast<int32_t>(ops_.size());
  for (const Type& type : result_types) {
    ValueId id = NewValue(name_hint.empty() && def ? std::string_view(def->name) : name_hint, type);
    values_[id].def_op = op_index;
    op.results.push_back(id);
  }
  ops_.push_back(std::move(op));
  return op_index;
}

ValueId Graph::meta() const {
  if (inputs_.empty() || !IsValid(inputs_[0])) return kNoValue;
  return values_[inputs_[0]].type.is_meta() ? inputs_[0] : kNoValue;
}

void Graph::ReplaceOps(std::vector<Op> ops) {
  ops_ = std::move(ops);
  for (Value& v : values_)
    v.def_op = -1;
  for (size_t i = 0; i < ops_.size(); ++i) {
    for (ValueId r : ops_[i].results) {
      if (IsValid(r)) values_[r].def_op = static_cast<int32_t>(i);
    }
  }
}

void Graph::ReplaceAllUses(ValueId from, ValueId to) {
  for (Op& op : ops_) {
    for (ValueId& operand : op.operands) {
      if (operand == from) operand = to;
    }
  }
  for (ValueId& out : outputs_) {
    if (out == from) out = to;
  }
}

namespace {

bool SameValue(const Graph& a, ValueId va, const Graph& b, ValueId vb, std::string* why) {
  const bool valid_a = a.IsValid(va), valid_b = b.IsValid(vb);
  if (!valid_a || !valid_b) {
    if (valid_a != valid_b && why) *why = "one side refers to an invalid value";
    return valid_a == valid_b;
  }
  const Value& x = a.value(va);
  const Value& y = b.value(vb);
  if (x.name != y.name) {
    if (why) *why = "value %" + x.name + " vs %" + y.name;
    return false;
  }
  if (!(x.type == y.type)) {
    if (why) *why = "type of %" + x.name + ": " + x.type.ToString() + " vs " + y.type.ToString();
    return false;
  }
  return true;
}

bool SameValues(const Graph& a, const std::vector<ValueId>& xs, const Graph& b,
                const std::vector<ValueId>& ys, std::string* why) {
  if (xs.size() != ys.size()) {
    if (why) *why = "value count " + std::to_string(xs.size()) + " vs " + std::to_string(ys.size());
    return false;
  }
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!SameValue(a, xs[i], b, ys[i], why)) return false;
  }
  return true;
}

}  // namespace

bool StructurallyEqual(const Graph& a, const Graph& b, std::string* why) {
  if (a.name() != b.name()) {
    if (why) *why = "graph name @" + a.name() + " vs @" + b.name();
    return false;
  }
  if (a.attrs() != b.attrs()) {
    if (why) *why = "graph attributes differ";
    return false;
  }
  if (!SameValues(a, a.inputs(), b, b.inputs(), why)) return false;
  if (a.ops().size() != b.ops().size()) {
    if (why) {
      *why = "op count " + std::to_string(a.ops().size()) + " vs " + std::to_string(b.ops().size());
    }
    return false;
  }
  for (size_t i = 0; i < a.ops().size(); ++i) {
    const Op& x = a.ops()[i];
    const Op& y = b.ops()[i];
    std::string prefix = "op #" + std::to_string(i) + " '" + x.name() + "': ";
    if (x.def != y.def || x.attrs != y.attrs) {
      if (why) *why = prefix + "kind or attributes differ";
      return false;
    }
    if (!SameValues(a, x.operands, b, y.operands, why) ||
        !SameValues(a, x.results, b, y.results, why)) {
      if (why) *why = prefix + *why;
      return false;
    }
  }
  return SameValues(a, a.outputs(), b, b.outputs(), why);
}

}  // namespace moegraph
