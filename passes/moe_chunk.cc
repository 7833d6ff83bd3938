// The moe-chunk pass.
#include "passes/moe_chunk.h"

#include <algorithm>
#include <unordered_map>

#include "ir/op_registry.h"
#include "passes/rewrite.h"
#include "passes/specialize.h"

namespace moegraph {

StatusOr<bool> MoeChunkPass::Run(Graph& graph) {
  MG_RETURN_IF_ERROR(CheckSpecializedFor(graph, key_, chunk_size_));
  const SpecKey& key = key_;
  const int64_t chunk = chunk_size_;
  const int64_t rows = key.token_bucket;
  if (key.max_moe_num_chunk == 1 && rows <= chunk) return false;

  bool changed = false;
  std::vector<Op> ops;
  OpEmitter emit(graph, ops);
  std::unordered_map<ValueId, ValueId> joined_values;  // a chunked moe's result -> its concat
  for (size_t op_index = 0; op_index < graph.ops().size(); ++op_index) {
    // Every use follows its def: rewriting each op's operands as it is copied
    // sees every earlier chunking (one scan of the graph, not one per moe op).
    Op op = graph.ops()[op_index];
    for (ValueId& operand : op.operands) {
      const auto it = joined_values.find(operand);
      if (it != joined_values.end()) operand = it->second;
    }
    if (op.name() != "moe" || op.HasAttr("row_offset")) {
      ops.push_back(op);
      continue;
    }
    changed = true;
    const ValueId x = op.operands[1];
    const std::string hint = graph.value(op.results[0]).name;
    std::vector<ValueId> pieces;
    int64_t covered = 0;
    for (int32_t i = 0; i < key.max_moe_num_chunk; ++i) {
      const int64_t begin = std::min<int64_t>(int64_t{i} * chunk, rows);
      const int64_t count = i < key.moe_num_chunk ? std::min<int64_t>(chunk, rows - begin) : 0;
      MG_ASSIGN_OR_RETURN(ValueId slice,
                          emit.Emit1("slice_rows", {x},
                                     ParamsToAttrs(SliceRowsParams{.begin = begin, .rows = count}),
                                     hint + ".in" + std::to_string(i)));
      std::vector<ValueId> operands = op.operands;
      operands[1] = slice;
      AttrMap attrs = op.attrs;
      attrs["row_offset"] = begin;
      MG_ASSIGN_OR_RETURN(ValueId part,
                          emit.Emit1("moe", operands, attrs, hint + ".chunk" + std::to_string(i)));
      if (count > 0) pieces.push_back(part);
      covered += count;
    }
    if (covered < rows) {
      Type pad = graph.type(op.results[0]);
      pad.dims[0] = Dim::Static(rows - covered);
      ValueId zeros = graph.NewValue(hint + ".pad", pad);
      Op fill;
      fill.def = LookupOp("zeros");
      fill.results = {zeros};
      ops.push_back(std::move(fill));
      pieces.push_back(zeros);
    }
    MG_ASSIGN_OR_RETURN(ValueId joined, emit.Emit1("concat_rows", pieces, {}, hint + ".joined"));
    joined_values.emplace(op.results[0], joined);
  }
  if (changed) {
    graph.ReplaceOps(std::move(ops));
    std::vector<ValueId> outputs = graph.outputs();
    for (ValueId& out : outputs) {
      const auto it = joined_values.find(out);
      if (it != joined_values.end()) out = it->second;
    }
    graph.SetOutputs(std::move(outputs));
  }
  return changed;
}

}  // namespace moegraph
