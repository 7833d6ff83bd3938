// The NCCL communicator: one ncclComm per rank of a device group, created
// from a unique id that rank 0 makes and the launcher hands to every rank.
// Collectives are stream-ordered and capturable (NCCL supports CUDA graph
// capture). Builds without NCCL return Unimplemented from every entry point.
#pragma once

#include <array>
#include <memory>

#include "kernels/communicator.h"
#include "support/status.h"

namespace moegraph {

// The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES = 128), opaque.
struct NcclUniqueId {
  std::array<char, 128> bytes{};
};

// Rank 0 calls this once and sends the id to the other ranks.
StatusOr<NcclUniqueId> MakeNcclUniqueId();

// Joins the group as `rank` of `world_size` on CUDA device `device`
// (ncclCommInitRank: blocks until every rank has joined).
StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclUniqueId& id, int rank,
                                                               int world_size, int device);

}  // namespace moegraph
