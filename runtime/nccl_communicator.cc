// The NCCL communicator (see nccl_communicator.h).
#include "runtime/nccl_communicator.h"

#if defined(MOEGRAPH_HAVE_NCCL)

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>

namespace moegraph {
namespace {

static_assert(sizeof(ncclUniqueId) == sizeof(NcclUniqueId::bytes), "ncclUniqueId size changed");

Status NcclCheck(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return Status::Ok();
  return Internal(std::string(what) + ": " + ncclGetErrorString(r));
}

StatusOr<ncclDataType_t> NcclType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kF16:
      return ncclFloat16;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
    case DType::kU8:
      return ncclUint8;
    default:
      return Unimplemented(std::string("NCCL collective on ") + DTypeName(dtype));
  }
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int world_size, int device)
      : comm_(comm), rank_(rank), world_size_(world_size), device_(device) {}
  ~NcclCommunicator() override { ncclCommDestroy(comm_); }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const char* kind() const override { return "nccl"; }

  Status AllReduceSum(const void* send, void* recv, size_t count, DType dtype,
                      void* stream) override {
    MG_ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(dtype));
    MG_RETURN_IF_ERROR(SetDevice());
    return NcclCheck(ncclAllReduce(send, recv, count, type, ncclSum, comm_, Stream(stream)),
                     "ncclAllReduce");
  }

  Status AllGather(const void* send, void* recv, size_t count, DType dtype, void* stream) override {
    MG_ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(dtype));
    MG_RETURN_IF_ERROR(SetDevice());
    return NcclCheck(ncclAllGather(send, recv, count, type, comm_, Stream(stream)),
                     "ncclAllGather");
  }

  // Point-to-point pairs in one group: NCCL runs them as a single collective.
  Status AllToAll(const void* send, void* recv, size_t count, DType dtype, void* stream) override {
    MG_ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(dtype));
    MG_RETURN_IF_ERROR(SetDevice());
    const size_t block_bytes = count * DTypeBytes(dtype);
    MG_RETURN_IF_ERROR(NcclCheck(ncclGroupStart(), "ncclGroupStart"));
    Status status = Status::Ok();
    for (int peer = 0; peer < world_size_ && status.ok(); ++peer) {
      status = NcclCheck(ncclSend(static_cast<const char*>(send) + peer * block_bytes, count, type,
                                  peer, comm_, Stream(stream)),
                         "ncclSend");
      if (status.ok()) {
        status = NcclCheck(ncclRecv(static_cast<char*>(recv) + peer * block_bytes, count, type,
                                    peer, comm_, Stream(stream)),
                           "ncclRecv");
      }
    }
    const Status ended = NcclCheck(ncclGroupEnd(), "ncclGroupEnd");
    return status.ok() ? ended : status;
  }

  // As AllToAll, with each peer's block at its prefix sum of the counts, sent
  // as bytes. A zero count posts no send or receive for that peer.
  Status AllToAllV(const void* send, const int64_t* send_counts, void* recv,
                   const int64_t* recv_counts, size_t elem_bytes, void* stream) override {
    for (int peer = 0; peer < world_size_; ++peer) {
      if (send_counts[peer] < 0 || recv_counts[peer] < 0) {
        return InvalidArgument("NCCL AllToAllV: negative count for peer " + std::to_string(peer));
      }
    }
    MG_RETURN_IF_ERROR(SetDevice());
    MG_RETURN_IF_ERROR(NcclCheck(ncclGroupStart(), "ncclGroupStart"));
    Status status = Status::Ok();
    size_t send_offset = 0, recv_offset = 0;
    for (int peer = 0; peer < world_size_ && status.ok(); ++peer) {
      const size_t send_bytes = static_cast<size_t>(send_counts[peer]) * elem_bytes;
      const size_t recv_bytes = static_cast<size_t>(recv_counts[peer]) * elem_bytes;
      if (send_bytes > 0) {
        status = NcclCheck(ncclSend(static_cast<const char*>(send) + send_offset, send_bytes,
                                    ncclUint8, peer, comm_, Stream(stream)),
                           "ncclSend");
      }
      if (status.ok() && recv_bytes > 0) {
        status = NcclCheck(ncclRecv(static_cast<char*>(recv) + recv_offset, recv_bytes, ncclUint8,
                                    peer, comm_, Stream(stream)),
                           "ncclRecv");
      }
      send_offset += send_bytes;
      recv_offset += recv_bytes;
    }
    const Status ended = NcclCheck(ncclGroupEnd(), "ncclGroupEnd");
    return status.ok() ? ended : status;
  }

  Status AllReduceMaxHost(int64_t* values, size_t count) override {
    return Unimplemented(
        "the NCCL communicator has no host collectives (AllReduceMaxHost): use the MPI "
        "communicator that bootstrapped NCCL");
  }
  Status AllGatherHost(const void* send, void* recv, size_t bytes) override {
    return Unimplemented(
        "the NCCL communicator has no host collectives (AllGatherHost): use the MPI communicator "
        "that bootstrapped NCCL");
  }

 private:
  static cudaStream_t Stream(void* stream) { return static_cast<cudaStream_t>(stream); }
  Status SetDevice() const {
    const cudaError_t e = cudaSetDevice(device_);
    if (e == cudaSuccess) return Status::Ok();
    return Internal(std::string("cudaSetDevice: ") + cudaGetErrorString(e));
  }

  ncclComm_t comm_;
  int rank_, world_size_, device_;
};

}  // namespace

StatusOr<NcclUniqueId> MakeNcclUniqueId() {
  ncclUniqueId id;
  MG_RETURN_IF_ERROR(NcclCheck(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  NcclUniqueId out;
  std::memcpy(out.bytes.data(), &id, sizeof(id));
  return out;
}

StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclUniqueId& id, int rank,
                                                               int world_size, int device) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return InvalidArgument("NCCL rank " + std::to_string(rank) + " of world size " +
                           std::to_string(world_size));
  }
  const cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    return FailedPrecondition("NCCL on CUDA device " + std::to_string(device) + ": " +
                              cudaGetErrorString(e));
  }
  ncclUniqueId nccl_id;
  std::memcpy(&nccl_id, id.bytes.data(), sizeof(nccl_id));
  ncclComm_t comm = nullptr;
  MG_RETURN_IF_ERROR(
      NcclCheck(ncclCommInitRank(&comm, world_size, nccl_id, rank), "ncclCommInitRank"));
  return std::unique_ptr<Communicator>(new NcclCommunicator(comm, rank, world_size, device));
}

}  // namespace moegraph

#else  // !MOEGRAPH_HAVE_NCCL

namespace moegraph {
namespace {
constexpr const char* kNoNccl =
    "this build has no NCCL communicator (needs CUDA and NCCL's nccl.h / libnccl at configure "
    "time)";
}

StatusOr<NcclUniqueId> MakeNcclUniqueId() {
  return Unimplemented(kNoNccl);
}
StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclUniqueId&, int, int, int) {
  return Unimplemented(kNoNccl);
}

}  // namespace moegraph

#endif  // MOEGRAPH_HAVE_NCCL
