// fuse: folds producer/consumer op pairs into the fused ops the kernels offer.
//
// Invariant established: none of these patterns remains where fusing it is
// legal (every intermediate it drops has no other reader, and every value the
// fused op reads is defined before the place the fused op goes):
//   a. %g = linear(%x, %wg); %u = linear(%x, %wu); %h = silu_mul(%g, %u),
//      %g and %u read only by the silu_mul
//        -> %h = linear_silu_mul(%x, %wg, %wu) at the silu_mul's place;
//   b. the same with grouped_matmul(%xp, %off, %w) (same %xp and %off)
//        -> %h = grouped_matmul_silu_mul(%xp, %off, %wg, %wu);
//   c. %s = add(%a, %b); %n = rms_norm(%s, %w) {eps}
//        -> %s, %n = add_rms_norm(%a, %b, %w) {eps}: at the rms_norm's place
//      when no op between the two reads %s, else at the add's place when %w
//      is defined before the add, else not at all. Other readers of %s keep
//      reading %s, now the fused op's first result.
// The fused op's results are the values the pattern's root defined, so their
// names, types and uses stay as they were. Fused ops carry no arena_offsets
// (fusion changes liveness; memory-plan runs after it).
//
// Steps: 1. count uses and note each value's defining op; 2. walk the ops in
// order; at a silu_mul try a/b, at an rms_norm try c; a match overwrites the
// root's slot (or the add's, for c at the add's place) with the fused op and
// marks the ops it absorbs dead; 3. drop the dead ops.
#pragma once

#include "passes/pass.h"

namespace moegraph {

class FusePass : public Pass {
 public:
  std::string_view name() const override { return "fuse"; }
  StatusOr<bool> Run(Graph& graph) override;
};

}  // namespace moegraph
