// lower-to-kernels: turns a specialized, memory-planned graph into the fixed
// list of kernel steps of its key.
//
// Invariant: every non-weight op becomes exactly one KernelStep whose
// arguments are fixed (arena offsets from memory-plan, weight-table indices,
// graph-input slots) and whose parameters are the op's kernel attributes; the
// graph itself is not changed.
//
// Steps: 1. give each weight op its weight-table index; 2. map graph inputs to
// input slots; 3. emit one step per remaining op in order; 4. record the
// output's arena slot as the program's logits.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/program.h"
#include "passes/pass.h"

namespace moegraph {

// The plan's weight table: one entry per distinct weight (name, attributes
// and type), shared by all keys.
class WeightTable {
 public:
  struct Entry {
    std::string name;
    AttrMap attrs;
    Type type;
  };
  int32_t Intern(const Op& weight_op, const Type& type);
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
  std::map<std::string, int32_t> index_;
};

// `graph` must be specialized for `key` (see CheckSpecializedFor).
StatusOr<KeyProgram> LowerToKernels(const Graph& graph, const SpecKey& key, int32_t chunk_size,
                                    WeightTable& weights);

// Pass form for pipelines: stores the program in `*out`; never changes the graph.
class LowerToKernelsPass : public Pass {
 public:
  LowerToKernelsPass(SpecKey key, int32_t chunk_size, WeightTable* weights, KeyProgram* out)
      : key_(key), chunk_size_(chunk_size), weights_(weights), out_(out) {}
  std::string_view name() const override { return "lower-to-kernels"; }
  StatusOr<bool> Run(Graph& graph) override;

 private:
  SpecKey key_;
  int32_t chunk_size_;
  WeightTable* weights_;
  KeyProgram* out_;
};

}  // namespace moegraph
