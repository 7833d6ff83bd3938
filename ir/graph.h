// The SSA graph: values and ops in topological order, typed inputs (the first
// is always %meta : !forward_meta) and outputs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ir/types.h"

namespace moegraph {

struct OpDef;
using ValueId = int32_t;
constexpr ValueId kNoValue = -1;

struct Value {
  std::string name;  // printed as %name; unique within the graph
  Type type;
  int32_t def_op = -1;  // index into Graph::ops, or -1 for a graph input
};

struct Op {
  const OpDef* def = nullptr;
  std::vector<ValueId> operands;
  std::vector<ValueId> results;
  AttrMap attrs;

  const std::string& name() const;
  bool HasAttr(const std::string& key) const { return attrs.count(key) != 0; }
  // Typed attribute access with a default for absent or mistyped attributes.
  int64_t IntAttr(const std::string& key, int64_t fallback = 0) const;
  double FloatAttr(const std::string& key, double fallback = 0.0) const;
  std::string StringAttr(const std::string& key, const std::string& fallback = "") const;
};

class Graph {
 public:
  explicit Graph(std::string name = "main") : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  // Graph-level attributes: a specialized graph records its key here.
  const AttrMap& attrs() const { return attrs_; }
  AttrMap& mutable_attrs() { return attrs_; }

  ValueId AddInput(std::string_view name_hint, Type type);
  // Appends an op whose result types are already known.
  int32_t AddOp(const OpDef* def, std::vector<ValueId> operands, AttrMap attrs,
                const std::vector<Type>& result_types, std::string_view name_hint = "");
  void AddOutput(ValueId value) { outputs_.push_back(value); }
  void SetOutputs(std::vector<ValueId> outputs) { outputs_ = std::move(outputs); }
  // Creates a value with no defining op yet (the parser and rewriters bind it).
  ValueId NewValue(std::string_view name_hint, Type type);

  const std::vector<Value>& values() const { return values_; }
  std::vector<Value>& mutable_values() { return values_; }
  const std::vector<Op>& ops() const { return ops_; }
  std::vector<Op>& mutable_ops() { return ops_; }
  const std::vector<ValueId>& inputs() const { return inputs_; }
  const std::vector<ValueId>& outputs() const { return outputs_; }

  bool IsValid(ValueId id) const { return id >= 0 && id < static_cast<ValueId>(values_.size()); }
  const Value& value(ValueId id) const { return values_[id]; }
  const Type& type(ValueId id) const { return values_[id].type; }
  // The %meta input, or kNoValue when the graph has no !forward_meta first input.
  ValueId meta() const;

  // Replaces the op list (a rewrite built a new one); re-links def_op of
  // every result. Values no longer defined or used stay in the table but are
  // never printed.
  void ReplaceOps(std::vector<Op> ops);
  // Replaces every use of `from` (operands and outputs) with `to`.
  void ReplaceAllUses(ValueId from, ValueId to);
  // Renames a value; the caller guarantees `name` is not taken.
  void SetValueName(ValueId id, const std::string& name);
  // A fresh value name derived from `hint` ("x", "x.1", ...).
  std::string UniqueName(std::string_view hint);

 private:
  std::string name_;
  AttrMap attrs_;
  std::vector<Value> values_;
  std::vector<Op> ops_;
  std::vector<ValueId> inputs_;
  std::vector<ValueId> outputs_;
  std::unordered_set<std::string> used_names_;
};

// Structural equality: same name, inputs, ops (kind, operand/result names
// and types, attributes) and outputs. Value ids may differ.
bool StructurallyEqual(const Graph& a, const Graph& b, std::string* why = nullptr);

}  // namespace moegraph
