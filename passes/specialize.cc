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

int64_t GetInt(const AttrMap& attrs, const char* name, int64_t fallback) {
  auto it = attrs.find(name);
  if (it == attrs.end() || !std::holds_alternative<int64_t>(it->second)) return fallback;
  return std::get<int64_t>(it->second);
}

}  // namespace

StatusOr<SpecKey> GraphSpecKey(const Graph& graph) {
  const AttrMap& attrs = graph.attrs();
  auto phase = attrs.find("moe_phase");
  if (phase == attrs.end() || !std::holds_alternative<std::string>(phase->second)) {
    return FailedPrecondition("graph @" + graph.name() +
                              " is not specialized (no moe_phase attribute): run specialize first");
  }
  SpecKey key;
  key.phase =
      std::get<std::string>(phase->second) == "decode" ? MoePhase::kDecode : MoePhase::kPrefill;
  key.moe_num_chunk = static_cast<int32_t>(GetInt(attrs, "moe_num_chunk", 1));
  key.max_moe_num_chunk = static_cast<int32_t>(GetInt(attrs, "max_moe_num_chunk", 1));
  key.token_bucket = static_cast<int32_t>(GetInt(attrs, "token_bucket", 0));
  key.seq_bucket = static_cast<int32_t>(GetInt(attrs, "seq_bucket", 0));
  return key;
}

int64_t GraphChunkSize(const Graph& graph) {
  return GetInt(graph.attrs(), "moe_chunk_size", 0);
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
    if (graph.attrs() != wanted) {
      MG_ASSIGN_OR_RETURN(SpecKey bound, GraphSpecKey(graph));
      return FailedPrecondition("graph is already specialized for " + bound.ToString() + ", not " +
                                key_.ToString());
    }
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
