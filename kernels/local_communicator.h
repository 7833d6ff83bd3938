// A group of communicators whose ranks are threads of one process: the tests'
// multi-rank communicator (expert-parallel kernels, the step agreement), and
// one a user may embed to run several ranks in one process.
//
// Every collective is a rendezvous: each rank posts its buffers and counts,
// waits until every rank has posted, copies what it receives straight from
// the peers' buffers, and waits again until every rank has copied, so no
// buffer is reused while a peer still reads it. Buffers are host memory; the
// stream argument is ignored (every call completes before it returns).
//
// A rank that does not arrive within the group's timeout does not hang the
// others: the waiting ranks return an error whose message starts "deadline
// exceeded" and names the operation and the ranks that never came (StatusCode
// has no DEADLINE_EXCEEDED: the code is FAILED_PRECONDITION). The group is
// then broken: every later call on any of its ranks returns that error.
// Ranks that make different calls, or AllToAllV counts that do not agree
// pairwise, are an INVALID_ARGUMENT error on every rank.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "kernels/communicator.h"

namespace moegraph {

// world_size communicators (rank r at index r) sharing one rendezvous, kind
// "local". Each must be used by one thread at a time; the group lives until
// the last of them is destroyed. world_size < 1 gives an empty vector.
std::vector<std::unique_ptr<Communicator>> MakeLocalGroup(
    int world_size, std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace moegraph
