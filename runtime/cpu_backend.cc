// The CPU backend: capture resolves each step to a function pointer with
// bound arguments; replay walks that list with no allocation, no lookup and
// no branching on op kinds.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/dispatch.h"
#include "runtime/backend.h"

namespace moegraph {
namespace {

// Every TensorArg and KernelArgs of one step, resolved.
struct ResolvedStep {
  KernelFn fn = nullptr;
  size_t first_arg = 0;  // into the flat TensorArg array
  size_t num_in = 0, num_out = 0;
  KernelArgs args;
};

// Resolves one step; `args` receives its TensorArgs.
Status ResolveStep(const KernelStep& step, const ExecBindings& b, bool reference_only,
                   std::vector<TensorArg>& args, ResolvedStep& out) {
  out.fn = SelectCpuKernel(step, reference_only).fn;
  if (!out.fn) return Unimplemented("the CPU backend has no kernel '" + step.kernel + "'");
  if (step.ints.size() > kMaxKernelInts || step.floats.size() > kMaxKernelFloats) {
    return InvalidArgument("step '" + step.kernel + "' has too many parameters");
  }
  out.first_arg = args.size();
  out.num_in = step.inputs.size();
  out.num_out = step.outputs.size();
  for (const ArgRef& ref : step.inputs) {
    args.emplace_back();
    MG_RETURN_IF_ERROR(
        ResolveArgument(ref, b, args.back()).WithContext("step '" + step.kernel + "'"));
  }
  for (const ArgRef& ref : step.outputs) {
    if (ref.kind != ArgKind::kArena) {
      return InvalidArgument("step '" + step.kernel + "' writes outside the arena");
    }
    args.emplace_back();
    MG_RETURN_IF_ERROR(
        ResolveArgument(ref, b, args.back()).WithContext("step '" + step.kernel + "'"));
  }
  out.args = KernelArgs{};
  out.args.meta = b.meta;
  out.args.kv = b.kv;
  out.args.num_in = static_cast<int>(out.num_in);
  out.args.num_out = static_cast<int>(out.num_out);
  out.args.num_threads = b.num_threads;
  std::copy(step.ints.begin(), step.ints.end(), out.args.ints);
  std::copy(step.floats.begin(), step.floats.end(), out.args.floats);
  return Status::Ok();
}

void Link(ResolvedStep& step, std::vector<TensorArg>& args) {
  step.args.in = args.data() + step.first_arg;
  step.args.out = args.data() + step.first_arg + step.num_in;
}

class CpuReplayable : public Replayable {
 public:
  CpuReplayable(const KeyProgram& program, std::vector<ResolvedStep> steps,
                std::vector<TensorArg> args)
      : program_steps_(program.steps), steps_(std::move(steps)), args_(std::move(args)) {
    for (ResolvedStep& s : steps_)
      Link(s, args_);
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
  bool Supports(const KernelStep& step) const override {
    return SelectCpuKernel(step, options_.reference_kernels_only).fn != nullptr;
  }

  StatusOr<std::byte*> Allocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
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
      Link(resolved, args);
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
