// The backend interface: a small table of operations every execution target
// implements (ggml-backend style). A backend allocates device memory, uploads
// bytes, captures a lowered program into something it can replay, replays it,
// and synchronizes; `Supports` says which kernel steps it can run.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ir/program.h"
#include "kernels/kernel_abi.h"
#include "support/status.h"

namespace moegraph {

// Everything a program's arguments point at. All of it stays at fixed
// addresses for the life of the captured programs. Pointers into tensors are
// the backend's memory (Allocate); for a device backend (host_memory() false)
// that is device memory, and so are `meta` and its arrays: kernels read the
// step's ForwardMeta (num_tokens included) on the device, so one captured
// graph serves every batch of its bucket. `kv` is always readable on the host
// (its k/v point at backend memory).
struct ExecBindings {
  std::byte* arena = nullptr;
  uint64_t arena_bytes = 0;
  const std::vector<TensorArg>* weights = nullptr;  // by weight-table index
  std::vector<void*> inputs;                        // graph data inputs (0: token ids)
  const ForwardMetaView* meta = nullptr;
  const KvCacheView* kv = nullptr;
  int num_threads = 1;
  Communicator* comm = nullptr;  // Collective ops' group (null on one rank)
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

// Turns a step argument into a TensorArg: an arena offset, a weight-table
// index or an input slot, each checked against what `bindings` holds.
Status ResolveArgument(const ArgRef& ref, const ExecBindings& bindings, TensorArg& out);

// A step's kernel arguments, bound: its TensorArgs sit in a flat array shared
// by the whole program (`first_arg` onwards: inputs, then outputs).
struct BoundStep {
  size_t first_arg = 0;
  size_t num_in = 0, num_out = 0;
  KernelArgs args;
};

// Resolves the step's arguments (appended to `args`) and parameters. Outputs
// must be arena slots. `args.in` / `args.out` are set by LinkStep, once the
// array stops growing.
Status BindStep(const KernelStep& step, const ExecBindings& bindings, int num_threads,
                std::vector<TensorArg>& args, BoundStep& out);
void LinkStep(BoundStep& step, std::vector<TensorArg>& args);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // The instruction set its kernels use, for logs and benchmarks ("avx512", "avx2",
  // "reference" on the CPU; "" where the backend names none).
  virtual std::string KernelIsa() const { return ""; }
  virtual bool Supports(const KernelStep& step) const = 0;
  // Why Supports(step) is false ("" when it is true).
  virtual std::string WhyUnsupported(const KernelStep& step) const {
    if (Supports(step)) return "";
    return "the " + std::string(name()) + " backend has no kernel '" + step.kernel + "'";
  }
  // Memory the backend's kernels can read and write (host memory on the CPU).
  // Allocate returns zeroed memory.
  virtual StatusOr<std::byte*> Allocate(size_t bytes) = 0;
  virtual void Free(std::byte* data) = 0;
  // Copies host bytes into backend memory, ordered before any later replay or
  // eager run; `src` may be reused as soon as it returns.
  virtual Status Upload(std::byte* dst, const void* src, size_t bytes) = 0;
  // Copies backend memory to the host after the work queued before it; the
  // bytes are in `dst` when it returns. Host-memory backends copy directly.
  virtual Status Download(void* dst, const std::byte* src, size_t bytes) {
    std::memcpy(dst, src, bytes);
    return Status::Ok();
  }
  // Whether Allocate returns host memory that the caller may read and write
  // directly (the CPU). When false, bindings must point at backend memory.
  virtual bool host_memory() const { return true; }
  // Resolves every step once: kernel choice, bound arguments, thread split.
  virtual StatusOr<std::unique_ptr<Replayable>> Capture(const KeyProgram& program,
                                                        const ExecBindings& bindings) = 0;
  // Runs the program step by step, resolving each step as it goes (the
  // debugging baseline). Must produce bit-identical results to Replay.
  virtual Status RunEager(const KeyProgram& program, const ExecBindings& bindings,
                          StepObserver* observer = nullptr) = 0;
  // Waits for queued work. Replay returns nothing, so a device backend
  // reports a failed replay (or kernel) here.
  virtual Status Synchronize() = 0;
};

struct CpuBackendOptions {
  bool reference_kernels_only = false;  // the baseline the optimised kernels are checked against
};

// The CPU backend (optimised kernels where they apply, OpenMP threads).
std::unique_ptr<Backend> CreateCpuBackend(const CpuBackendOptions& options = {});

// The CUDA backend on `device` (runtime/cuda_backend.h has its options); an
// error when the build has no CUDA or the machine has no such device.
StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device = 0);

}  // namespace moegraph
