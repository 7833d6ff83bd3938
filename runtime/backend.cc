// Helpers shared by every backend.
#include "runtime/backend.h"

#include <algorithm>
#include <chrono>

#include "ir/op_registry.h"

namespace moegraph {

Status ResolveArgument(const ArgRef& ref, const ExecBindings& b, TensorArg& out) {
  if (ref.shape.size() > static_cast<size_t>(kMaxRank)) {
    return InvalidArgument("argument rank " + std::to_string(ref.shape.size()) + " exceeds " +
                           std::to_string(kMaxRank));
  }
  switch (ref.kind) {
    case ArgKind::kArena:
      if (ref.arena_offset < 0 ||
          static_cast<uint64_t>(ref.arena_offset + ref.bytes()) > b.arena_bytes) {
        return InvalidArgument("arena slot [" + std::to_string(ref.arena_offset) + ", +" +
                               std::to_string(ref.bytes()) + ") lies outside the " +
                               std::to_string(b.arena_bytes) + "-byte arena");
      }
      out = TensorArg{};
      out.data = b.arena + ref.arena_offset;
      break;
    case ArgKind::kWeight:
      if (!b.weights || ref.index < 0 || static_cast<size_t>(ref.index) >= b.weights->size()) {
        return InvalidArgument("weight index " + std::to_string(ref.index) + " is out of range");
      }
      out = (*b.weights)[ref.index];
      break;
    case ArgKind::kInput:
      if (ref.index < 0 || static_cast<size_t>(ref.index) >= b.inputs.size()) {
        return InvalidArgument("input slot " + std::to_string(ref.index) + " is not bound");
      }
      out = TensorArg{};
      out.data = b.inputs[ref.index];
      break;
  }
  out.dtype = ref.dtype;
  out.rank = static_cast<int>(ref.shape.size());
  for (int i = 0; i < out.rank; ++i)
    out.shape[i] = ref.shape[i];
  return Status::Ok();
}

Status BindStep(const KernelStep& step, const ExecBindings& bindings, int num_threads,
                std::vector<TensorArg>& args, BoundStep& out) {
  const std::string where = "step '" + step.kernel + "'";
  const OpDef* def = LookupOp(step.kernel);
  if (def == nullptr) return InvalidArgument(where + " names no op in the registry");
  // The load-time step check refuses such a plan; a step built by hand may still get here.
  const size_t num_ints = def->params ? def->params->num_ints : 0;
  const size_t num_floats = def->params ? def->params->num_floats : 0;
  if (step.ints.size() != num_ints || step.floats.size() != num_floats) {
    return InvalidArgument(where + " has " + std::to_string(step.ints.size()) + " ints and " +
                           std::to_string(step.floats.size()) + " floats, expected " +
                           std::to_string(num_ints) + " and " + std::to_string(num_floats) +
                           (def->params ? std::string(" (") + def->params->type_name + ")" : ""));
  }
  if (def->params && def->params->size > kMaxKernelParamBytes) {
    return Internal(where + ": " + def->params->type_name + " does not fit in KernelArgs::params");
  }
  out.first_arg = args.size();
  out.num_in = step.inputs.size();
  out.num_out = step.outputs.size();
  for (const ArgRef& ref : step.inputs) {
    args.emplace_back();
    MG_RETURN_IF_ERROR(ResolveArgument(ref, bindings, args.back()).WithContext(where));
  }
  for (const ArgRef& ref : step.outputs) {
    if (ref.kind != ArgKind::kArena) return InvalidArgument(where + " writes outside the arena");
    args.emplace_back();
    MG_RETURN_IF_ERROR(ResolveArgument(ref, bindings, args.back()).WithContext(where));
  }
  out.args = KernelArgs{};
  // Only ops that declare NeedsForwardMeta see the step's metadata.
  out.args.meta = def->Has(kNeedsForwardMeta) ? bindings.meta : nullptr;
  out.args.kv = bindings.kv;
  out.args.comm = def->Has(kCollective) ? bindings.comm : nullptr;
  out.args.num_in = static_cast<int>(out.num_in);
  out.args.num_out = static_cast<int>(out.num_out);
  out.args.num_threads = num_threads;
  // Decoded once here: replay hands kernels the struct, not the wire arrays.
  if (def->params) SetParamsFromWire(out.args, *def->params, step.ints.data(), step.floats.data());
  return Status::Ok();
}

void LinkStep(BoundStep& step, std::vector<TensorArg>& args) {
  step.args.in = args.data() + step.first_arg;
  step.args.out = args.data() + step.first_arg + step.num_in;
}

double NowMicros() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace moegraph
