// The CPU backend: capture resolves each step to a function pointer with
// bound arguments; replay walks that list with no allocation, no lookup and
// no branching on op kinds.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/dispatch.h"
#include "runtime/backend.h"
#include "support/memory.h"

namespace moegraph {
namespace {

// One step, resolved: its kernel and its bound arguments.
struct ResolvedStep : BoundStep {
  KernelFn fn = nullptr;
};

// Resolves one step; `args` receives its TensorArgs.
Status ResolveStep(const KernelStep& step, const ExecBindings& b, bool reference_only,
                   std::vector<TensorArg>& args, ResolvedStep& out) {
  out.fn = SelectCpuKernel(step, reference_only).fn;
  if (!out.fn) return Unimplemented("the CPU backend has no kernel '" + step.kernel + "'");
  return BindStep(step, b, b.num_threads, args, out);
}

class CpuReplayable : public Replayable {
 public:
  CpuReplayable(const KeyProgram& program, std::vector<ResolvedStep> steps,
                std::vector<TensorArg> args)
      : program_steps_(program.steps), steps_(std::move(steps)), args_(std::move(args)) {
    for (ResolvedStep& s : steps_)
      LinkStep(s, args_);
  }
  void Replay(StepObserver* observer) override {
    if (!observer) {
      for (const ResolvedStep& s : steps_)
        s.fn(s.args);
      return;
    }
    for (size_t i = 0; i < steps_.size(); ++i) {
      const double start = NowMicros();
      steps_[i].fn(steps_[i].args);
      observer->OnStep(program_steps_[i], start, NowMicros());
    }
  }
  size_t num_steps() const override { return steps_.size(); }

 private:
  std::vector<KernelStep> program_steps_;  // for observers only
  std::vector<ResolvedStep> steps_;
  std::vector<TensorArg> args_;
};

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options) : options_(options) {}
  std::string_view name() const override {
    return options_.reference_kernels_only ? "cpu-reference" : "cpu";
  }
  std::string KernelIsa() const override {
    return options_.reference_kernels_only ? "reference" : CpuKernelsName();
  }
  bool Supports(const KernelStep& step) const override {
    return SelectCpuKernel(step, options_.reference_kernels_only).fn != nullptr;
  }

  StatusOr<std::byte*> Allocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < bytes || ExceedsPhysicalMemory(rounded)) {
      return ResourceExhausted("cannot allocate " + std::to_string(bytes) +
                               " bytes: more than this machine's memory");
    }
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (!p) return ResourceExhausted("cannot allocate " + std::to_string(bytes) + " bytes");
    std::memset(p, 0, rounded == 0 ? 64 : rounded);
    return static_cast<std::byte*>(p);
  }
  void Free(std::byte* data) override { std::free(data); }
  Status Upload(std::byte* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
    return Status::Ok();
  }

  StatusOr<std::unique_ptr<Replayable>> Capture(const KeyProgram& program,
                                                const ExecBindings& bindings) override {
    std::vector<ResolvedStep> steps(program.steps.size());
    std::vector<TensorArg> args;
    for (size_t i = 0; i < program.steps.size(); ++i) {
      MG_RETURN_IF_ERROR(
          ResolveStep(program.steps[i], bindings, options_.reference_kernels_only, args, steps[i])
              .WithContext("capturing " + program.key.ToString()));
    }
    return std::unique_ptr<Replayable>(
        new CpuReplayable(program, std::move(steps), std::move(args)));
  }

  Status RunEager(const KeyProgram& program, const ExecBindings& bindings,
                  StepObserver* observer) override {
    std::vector<TensorArg> args;
    for (const KernelStep& step : program.steps) {
      args.clear();
      ResolvedStep resolved;
      MG_RETURN_IF_ERROR(
          ResolveStep(step, bindings, options_.reference_kernels_only, args, resolved)
              .WithContext("running " + program.key.ToString()));
      LinkStep(resolved, args);
      const double start = observer ? NowMicros() : 0;
      resolved.fn(resolved.args);
      if (observer) observer->OnStep(step, start, NowMicros());
    }
    return Status::Ok();
  }

  Status Synchronize() override { return Status::Ok(); }

 private:
  CpuBackendOptions options_;
};

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace moegraph
