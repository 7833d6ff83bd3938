// GraphBuilder: the API model definitions are written in. It records ops
// with registry-inferred result types; %meta is never added implicitly, so a
// definition that forgets to pass it to an op that needs it fails to build.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "ir/op_params_attrs.h"
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
  // Typed: `kind`'s parameters as its params struct (ir/op_params.h), e.g.
  // Add1("rope", {meta, q}, RopeParams{.head_dim = 128, .theta = 1e6}). A
  // struct that is not `kind`'s is a build fault like any other.
  template <OpParamsStruct P>
  std::vector<ValueId> Add(std::string_view kind, std::vector<ValueId> operands, const P& params,
                           std::string_view name_hint = "") {
    if (!CheckParamsType(kind, kParamsInfo<P>)) return {};
    return Add(kind, std::move(operands), ParamsToAttrs(params), name_hint);
  }
  template <OpParamsStruct P>
  ValueId Add1(std::string_view kind, std::vector<ValueId> operands, const P& params,
               std::string_view name_hint = "") {
    if (!CheckParamsType(kind, kParamsInfo<P>)) return kNoValue;
    return Add1(kind, std::move(operands), ParamsToAttrs(params), name_hint);
  }

  void Output(ValueId value) { graph_.AddOutput(value); }
  // The graph, verified; or the first fault met while building.
  StatusOr<Graph> Finish() &&;

 private:
  void Fail(Status status);
  // Whether `kind` takes `params` (else records the fault).
  bool CheckParamsType(std::string_view kind, const ParamsInfo& params);

  Graph graph_;
  ValueId meta_ = kNoValue;
  Status first_error_;
  std::map<std::string, ValueId> weights_;
};

}  // namespace moegraph
