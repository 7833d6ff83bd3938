// The MPI communicator (see mpi_communicator.h).
#include "runtime/mpi_communicator.h"

// The C API only: Open MPI's mpi.h otherwise pulls in its deprecated C++
// bindings, which need libmpi_cxx at link time.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace moegraph {
namespace {

Status MpiCheck(int code, const char* what) {
  if (code == MPI_SUCCESS) return Status::Ok();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) {
    return Internal(std::string(what) + ": MPI error " + std::to_string(code));
  }
  return Internal(std::string(what) + ": " + std::string(text, static_cast<size_t>(length)));
}

// Host communicators queue nothing: a stream is a caller's mistake.
Status NoStream(void* stream, const char* what) {
  if (stream == nullptr) return Status::Ok();
  return InvalidArgument(std::string("the MPI communicator's ") + what +
                         " takes host buffers and a null stream (device buffers need NCCL)");
}

// MPI counts are int: a larger block is an error, not a truncation.
StatusOr<int> MpiCount(size_t count, const char* what) {
  if (count > static_cast<size_t>(INT_MAX)) {
    return InvalidArgument(std::string("the MPI communicator's ") + what + ": " +
                           std::to_string(count) + " bytes exceed MPI's int counts");
  }
  return static_cast<int>(count);
}

StatusOr<MPI_Datatype> SumType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kI64:
      return MPI_INT64_T;
    case DType::kU8:
      return MPI_UINT8_T;
    default:
      return Unimplemented(std::string("the MPI communicator's AllReduceSum on ") +
                           DTypeName(dtype) + " (it sums f32, i32, i64 and u8)");
  }
}

void FinalizeMpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// MPI_Init_thread once per process, unless someone else initialized MPI.
Status EnsureMpiInitialized() {
  static std::once_flag once;
  static Status status;
  std::call_once(once, [] {
    int initialized = 0;
    status = MpiCheck(MPI_Initialized(&initialized), "MPI_Initialized");
    if (!status.ok() || initialized) return;
    int provided = 0;
    status = MpiCheck(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided),
                      "MPI_Init_thread");
    if (!status.ok()) return;
    std::atexit(FinalizeMpi);
    if (provided < MPI_THREAD_FUNNELED) {
      status = FailedPrecondition("MPI_Init_thread provided thread level " +
                                  std::to_string(provided) + ", below MPI_THREAD_FUNNELED");
    }
  });
  return status;
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int world_size)
      : comm_(comm), rank_(rank), world_size_(world_size) {}
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const char* kind() const override { return "mpi"; }

  Status AllReduceSum(const void* send, void* recv, size_t count, DType dtype,
                      void* stream) override {
    MG_RETURN_IF_ERROR(NoStream(stream, "AllReduceSum"));
    MG_ASSIGN_OR_RETURN(MPI_Datatype type, SumType(dtype));
    MG_ASSIGN_OR_RETURN(int n, MpiCount(count, "AllReduceSum"));
    return MpiCheck(
        MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, n, type, MPI_SUM, comm_),
        "MPI_Allreduce");
  }

  Status AllGather(const void* send, void* recv, size_t count, DType dtype, void* stream) override {
    MG_RETURN_IF_ERROR(NoStream(stream, "AllGather"));
    return GatherBytes(send, recv, count * DTypeBytes(dtype), "AllGather");
  }

  Status AllGatherHost(const void* send, void* recv, size_t bytes) override {
    return GatherBytes(send, recv, bytes, "AllGatherHost");
  }

  Status AllToAll(const void* send, void* recv, size_t count, DType dtype, void* stream) override {
    MG_RETURN_IF_ERROR(NoStream(stream, "AllToAll"));
    MG_ASSIGN_OR_RETURN(int n, MpiCount(count * DTypeBytes(dtype), "AllToAll"));
    return MpiCheck(MPI_Alltoall(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_), "MPI_Alltoall");
  }

  // Counts and displacements in bytes; the arrays are members, so a call
  // allocates only when the group's first one does.
  Status AllToAllV(const void* send, const int64_t* send_counts, void* recv,
                   const int64_t* recv_counts, size_t elem_bytes, void* stream) override {
    MG_RETURN_IF_ERROR(NoStream(stream, "AllToAllV"));
    send_bytes_.resize(world_size_);
    recv_bytes_.resize(world_size_);
    send_displs_.resize(world_size_);
    recv_displs_.resize(world_size_);
    size_t send_total = 0, recv_total = 0;
    for (int peer = 0; peer < world_size_; ++peer) {
      if (send_counts[peer] < 0 || recv_counts[peer] < 0) {
        return InvalidArgument("the MPI communicator's AllToAllV: negative count for rank " +
                               std::to_string(peer));
      }
      MG_ASSIGN_OR_RETURN(send_displs_[peer], MpiCount(send_total, "AllToAllV"));
      MG_ASSIGN_OR_RETURN(recv_displs_[peer], MpiCount(recv_total, "AllToAllV"));
      const size_t send_bytes = static_cast<size_t>(send_counts[peer]) * elem_bytes;
      const size_t recv_bytes = static_cast<size_t>(recv_counts[peer]) * elem_bytes;
      MG_ASSIGN_OR_RETURN(send_bytes_[peer], MpiCount(send_bytes, "AllToAllV"));
      MG_ASSIGN_OR_RETURN(recv_bytes_[peer], MpiCount(recv_bytes, "AllToAllV"));
      send_total += send_bytes;
      recv_total += recv_bytes;
    }
    return MpiCheck(MPI_Alltoallv(send, send_bytes_.data(), send_displs_.data(), MPI_BYTE, recv,
                                  recv_bytes_.data(), recv_displs_.data(), MPI_BYTE, comm_),
                    "MPI_Alltoallv");
  }

  Status AllReduceMaxHost(int64_t* values, size_t count) override {
    MG_ASSIGN_OR_RETURN(int n, MpiCount(count, "AllReduceMaxHost"));
    return MpiCheck(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_INT64_T, MPI_MAX, comm_),
                    "MPI_Allreduce");
  }

 private:
  Status GatherBytes(const void* send, void* recv, size_t bytes, const char* what) {
    MG_ASSIGN_OR_RETURN(int n, MpiCount(bytes, what));
    return MpiCheck(MPI_Allgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_), "MPI_Allgather");
  }

  MPI_Comm comm_;
  const int rank_, world_size_;
  std::vector<int> send_bytes_, recv_bytes_, send_displs_, recv_displs_;
};

}  // namespace

StatusOr<std::unique_ptr<Communicator>> CreateMpiCommunicator() {
  MG_RETURN_IF_ERROR(EnsureMpiInitialized());
  MPI_Comm comm = MPI_COMM_NULL;
  MG_RETURN_IF_ERROR(MpiCheck(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup"));
  Status status =
      MpiCheck(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  int rank = 0, world_size = 0;
  if (status.ok()) status = MpiCheck(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  if (status.ok()) status = MpiCheck(MPI_Comm_size(comm, &world_size), "MPI_Comm_size");
  if (!status.ok()) {
    MPI_Comm_free(&comm);
    return status;
  }
  return std::unique_ptr<Communicator>(new MpiCommunicator(comm, rank, world_size));
}

bool LaunchedByMpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

int MpirunWorldSize() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* value = std::getenv(name);
    if (value == nullptr) continue;
    char* end = nullptr;
    const long size = std::strtol(value, &end, 10);
    if (end != value && *end == '\0' && size >= 1 && size <= INT_MAX) return static_cast<int>(size);
  }
  return 1;
}

}  // namespace moegraph

namespace moegraph {

void AbortMpiJob(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  // MPI_Abort ends every process of the job (the launcher kills the others), so no rank is
  // left waiting in a collective for this one; MPI_Finalize would wait for them instead.
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace moegraph
