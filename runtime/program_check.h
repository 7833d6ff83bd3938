// Re-verifying a loaded program against the op registry: a plan file is
// untrusted, so before any kernel sees a step, the step's argument types and
// parameters must satisfy its op's shape rule and attribute ranges, exactly as
// the verifier checks a graph.
#pragma once

#include "ir/plan.h"
#include "support/status.h"

namespace moegraph {

// Checks every step of every program of `plan`: the kernel exists, and the
// step, rebuilt as a one-op graph from its arguments and parameters, verifies.
Status CheckPlanPrograms(const Plan& plan);

}  // namespace moegraph
