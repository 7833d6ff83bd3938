// Collectives across ranks (DESIGN §9): expert-parallel dispatch/combine, the
// split + all-gather path and the step agreement. One Communicator is one
// rank's end of a group.
//
// Two kinds of entry point:
//  * stream-ordered (AllReduceSum, AllGather, AllToAll, AllToAllV): buffers are
//    backend memory (device memory for NCCL); work is queued on `stream` (a
//    cudaStream_t for device communicators, null for host ones, so this header
//    needs no CUDA headers). A device communicator's are capturable: no host
//    synchronization, no allocation. A host communicator's complete before
//    they return.
//  * host (AllReduceMaxHost, AllGatherHost): host buffers, blocking, called by
//    the runtime between steps (step agreement, error messages). Every
//    communicator implements them (NCCL's through its bootstrap, or
//    Unimplemented).
//
// Every rank of the group must make the same calls in the same order with the
// same counts (AllToAllV's counts must agree pairwise: rank a's send_counts[b]
// is rank b's recv_counts[a]). A communicator never hangs on a peer that is
// gone: it returns an error (or, under mpirun, the launcher ends the job).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ir/dtype.h"
#include "support/status.h"

namespace moegraph {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "mpi", "local", "nccl": for logs and errors.
  virtual const char* kind() const = 0;

  // recv[i] = sum over ranks of send[i], `count` elements. send may equal recv.
  virtual Status AllReduceSum(const void* send, void* recv, size_t count, DType dtype,
                              void* stream) = 0;
  // recv [world_size * count] = every rank's send [count], in rank order.
  virtual Status AllGather(const void* send, void* recv, size_t count, DType dtype,
                           void* stream) = 0;
  // send and recv [world_size * count]: block r of send goes to rank r, and
  // block r of recv comes from rank r.
  virtual Status AllToAll(const void* send, void* recv, size_t count, DType dtype,
                          void* stream) = 0;
  // Variable blocks of `elem_bytes`-byte elements: send holds send_counts[0]
  // elements for rank 0, then send_counts[1] for rank 1, ...; recv receives
  // recv_counts[r] elements from rank r, in rank order, packed. The counts are
  // host arrays of world_size entries.
  virtual Status AllToAllV(const void* send, const int64_t* send_counts, void* recv,
                           const int64_t* recv_counts, size_t elem_bytes, void* stream) = 0;

  // values[i] = max over ranks of values[i] (host memory, in place, blocking).
  virtual Status AllReduceMaxHost(int64_t* values, size_t count) = 0;
  // recv [world_size * bytes] = every rank's send [bytes], in rank order (host, blocking).
  virtual Status AllGatherHost(const void* send, void* recv, size_t bytes) = 0;
};

}  // namespace moegraph
