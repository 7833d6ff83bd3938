// Re-verifying a loaded program against the op registry: a plan file is
// untrusted, so before any kernel sees a step, the step's argument types and
// parameters must satisfy its op's shape rule and attribute ranges, exactly as
// the verifier checks a graph.
#pragma once

#include "plan/plan.h"
#include "support/status.h"

namespace moegraph {

// Checks every step of every program of `plan`: the kernel exists; the
// parameters whose range depends on the plan are in it (`layer` below the
// model's layer count with the KV cache's head geometry, `row_offset` + rows
// inside the key's token bucket); and the step, rebuilt as a one-op graph from
// its arguments and parameters, verifies. Programs must not be empty.
Status CheckPlanPrograms(const Plan& plan);

}  // namespace moegraph
