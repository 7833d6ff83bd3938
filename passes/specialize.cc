// The specialize pass.
#include "passes/specialize.h"

#include "ir/op_registry.h"

namespace moegraph {
namespace {

AttrMap KeyAttrs(const SpecKey& key, int32_t chunk_size) {
  return {{"moe_phase", std::string(MoePhaseName(key.phase))},
          {"moe_num_chunk", int64_t{key.moe_num_chunk}},
          {"max_moe_num_chunk", int64_t{key.max_moe_num_chunk}},
          {"token_bucket", int64_t{key.token_bucket}},
          {"seq_bucket", int64_t{key.seq_bucket}},
          {"moe_chunk_size", int64_t{chunk_size}}};
}

std::string DescribeAttrs(const AttrMap& attrs, const AttrMap& wanted) {
  std::string text;
  for (const auto& [name, value] : wanted) {
    auto it = attrs.find(name);
    if (!text.empty()) text += ", ";
    text += name + " = ";
    if (it == attrs.end()) {
      text += "(none)";
    } else if (const auto* s = std::get_if<std::string>(&it->second)) {
      text += "\"" + *s + "\"";
    } else if (const auto* i = std::get_if<int64_t>(&it->second)) {
      text += std::to_string(*i);
    } else {
      text += "(not an integer)";
    }
  }
  return text;
}

}  // namespace

Status CheckSpecializedFor(const Graph& graph, const SpecKey& key, int32_t chunk_size) {
  const AttrMap wanted = KeyAttrs(key, chunk_size);
  for (const auto& [name, value] : wanted) {
    auto it = graph.attrs().find(name);
    if (it == graph.attrs().end() || it->second != value) {
      return FailedPrecondition("graph @" + graph.name() + " records " +
                                DescribeAttrs(graph.attrs(), wanted) + ", but the pass runs key " +
                                key.ToString() + " with chunk size " + std::to_string(chunk_size) +
                                (it == graph.attrs().end() ? " (run specialize first)" : ""));
    }
  }
  return Status::Ok();
}

StatusOr<bool> SpecializePass::Run(Graph& graph) {
  if (key_.token_bucket <= 0 || key_.seq_bucket <= 0 || key_.moe_num_chunk <= 0 ||
      key_.max_moe_num_chunk < key_.moe_num_chunk || chunk_size_ <= 0) {
    return InvalidArgument("invalid key " + key_.ToString() + " (chunk size " +
                           std::to_string(chunk_size_) + ")");
  }
  if (key_.phase == MoePhase::kDecode && key_.seq_bucket != key_.token_bucket) {
    return InvalidArgument("decode key " + key_.ToString() +
                           ": a decode step has one token per sequence, so seqs must equal tokens");
  }
  bool changed = false;
  const AttrMap wanted = KeyAttrs(key_, chunk_size_);
  if (graph.attrs().count("moe_phase")) {
    MG_RETURN_IF_ERROR(CheckSpecializedFor(graph, key_, chunk_size_));
  } else {
    graph.mutable_attrs().insert(wanted.begin(), wanted.end());
    changed = true;
  }

  for (Value& value : graph.mutable_values()) {
    for (Dim& dim : value.type.dims) {
      if (dim.is_static()) continue;
      if (dim.symbol == "T") {
        dim = Dim::Static(key_.token_bucket);
      } else if (dim.symbol == "B") {
        dim = Dim::Static(key_.seq_bucket);
      } else {
        return InvalidArgument("%" + value.name + " has symbol '" + dim.symbol +
                               "', which no key binds (only T and B)");
      }
      changed = true;
    }
  }

  if (key_.phase == MoePhase::kDecode) {
    std::vector<Op> kept;
    for (const Op& op : graph.ops()) {
      if (op.name() == "gather_last") {
        graph.ReplaceAllUses(op.results[0], op.operands[1]);
        changed = true;
        continue;
      }
      kept.push_back(op);
    }
    if (kept.size() != graph.ops().size()) graph.ReplaceOps(std::move(kept));
  }
  return changed;
}

}  // namespace moegraph
