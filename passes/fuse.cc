// The fuse pass.
#include "passes/fuse.h"

#include "ir/op_registry.h"
#include "passes/rewrite.h"

namespace moegraph {
namespace {

class Fuser {
 public:
  explicit Fuser(Graph& graph)
      : graph_(graph),
        ops_(graph.ops()),
        dead_(ops_.size(), false),
        uses_(CountUses(graph)),
        def_of_(graph.values().size(), -1) {
    for (size_t i = 0; i < ops_.size(); ++i) {
      for (ValueId r : ops_[i].results) {
        if (graph.IsValid(r)) def_of_[r] = static_cast<int>(i);
      }
    }
  }

  bool Run() {
    bool changed = false;
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (dead_[i]) continue;
      const std::string& kind = ops_[i].name();
      if (kind == "silu_mul") {
        changed |= FuseGateUp(static_cast<int>(i));
      } else if (kind == "rms_norm") {
        changed |= FuseAddNorm(static_cast<int>(i));
      }
    }
    if (!changed) return false;
    std::vector<Op> kept;
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (!dead_[i]) kept.push_back(std::move(ops_[i]));
    }
    graph_.ReplaceOps(std::move(kept));
    return true;
  }

 private:
  // The live op defining `v`, or -1 (graph input, invalid id).
  int DefOf(ValueId v) const {
    if (!graph_.IsValid(v) || def_of_[v] < 0 || dead_[def_of_[v]]) return -1;
    return def_of_[v];
  }

  // Whether the registry's rule gives `op` exactly the types its (reused)
  // result values already have.
  bool KeepsTypes(const Op& op) const {
    StatusOr<std::vector<Type>> types = InferResultTypes(graph_, op);
    if (!types.ok() || types->size() != op.results.size()) return false;
    for (size_t r = 0; r < op.results.size(); ++r) {
      if (!((*types)[r] == graph_.type(op.results[r]))) return false;
    }
    return true;
  }

  // Patterns a and b, rooted at the silu_mul at `root`.
  bool FuseGateUp(int root) {
    const Op& act = ops_[root];
    if (act.operands.size() != 2 || act.results.size() != 1) return false;
    const ValueId g = act.operands[0], u = act.operands[1];
    const int gi = DefOf(g), ui = DefOf(u);
    if (gi < 0 || ui < 0 || gi == ui || uses_[g] != 1 || uses_[u] != 1) return false;
    const Op& gate = ops_[gi];
    const Op& up = ops_[ui];
    if (gate.def != up.def) return false;
    int num_shared = 0;  // leading operands both GEMMs must share: x, or xp and offsets
    const char* fused_kind = nullptr;
    if (gate.name() == "linear") {
      num_shared = 1;
      fused_kind = "linear_silu_mul";
    } else if (gate.name() == "grouped_matmul") {
      num_shared = 2;
      fused_kind = "grouped_matmul_silu_mul";
    } else {
      return false;
    }
    if (gate.operands.size() != static_cast<size_t>(num_shared) + 1 ||
        up.operands.size() != gate.operands.size()) {
      return false;
    }
    for (int k = 0; k < num_shared; ++k) {
      if (gate.operands[k] != up.operands[k]) return false;
    }
    Op fused;
    fused.def = LookupOp(fused_kind);
    fused.operands.assign(gate.operands.begin(), gate.operands.begin() + num_shared);
    fused.operands.push_back(gate.operands[num_shared]);
    fused.operands.push_back(up.operands[num_shared]);
    fused.results = act.results;
    if (!fused.def || !KeepsTypes(fused)) return false;
    dead_[gi] = dead_[ui] = true;
    ops_[root] = std::move(fused);
    return true;
  }

  // Pattern c, rooted at the rms_norm at `norm_index`.
  bool FuseAddNorm(int norm_index) {
    const Op& norm = ops_[norm_index];
    if (norm.operands.size() != 2 || norm.results.size() != 1) return false;
    const ValueId s = norm.operands[0], w = norm.operands[1];
    const int add_index = DefOf(s);
    if (add_index < 0 || ops_[add_index].name() != "add") return false;
    const Op& add = ops_[add_index];
    if (add.operands.size() != 2 || add.results.size() != 1) return false;

    bool s_read_between = false;
    for (int i = add_index + 1; i < norm_index && !s_read_between; ++i) {
      if (dead_[i]) continue;
      for (ValueId v : ops_[i].operands) {
        s_read_between |= v == s;
      }
    }
    int place = norm_index;
    if (s_read_between) {
      // %w must already exist at the add's place: a graph input (no defining
      // op) or defined before the add.
      if (!graph_.IsValid(w) || def_of_[w] >= add_index) return false;
      place = add_index;
    }

    Op fused;
    fused.def = LookupOp("add_rms_norm");
    fused.operands = {add.operands[0], add.operands[1], w};
    fused.results = {s, norm.results[0]};
    auto eps = norm.attrs.find("eps");
    if (eps != norm.attrs.end()) fused.attrs["eps"] = eps->second;
    if (!fused.def || !KeepsTypes(fused)) return false;
    for (ValueId r : fused.results) {
      def_of_[r] = place;
    }
    dead_[place == norm_index ? add_index : norm_index] = true;
    ops_[place] = std::move(fused);
    return true;
  }

  Graph& graph_;
  std::vector<Op> ops_;
  std::vector<bool> dead_;
  std::vector<int> uses_;
  std::vector<int> def_of_;  // value -> index in ops_ of its defining op
};

}  // namespace

StatusOr<bool> FusePass::Run(Graph& graph) {
  return Fuser(graph).Run();
}

}  // namespace moegraph
