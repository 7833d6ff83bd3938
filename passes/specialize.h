// specialize{key}: binds a generic graph to one specialization key.
//
// Invariant established: every dim is static (T = token_bucket,
// B = seq_bucket); the graph's attributes record the key (moe_phase,
// moe_num_chunk, max_moe_num_chunk, token_bucket, seq_bucket, moe_chunk_size);
// what the key rules out is gone: in decode every sequence has exactly one
// token, so gather_last is the identity and is folded away.
//
// Steps: 1. refuse a graph already bound to another key; 2. substitute T and B
// in every value type; 3. fold the decode-only identities; 4. record the key.
#pragma once

#include "ir/spec_key.h"
#include "passes/pass.h"

namespace moegraph {

class SpecializePass : public Pass {
 public:
  SpecializePass(SpecKey key, int32_t chunk_size) : key_(key), chunk_size_(chunk_size) {}
  std::string_view name() const override { return "specialize"; }
  StatusOr<bool> Run(Graph& graph) override;

 private:
  SpecKey key_;
  int32_t chunk_size_;
};

// Passes after specialize receive the key (and the MoE chunk size) from the
// pipeline; the attributes a graph records are for readers of the IR text.
// OK when `graph` records exactly this key; FailedPrecondition when it is not
// specialized or records another one (an IR file fed to the wrong pass).
Status CheckSpecializedFor(const Graph& graph, const SpecKey& key, int32_t chunk_size);

}  // namespace moegraph
