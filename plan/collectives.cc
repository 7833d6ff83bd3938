// Cross-rank collective agreement.
#include "plan/collectives.h"

#include <algorithm>
#include <map>
#include <string_view>

#include "ir/op_registry.h"

namespace moegraph {
namespace {

// Parameters that differ between ranks by design.
bool RankOwnParam(std::string_view name) {
  return name == "ep_rank" || name == "capacity";
}

std::string TrailingShape(const ArgRef& ref) {
  std::string s = std::string(DTypeName(ref.dtype)) + "[*";
  for (size_t i = 1; i < ref.shape.size(); ++i)
    s += ", " + std::to_string(ref.shape[i]);
  return s + "]";
}

}  // namespace

std::string CollectiveSignature(const KernelStep& step) {
  std::string s = step.kernel + "(";
  for (size_t i = 0; i < step.inputs.size(); ++i)
    s += (i ? ", " : "") + TrailingShape(step.inputs[i]);
  s += ")";
  const OpDef* def = LookupOp(step.kernel);
  std::string params;
  if (def != nullptr && def->params != nullptr) {
    for (int f = 0; f < def->params->num_fields; ++f) {
      const ParamFieldInfo& field = def->params->fields[f];
      if (RankOwnParam(field.name)) continue;
      const size_t at = static_cast<size_t>(field.wire_index);
      std::string value = "?";
      if (field.kind == AttrKind::kInt && at < step.ints.size()) {
        value = std::to_string(step.ints[at]);
      } else if (field.kind == AttrKind::kFloat && at < step.floats.size()) {
        value = std::to_string(step.floats[at]);
      }
      params += std::string(params.empty() ? "" : ", ") + field.name + " = " + value;
    }
  }
  return params.empty() ? s : s + " {" + params + "}";
}

std::vector<std::string> CollectiveSequence(const KeyProgram& program) {
  std::vector<std::string> sequence;
  for (const KernelStep& step : program.steps) {
    const OpDef* def = LookupOp(step.kernel);
    if (def != nullptr && def->Has(kCollective)) sequence.push_back(CollectiveSignature(step));
  }
  return sequence;
}

Status CheckRanksAgree(const Plan& plan) {
  const int ranks = plan.key_options.expert_parallel;
  // key text -> the program of each rank (null: none).
  std::map<std::string, std::vector<const KeyProgram*>> by_key;
  for (const KeyProgram& p : plan.programs) {
    if (p.rank < 0 || p.rank >= ranks) {
      return FailedPrecondition("program '" + p.key.ToString() + "' is for rank " +
                                std::to_string(p.rank) + " of a plan with " +
                                std::to_string(ranks) + " ranks");
    }
    auto& slots = by_key[p.key.ToString()];
    slots.resize(static_cast<size_t>(ranks), nullptr);
    slots[static_cast<size_t>(p.rank)] = &p;
  }
  for (const auto& [key, slots] : by_key) {
    for (int r = 0; r < ranks; ++r) {
      if (slots[static_cast<size_t>(r)] == nullptr) {
        return FailedPrecondition("key '" + key + "' has no program for rank " + std::to_string(r) +
                                  ": a step that one rank runs with it would leave its "
                                  "collectives unmatched (deadlock)");
      }
    }
    const std::vector<std::string> first = CollectiveSequence(*slots[0]);
    for (int r = 1; r < ranks; ++r) {
      const std::vector<std::string> other = CollectiveSequence(*slots[static_cast<size_t>(r)]);
      const size_t common = std::min(first.size(), other.size());
      size_t i = 0;
      while (i < common && first[i] == other[i])
        ++i;
      if (i == common && first.size() == other.size()) continue;
      const auto at = [](const std::vector<std::string>& seq, size_t i) {
        return i < seq.size() ? seq[i] : std::string("nothing (its program ends)");
      };
      return FailedPrecondition("key '" + key + "': ranks 0 and " + std::to_string(r) +
                                " issue different collectives (a deadlock): collective #" +
                                std::to_string(i) + " is " + at(first, i) + " on rank 0 but " +
                                at(other, i) + " on rank " + std::to_string(r) + " (" +
                                std::to_string(first.size()) + " against " +
                                std::to_string(other.size()) + " collectives)");
    }
  }
  return Status::Ok();
}

}  // namespace moegraph
