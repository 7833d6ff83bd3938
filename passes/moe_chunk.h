// moe-chunk: splits each MoE block of a specialized graph into
// max_moe_num_chunk chunk ops so that the MoE workspace is bounded by the
// chunk, not by the bucket.
//
// Invariant established: no `moe` op sees more than moe_chunk_size rows.
// Chunk i < moe_num_chunk takes rows [i*C, min((i+1)*C, T)) of the bucket
// (C = moe_chunk_size) and carries row_offset = i*C so its routing masks rows
// at or past num_tokens; chunks i >= moe_num_chunk take zero rows but still
// run, so collectives line up across expert-parallel ranks. Rows at or past
// moe_num_chunk*C are padding by the chunk rule and become zeros.
//
// Steps, per `moe` op without row_offset: 1. slice the input per chunk;
// 2. one `moe` per chunk, with the op's other operands (weights, the optional
// %bias) and attributes; 3. concatenate, padding with `zeros`; 4. replace
// the uses. A graph whose bucket fits one chunk (T <= C, one chunk) is left
// unchanged.
#pragma once

#include "ir/spec_key.h"
#include "passes/pass.h"

namespace moegraph {

class MoeChunkPass : public Pass {
 public:
  MoeChunkPass(SpecKey key, int32_t chunk_size) : key_(key), chunk_size_(chunk_size) {}
  std::string_view name() const override { return "moe-chunk"; }
  StatusOr<bool> Run(Graph& graph) override;

 private:
  SpecKey key_;
  int32_t chunk_size_;
};

}  // namespace moegraph
