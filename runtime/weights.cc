// Weight resolution and binding.
#include "runtime/weights.h"

#include "ir/op_registry.h"
#include "support/strings.h"

namespace moegraph {
StatusOr<ResolvedWeight> ResolveWeight(const Op& op, const Type& type,
                                       const Checkpoint& checkpoint) {
  ResolvedWeight w;
  w.name = op.StringAttr("name");
  w.dtype = type.dtype;
  for (const Dim& d : type.dims) {
    if (!d.is_static()) return InvalidArgument("weight '" + w.name + "' has a symbolic shape");
    w.shape.push_back(d.size);
  }
  w.stacked = op.HasAttr("experts");
  const int64_t experts = w.stacked ? op.IntAttr("experts") : 1;
  // One slice's logical shape: the type minus the expert dim.
  std::vector<int64_t> slice_shape(w.shape.begin() + (w.stacked ? 1 : 0), w.shape.end());
  int64_t slice_numel = 1;
  for (int64_t d : slice_shape)
    slice_numel *= d;
  const uint64_t slice_bytes = static_cast<uint64_t>(slice_numel) * DTypeBytes(w.dtype);
  const int64_t row_offset = op.IntAttr("row_offset", 0);
  const bool per_expert_names = w.name.find("{e}") != std::string::npos;

  for (int64_t e = 0; e < experts; ++e) {
    const std::string name = per_expert_names ? ExpandExpertName(w.name, e) : w.name;
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, checkpoint.Get(name));
    const std::string where = checkpoint.FileOf(name) + ": tensor '" + name + "'";
    if (t->dtype != w.dtype) {
      return InvalidArgument(where + " is " + DTypeSafetensorsName(t->dtype) +
                             " but the graph expects " + DTypeName(w.dtype));
    }
    // The tensor as stored: the slice itself, or [E, rows, cols] holding all
    // experts, of which this weight takes rows [row_offset, row_offset + N).
    uint64_t offset_in_tensor = 0;
    if (per_expert_names || !w.stacked) {
      if (t->shape != slice_shape) {
        return InvalidArgument(where + " has shape " + ShapeString(t->shape) +
                               " but the graph expects " + ShapeString(slice_shape));
      }
    } else {
      // A fused checkpoint tensor [E, R, K] with R >= row_offset + N.
      if (t->shape.size() != slice_shape.size() + 1 || t->shape[0] != experts ||
          t->shape.back() != slice_shape.back() || slice_shape.size() != 2 ||
          t->shape[1] < row_offset + slice_shape[0]) {
        return InvalidArgument(where + " cannot hold rows [" + std::to_string(row_offset) + ", " +
                               std::to_string(row_offset + slice_shape[0]) +
                               ") of each of its experts as the graph expects");
      }
      const uint64_t expert_bytes =
          static_cast<uint64_t>(t->shape[1] * t->shape[2]) * DTypeBytes(w.dtype);
      offset_in_tensor = expert_bytes * e + row_offset * t->shape[2] * DTypeBytes(w.dtype);
    }
    if (offset_in_tensor + slice_bytes > t->bytes) {
      return InvalidArgument(where + " is too small for the graph's weight");
    }
    w.slices.push_back(WeightSlice{checkpoint.FileOf(name), t->file_offset + offset_in_tensor,
                                   slice_bytes, t->data + offset_in_tensor});
  }
  return w;
}

void WeightArgs::Bind(ValueId id, const ResolvedWeight& weight) {
  TensorArg arg;
  arg.dtype = weight.dtype;
  arg.rank = static_cast<int>(weight.shape.size());
  for (int i = 0; i < arg.rank && i < kMaxRank; ++i)
    arg.shape[i] = weight.shape[i];
  if (weight.stacked) {
    auto pointers = std::make_unique<std::vector<const void*>>();
    for (const WeightSlice& s : weight.slices)
      pointers->push_back(s.data);
    arg.expert_data = pointers->data();
    arg.data = const_cast<std::byte*>(weight.slices[0].data);
    expert_pointers_.push_back(std::move(pointers));
  } else {
    arg.data = const_cast<std::byte*>(weight.slices[0].data);
  }
  args_[id] = arg;
}

const TensorArg* WeightArgs::Find(ValueId id) const {
  auto it = args_.find(id);
  return it == args_.end() ? nullptr : &it->second;
}

StatusOr<WeightArgs> WeightArgs::FromCheckpoint(const Graph& graph, const Checkpoint& checkpoint) {
  WeightArgs args;
  for (const Op& op : graph.ops()) {
    if (!op.def || !op.def->Has(kWeight)) continue;
    MG_ASSIGN_OR_RETURN(ResolvedWeight w, ResolveWeight(op, graph.type(op.results[0]), checkpoint));
    if (w.shape.size() > static_cast<size_t>(kMaxRank)) {
      return InvalidArgument("weight '" + w.name + "' has rank above " + std::to_string(kMaxRank));
    }
    args.Bind(op.results[0], w);
  }
  return args;
}

}  // namespace moegraph
