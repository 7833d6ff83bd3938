// The MPI communicator: one rank of a job launched by mpirun (Open MPI),
// over a duplicate of MPI_COMM_WORLD. A host communicator: buffers are host
// memory, every call blocks until it completes, and the stream-ordered entry
// points take a null stream. It also bootstraps the NCCL communicator (rank
// 0's unique id goes to the others through AllGatherHost) and carries the
// step agreement of every multi-rank run.
#pragma once

#include <memory>

#include "kernels/communicator.h"
#include "support/status.h"

namespace moegraph {

// Initializes MPI (MPI_THREAD_FUNNELED: only the thread that calls this makes
// MPI calls) unless the process already did, and joins MPI_COMM_WORLD's group
// through a duplicate with MPI_ERRORS_RETURN, so that MPI errors come back as
// Status values. When it initialized MPI, it finalizes it at process exit.
// Kind "mpi".
StatusOr<std::unique_ptr<Communicator>> CreateMpiCommunicator();

// Whether the environment says this process was started by mpirun / a PMI
// launcher (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE is set), so a tool can
// decide before initializing MPI.
bool LaunchedByMpirun();

// The job's world size from that environment; 1 when absent or unparsable.
int MpirunWorldSize();

// Ends every process of the job with exit code `code` (MPI_Abort), or this process alone
// when MPI is not running: what a rank that fails on its own calls, so that no other rank
// waits for it in a collective.
[[noreturn]] void AbortMpiJob(int code);

}  // namespace moegraph
