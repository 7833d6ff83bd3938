// Collectives across ranks (DESIGN §9): tensor- and expert-parallel MoE
// dispatch/combine, the split + all-gather path and the max_moe_num_chunk
// agreement. Buffers are backend memory (device memory for NCCL); work is
// queued on `stream` (a cudaStream_t for device communicators, so this header
// needs no CUDA headers) and must be capturable: no host synchronization, no
// allocation.
#pragma once

#include <cstddef>

#include "ir/dtype.h"
#include "support/status.h"

namespace moegraph {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

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
};

}  // namespace moegraph
