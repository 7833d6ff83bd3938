// The backend interface: a small table of operations every execution target
// implements (ggml-backend style). A backend allocates device memory, uploads
// bytes, captures a lowered program into something it can replay, replays it,
// and synchronizes; `Supports` says which kernel steps it can run.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "ir/program.h"
#include "kernels/kernel_abi.h"
#include "support/status.h"

namespace moegraph {

// Everything a program's arguments point at. All of it stays at fixed
// addresses for the life of the captured programs.
struct ExecBindings {
  std::byte* arena = nullptr;
  uint64_t arena_bytes = 0;
  const std::vector<TensorArg>* weights = nullptr;  // by weight-table index
  std::vector<void*> inputs;                         // graph data inputs (0: token ids)
  const ForwardMetaView* meta = nullptr;
  const KvCacheView* kv = nullptr;
  int num_threads = 1;
};

// Per-step timing hook for traces and benchmarks (optional).
struct StepObserver {
  virtual ~StepObserver() = default;
  virtual void OnStep(const KernelStep& step, double start_us, double end_us) = 0;
};

// A captured program: replay runs exactly the captured steps. With an
// observer each step is timed (traces); without, nothing but the calls.
class Replayable {
 public:
  virtual ~Replayable() = default;
  virtual void Replay(StepObserver* observer = nullptr) = 0;
  virtual size_t num_steps() const = 0;
};

// Microseconds on a monotonic clock.
double NowMicros();

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual bool Supports(const KernelStep& step) const = 0;
  // Memory the backend's kernels can read and write (host memory on the CPU).
  virtual StatusOr<std::byte*> Allocate(size_t bytes) = 0;
  virtual void Free(std::byte* data) = 0;
  virtual Status Upload(std::byte* dst, const void* src, size_t bytes) = 0;
  // Resolves every step once: kernel choice, bound arguments, thread split.
  virtual StatusOr<std::unique_ptr<Replayable>> Capture(const KeyProgram& program,
                                                        const ExecBindings& bindings) = 0;
  // Runs the program step by step, resolving each step as it goes (the
  // debugging baseline). Must produce bit-identical results to Replay.
  virtual Status RunEager(const KeyProgram& program, const ExecBindings& bindings,
                          StepObserver* observer = nullptr) = 0;
  virtual Status Synchronize() = 0;
};

struct CpuBackendOptions {
  bool reference_kernels_only = false;  // the baseline the optimised kernels are checked against
};

// The CPU backend (optimised kernels where they apply, OpenMP threads).
std::unique_ptr<Backend> CreateCpuBackend(const CpuBackendOptions& options = {});

}  // namespace moegraph
