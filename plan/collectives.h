// The compile-time proof that a multi-rank plan cannot deadlock on its
// collectives (DESIGN §9): every rank holds a program for the same keys, and
// for each key every rank's program issues the same collectives in the same
// order, with the same kind, group, dtypes, row widths and parameters (all but
// the rank's own: its rank and its receive capacity). The compiler checks a
// plan before writing it and the plan reader checks it again, so a
// hand-edited plan whose ranks disagree is refused before any rank runs.
#pragma once

#include <string>
#include <vector>

#include "plan/plan.h"
#include "support/status.h"

namespace moegraph {

// One collective step as every rank must issue it: "ep_dispatch(f32[*, 64], i32[*, 2])
// {num_experts = 8, ep_size = 2}". Dim 0 (the rows, a rank's own bucket) is left out.
std::string CollectiveSignature(const KernelStep& step);

// The signatures of a program's collective steps, in step order.
std::vector<std::string> CollectiveSequence(const KeyProgram& program);

// Ok when the plan's ranks (key_options.expert_parallel) each have one program per key of
// the same key set and their collective sequences agree key by key; else FailedPrecondition
// naming the key, the ranks and the first step where they differ.
Status CheckRanksAgree(const Plan& plan);

}  // namespace moegraph
