// Helpers shared by every backend.
#include "runtime/backend.h"

#include <chrono>

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

double NowMicros() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace moegraph
