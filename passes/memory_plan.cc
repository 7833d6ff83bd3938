// The memory-plan pass.
#include "passes/memory_plan.h"

#include <algorithm>

#include "ir/op_registry.h"
#include "ir/printer.h"

namespace moegraph {
namespace {

struct Buffer {
  int op = 0;      // defining op
  int result = 0;  // index among that op's results
  int64_t bytes = 0;
  int first = 0;  // live range [first, last], op indices
  int last = 0;
  int64_t offset = 0;

  bool Overlaps(const Buffer& other) const { return first <= other.last && other.first <= last; }
  int64_t end() const { return offset + bytes; }
};

bool InArena(const Op& op) {
  return !(op.def && op.def->Has(kWeight));
}

Status RequireStatic(const Graph& graph, ValueId v) {
  const Type& type = graph.type(v);
  if (type.is_tensor() && !type.is_static()) {
    return FailedPrecondition("memory-plan needs static shapes, but " + ValueRef(graph, v) +
                              " is " + type.ToString() + " (run specialize first)");
  }
  return Status::Ok();
}

StatusOr<int64_t> BufferBytes(const Graph& graph, ValueId v) {
  const Type& type = graph.type(v);
  if (!type.is_tensor()) return int64_t{0};
  const int64_t numel = type.StaticNumel();
  const int64_t element = static_cast<int64_t>(DTypeBytes(type.dtype));
  if (element == 0) {
    return FailedPrecondition("memory-plan: " + ValueRef(graph, v) + " is " + type.ToString() +
                              ", a weight storage format that no arena buffer may have");
  }
  if (numel < 0 || (numel > 0 && numel > (INT64_MAX - kArenaAlignment) / element)) {
    return FailedPrecondition("memory-plan: " + ValueRef(graph, v) + " (" + type.ToString() +
                              ") is too large to plan");
  }
  const int64_t bytes = numel * element;
  return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
}

// Step 4: the offset of `buffer` given the placed buffers.
int64_t BestFit(const Buffer& buffer, const std::vector<const Buffer*>& placed) {
  std::vector<const Buffer*> overlapping;
  for (const Buffer* other : placed) {
    if (other->Overlaps(buffer)) overlapping.push_back(other);
  }
  std::sort(overlapping.begin(), overlapping.end(),
            [](const Buffer* a, const Buffer* b) { return a->offset < b->offset; });
  int64_t best_offset = -1;
  int64_t best_gap = INT64_MAX;
  int64_t cursor = 0;  // lowest byte not covered by the overlapping buffers seen so far
  for (const Buffer* other : overlapping) {
    const int64_t gap = other->offset - cursor;
    if (gap >= buffer.bytes && gap < best_gap) {
      best_gap = gap;
      best_offset = cursor;
    }
    cursor = std::max(cursor, other->end());
  }
  return best_offset >= 0 ? best_offset : cursor;
}

}  // namespace

StatusOr<bool> MemoryPlanPass::Run(Graph& graph) {
  // Step 1.
  for (ValueId v : graph.inputs()) {
    if (graph.IsValid(v)) MG_RETURN_IF_ERROR(RequireStatic(graph, v));
  }
  for (const Op& op : graph.ops()) {
    for (ValueId r : op.results) {
      if (!graph.IsValid(r)) return InvalidArgument("memory-plan: an op result is invalid");
      MG_RETURN_IF_ERROR(RequireStatic(graph, r));
    }
  }

  // Step 2.
  const int num_ops = static_cast<int>(graph.ops().size());
  std::vector<int> last_use(graph.values().size(), -1);
  for (int i = 0; i < num_ops; ++i) {
    for (ValueId v : graph.ops()[i].operands) {
      if (graph.IsValid(v)) last_use[v] = i;
    }
  }
  for (ValueId v : graph.outputs()) {
    if (graph.IsValid(v)) last_use[v] = num_ops - 1;
  }
  std::vector<Buffer> buffers;
  for (int i = 0; i < num_ops; ++i) {
    const Op& op = graph.ops()[i];
    if (!InArena(op)) continue;
    for (size_t r = 0; r < op.results.size(); ++r) {
      const ValueId v = op.results[r];
      Buffer buffer;
      buffer.op = i;
      buffer.result = static_cast<int>(r);
      MG_ASSIGN_OR_RETURN(buffer.bytes, BufferBytes(graph, v));
      buffer.first = i;
      buffer.last = std::max(i, last_use[v]);
      buffers.push_back(buffer);
    }
  }

  // Steps 3 and 4.
  std::vector<Buffer*> order;
  for (Buffer& buffer : buffers) {
    order.push_back(&buffer);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const Buffer* a, const Buffer* b) { return a->bytes > b->bytes; });
  std::vector<const Buffer*> placed;
  int64_t arena_bytes = 0;
  for (Buffer* buffer : order) {
    if (buffer->bytes == 0) continue;  // offset 0, no space
    buffer->offset = BestFit(*buffer, placed);
    placed.push_back(buffer);
    arena_bytes = std::max(arena_bytes, buffer->end());
  }

  // Step 5.
  std::vector<std::vector<int64_t>> offsets(num_ops);
  for (int i = 0; i < num_ops; ++i) {
    if (InArena(graph.ops()[i])) offsets[i].resize(graph.ops()[i].results.size(), 0);
  }
  for (const Buffer& buffer : buffers) {
    offsets[buffer.op][buffer.result] = buffer.offset;
  }
  bool changed = false;
  for (int i = 0; i < num_ops; ++i) {
    AttrMap& attrs = graph.mutable_ops()[i].attrs;
    auto it = attrs.find(kArenaOffsetsAttr);
    if (!InArena(graph.ops()[i])) {
      // The runtime owns weights: a stale annotation would claim arena space.
      if (it != attrs.end()) {
        attrs.erase(it);
        changed = true;
      }
      continue;
    }
    const Attribute planned = offsets[i];
    if (it != attrs.end() && it->second == planned) continue;
    attrs[kArenaOffsetsAttr] = planned;
    changed = true;
  }
  const Attribute planned_bytes = arena_bytes;
  auto it = graph.attrs().find(kArenaBytesAttr);
  if (it == graph.attrs().end() || !(it->second == planned_bytes)) {
    graph.mutable_attrs()[kArenaBytesAttr] = planned_bytes;
    changed = true;
  }
  return changed;
}

int64_t ArenaBytes(const Graph& graph) {
  auto it = graph.attrs().find(kArenaBytesAttr);
  if (it == graph.attrs().end()) return -1;
  const auto* bytes = std::get_if<int64_t>(&it->second);
  return bytes ? *bytes : -1;
}

}  // namespace moegraph
