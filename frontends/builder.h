// GraphBuilder: the API model definitions are written in. It records ops
// with registry-inferred result types; %meta is never added implicitly, so a
// definition that forgets to pass it to an op that needs it fails to build.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

class GraphBuilder {
 public:
  explicit GraphBuilder(std::string graph_name);

  // The graph's first input, %meta : !forward_meta.
  ValueId meta() const { return meta_; }
  ValueId Input(std::string_view name, Type type);
  // A checkpoint weight; the same name (and attributes) yields the same value.
  ValueId Weight(const std::string& name, Type type, AttrMap attrs = {});

  // Appends `kind` with result types from the registry's rule. On error the
  // builder remembers the first fault, returns kNoValue results, and Finish
  // reports it.
  std::vector<ValueId> Add(std::string_view kind, std::vector<ValueId> operands, AttrMap attrs = {},
                           std::string_view name_hint = "");
  // Single-result convenience.
  ValueId Add1(std::string_view kind, std::vector<ValueId> operands, AttrMap attrs = {},
               std::string_view name_hint = "");

  void Output(ValueId value) { graph_.AddOutput(value); }
  // The graph, verified; or the first fault met while building.
  StatusOr<Graph> Finish() &&;

 private:
  void Fail(Status status);

  Graph graph_;
  ValueId meta_ = kNoValue;
  Status first_error_;
  std::map<std::string, ValueId> weights_;
};

}  // namespace moegraph
