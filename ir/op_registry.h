// The one op registry: every op kind's name, operands, attributes, result
// type rule and traits. Passes, the verifier, the parser and the runtime read
// op knowledge from here; none switches over op kinds. Kernels are not here:
// each backend registers its own by op name (kernels/cpu/kernel_table.h,
// kernels/cuda/cuda_ops.h), and the IR layer links no kernel code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "ir/op_params.h"
#include "ir/op_params_attrs.h"
#include "support/status.h"

namespace moegraph {

enum OpTrait : uint32_t {
  kNeedsForwardMeta = 1u << 0,  // operand 0 must be the graph's %meta
  kPure = 1u << 1,              // no side effects: CSE and DCE may touch it
  kCollective = 1u << 2,        // communicates across ranks
  kHostSync = 1u << 3,          // waits for the host: never inside a captured CUDA graph
                                // (a CPU command list is host code: it may)
  kWeight = 1u << 4,            // defines a checkpoint weight (no operands)
  // Dim 0 of result 0 is tokens (from `row_offset` on, when the op has that
  // attribute): rows at or past num_tokens are padding, which the kernel may
  // skip and writes as zeros. Only NeedsForwardMeta ops
  // can know num_tokens, so the registry requires it with this trait. Ops
  // without it (linear, add, silu_mul, the pair- and slot-row MoE kernels)
  // treat every row as real: their rows may be (token, expert) pairs.
  kTokenRows = 1u << 5,
  // Legal after lowering: lower-to-kernels turns it into a kernel step, and
  // every backend implements it. Ops without it (weight; moe and mlp, which
  // moe-lower decomposes) are rejected in a lowered program.
  kKernel = 1u << 6,
};

// An attribute any op may carry: memory-plan's arena byte offset of each
// result ([o0, o1, ...]).
inline constexpr const char* kArenaOffsetsAttr = "arena_offsets";

// The fused moe op's limits (its reference kernel keeps one row's router
// logits and routes on the stack); the shape rule enforces them.
inline constexpr int64_t kMoeOpMaxExperts = 4096;
inline constexpr int64_t kMoeOpMaxTopK = 64;

struct AttrSpec {
  std::string name;
  AttrKind kind = AttrKind::kInt;
  bool required = true;
  int64_t min = INT64_MIN;  // range for kInt (inclusive)
  int64_t max = INT64_MAX;
};

// What a result-type rule sees: the data operands' types (the %meta operand
// of a NeedsForwardMeta op is not among them), the attributes, and the
// declared result types when the op came from text (weights are typed only
// by their declaration).
struct InferContext {
  const std::vector<const Type*>& operands;
  const Op& op;
  const std::vector<const Type*>& declared_results;
};
using InferFn = StatusOr<std::vector<Type>> (*)(const InferContext&);

struct OpDef {
  std::string name;
  std::string summary;  // one line
  std::string example;  // one line of IR
  int min_data_operands = 0;
  int max_data_operands = 0;  // -1: variadic
  uint32_t traits = 0;
  // The kernel parameters: `&kParamsInfo<FooParams>` (ir/op_params.h), whose
  // fields are the op's attributes and travel in a step's ints / floats; null
  // for an op without parameters.
  const ParamsInfo* params = nullptr;
  // Attributes that are not kernel parameters (a weight's checkpoint name).
  std::vector<AttrSpec> other_attrs = {};
  InferFn infer = nullptr;
  // Every attribute: the params' fields, then other_attrs. The registry fills
  // it; the table entries leave it empty.
  std::vector<AttrSpec> attrs = {};

  bool Has(OpTrait trait) const { return (traits & trait) != 0; }
  // Number of leading operands that are not data (1 for %meta, else 0).
  int num_meta_operands() const { return Has(kNeedsForwardMeta) ? 1 : 0; }
};

const OpDef* LookupOp(std::string_view name);
const std::vector<const OpDef*>& AllOps();

// Runs the op's result-type rule on its operands in `graph`.
StatusOr<std::vector<Type>> InferResultTypes(const Graph& graph, const Op& op);

// The op's kernel parameters in a step's wire format: its params' integer
// fields in ints and float fields in floats, each in field order. An absent
// attribute packs as 0 (the verifier has refused a missing required one).
struct KernelParams {
  std::vector<int64_t> ints;
  std::vector<float> floats;
};
KernelParams PackKernelParams(const Op& op);

// The op's parameters as its struct, read from its attributes; an error when
// P is not the op's params struct or an attribute is missing, mistyped or out
// of range.
template <OpParamsStruct P>
StatusOr<P> OpParams(const Op& op) {
  if (op.def == nullptr || op.def->params != &kParamsInfo<P>) {
    return InvalidArgument("'" + op.name() + "' does not take " + P::kName);
  }
  return ParamsFromAttrs<P>(op.attrs, op.name());
}

// A 64-bit hash of everything a lowered program's meaning depends on in the
// registry (each op's name, operand counts, traits, attributes and the wire
// order of its parameters). Plans record it; a plan from a build whose op set
// differs is refused instead of misread.
uint64_t OpSetHash();

}  // namespace moegraph
