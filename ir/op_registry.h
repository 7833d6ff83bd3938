// The one op registry: every op kind's name, operands, attributes, result
// type rule, traits and reference (CPU) semantics. Passes, the verifier, the
// parser and the interpreters all read op knowledge from here; none switches
// over op kinds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "kernels/kernel_abi.h"
#include "support/status.h"

namespace moegraph {

enum OpTrait : uint32_t {
  kNeedsForwardMeta = 1u << 0,  // operand 0 must be the graph's %meta
  kPure = 1u << 1,              // no side effects: CSE and DCE may touch it
  kCollective = 1u << 2,        // communicates across ranks
  kHostSync = 1u << 3,          // waits for the host: never inside a captured region
  kWeight = 1u << 4,            // defines a checkpoint weight (no operands)
  // Dim 0 of result 0 is tokens (from `row_offset` on, when the op has that
  // attribute): rows at or past num_tokens are padding, which the kernel may
  // skip and writes as zeros. Only NeedsForwardMeta ops
  // can know num_tokens, so the registry requires it with this trait. Ops
  // without it (linear, add, silu_mul, the pair- and slot-row MoE kernels)
  // treat every row as real: their rows may be (token, expert) pairs.
  kTokenRows = 1u << 5,
};

// An attribute any op may carry: memory-plan's arena byte offset of each
// result ([o0, o1, ...]).
inline constexpr const char* kArenaOffsetsAttr = "arena_offsets";

enum class AttrKind : uint8_t { kInt, kFloat, kString, kInts };

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
  std::vector<AttrSpec> attrs;
  // Attributes packed, in order, into KernelArgs::ints / ::floats.
  std::vector<std::string> kernel_ints;
  std::vector<std::string> kernel_floats;
  InferFn infer = nullptr;
  KernelFn reference = nullptr;  // eager CPU semantics; null for ops with no kernel (weight)

  bool Has(OpTrait trait) const { return (traits & trait) != 0; }
  // Number of leading operands that are not data (1 for %meta, else 0).
  int num_meta_operands() const { return Has(kNeedsForwardMeta) ? 1 : 0; }
};

const OpDef* LookupOp(std::string_view name);
const std::vector<const OpDef*>& AllOps();

// Runs the op's result-type rule on its operands in `graph`.
StatusOr<std::vector<Type>> InferResultTypes(const Graph& graph, const Op& op);

// Packs the op's kernel parameters (kernel_ints / kernel_floats attributes).
Status PackKernelParams(const Op& op, KernelArgs& args);

}  // namespace moegraph
