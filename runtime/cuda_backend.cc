// The CUDA backend (see cuda_backend.h): steps resolve through the CUDA op
// table (kernels/cuda/cuda_ops.h) to bound host launch functions; capture
// records them into one CUDA graph per key.
#include "runtime/cuda_backend.h"

#if defined(MOEGRAPH_HAVE_CUDA)

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/gemm.cuh"

namespace moegraph {
namespace {

// cuBLASLt workspace; 32 MiB is NVIDIA's advice for Hopper.
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

Status CudaCheck(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status::Ok();
  return Internal(what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

// One step, resolved: its CUDA kernel and its bound arguments.
struct ResolvedStep : BoundStep {
  cuda::CudaKernel kernel;
};

Status ResolveStep(const KernelStep& step, const ExecBindings& b, std::vector<TensorArg>& args,
                   ResolvedStep& out) {
  const std::string why_not = cuda::CudaUnsupportedReason(step);
  if (!why_not.empty()) return Unimplemented(why_not);
  out.kernel = cuda::LookupCudaKernel(step.kernel);
  return BindStep(step, b, /*num_threads=*/1, args, out);
}

size_t ScratchBytes(const ResolvedStep& step, int activation_parts) {
  return step.kernel.scratch_bytes ? step.kernel.scratch_bytes(step.args, activation_parts) : 0;
}

class CudaBackend;

class CudaReplayable : public Replayable {
 public:
  CudaReplayable(CudaBackend* backend, cudaGraph_t graph, cudaGraphExec_t exec, size_t num_steps,
                 const SpecKey& key)
      : backend_(backend), graph_(graph), exec_(exec), num_steps_(num_steps) {
    graph_step_.kernel = "cuda_graph " + key.ToString();
  }
  ~CudaReplayable() override {
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }
  void Replay(StepObserver* observer) override;
  size_t num_steps() const override { return num_steps_; }

 private:
  CudaBackend* backend_;
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  size_t num_steps_;
  KernelStep graph_step_;  // what an observer sees: the whole graph, launch to completion
};

class CudaBackend : public Backend {
 public:
  static StatusOr<std::unique_ptr<Backend>> Create(const CudaBackendOptions& options) {
    std::string reason;
    if (!CudaDeviceAvailable(&reason)) return FailedPrecondition(reason);
    int count = 0;
    MG_RETURN_IF_ERROR(CudaCheck(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
    if (options.device < 0 || options.device >= count) {
      return InvalidArgument("CUDA device " + std::to_string(options.device) + " does not exist (" +
                             std::to_string(count) + " devices)");
    }
    if (options.activation_parts < 1 || options.activation_parts > 2) {
      return InvalidArgument("activation_parts must be 1 or 2");
    }
    std::unique_ptr<CudaBackend> backend(new CudaBackend(options));
    MG_RETURN_IF_ERROR(CudaCheck(cudaSetDevice(options.device), "cudaSetDevice"));
    MG_RETURN_IF_ERROR(CudaCheck(
        cudaStreamCreateWithFlags(&backend->stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
    if (options.use_cublaslt) {
      MG_RETURN_IF_ERROR(
          CudaCheck(cudaMalloc(&backend->workspace_, kGemmWorkspaceBytes), "GEMM workspace"));
      MG_ASSIGN_OR_RETURN(backend->gemm_,
                          cuda::CublasLtGemm::Create(backend->workspace_, kGemmWorkspaceBytes));
    }
    return std::unique_ptr<Backend>(std::move(backend));
  }

  ~CudaBackend() override {
    cudaSetDevice(options_.device);
    if (stream_) cudaStreamSynchronize(stream_);
    gemm_.reset();
    if (workspace_) cudaFree(workspace_);
    for (void* p : scratch_buffers_)
      cudaFree(p);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string_view name() const override { return "cuda"; }
  bool Supports(const KernelStep& step) const override {
    return cuda::CudaUnsupportedReason(step).empty();
  }
  std::string WhyUnsupported(const KernelStep& step) const override {
    return cuda::CudaUnsupportedReason(step);
  }
  bool host_memory() const override { return false; }

  StatusOr<std::byte*> Allocate(size_t bytes) override {
    MG_RETURN_IF_ERROR(SetDevice());
    void* p = nullptr;
    const size_t rounded = std::max<size_t>((bytes + 255) / 256 * 256, 256);
    const cudaError_t e = cudaMalloc(&p, rounded);
    if (e != cudaSuccess) {
      return ResourceExhausted("cudaMalloc of " + std::to_string(bytes) +
                               " bytes: " + cudaGetErrorString(e));
    }
    Status zeroed = CudaCheck(cudaMemsetAsync(p, 0, rounded, stream_), "zeroing an allocation");
    if (zeroed.ok()) zeroed = CudaCheck(cudaStreamSynchronize(stream_), "zeroing an allocation");
    if (!zeroed.ok()) {
      cudaFree(p);
      return zeroed;
    }
    return static_cast<std::byte*>(p);
  }
  void Free(std::byte* data) override {
    if (data == nullptr) return;
    cudaSetDevice(options_.device);
    cudaFree(data);
  }
  Status Upload(std::byte* dst, const void* src, size_t bytes) override {
    MG_RETURN_IF_ERROR(SetDevice());
    if (bytes == 0) return Status::Ok();
    return CudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "upload");
  }
  Status Download(void* dst, const std::byte* src, size_t bytes) override {
    MG_RETURN_IF_ERROR(SetDevice());
    if (bytes == 0) return Status::Ok();
    MG_RETURN_IF_ERROR(
        CudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "download"));
    return Synchronize();
  }

  StatusOr<std::unique_ptr<Replayable>> Capture(const KeyProgram& program,
                                                const ExecBindings& bindings) override {
    MG_RETURN_IF_ERROR(SetDevice());
    const std::string where = "capturing " + program.key.ToString();
    std::vector<ResolvedStep> steps(program.steps.size());
    std::vector<TensorArg> args;
    for (size_t i = 0; i < program.steps.size(); ++i) {
      MG_RETURN_IF_ERROR(
          ResolveStep(program.steps[i], bindings, args, steps[i]).WithContext(where));
    }
    size_t scratch_needed = 0;
    for (ResolvedStep& s : steps) {
      LinkStep(s, args);
      scratch_needed = std::max(scratch_needed, ScratchBytes(s, options_.activation_parts));
    }
    // Everything that allocates or asks cuBLASLt for heuristics happens here,
    // before the capture: the scratch, then a warm-up run that creates every
    // GEMM plan (and surfaces kernel errors with a clear step name).
    MG_RETURN_IF_ERROR(EnsureScratch(scratch_needed).WithContext(where));
    const cuda::CudaStepContext ctx = Context();
    for (size_t i = 0; i < steps.size(); ++i) {
      MG_RETURN_IF_ERROR(
          RunStep(steps[i], program.steps[i], ctx).WithContext(where + " (warm-up)"));
    }
    MG_RETURN_IF_ERROR(
        CudaCheck(cudaStreamSynchronize(stream_), "warm-up of " + program.key.ToString()));

    MG_RETURN_IF_ERROR(CudaCheck(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                                 "BeginCapture"));
    Status recorded = Status::Ok();
    for (size_t i = 0; i < steps.size() && recorded.ok(); ++i) {
      // Capture safety: the stream must still be capturing (a step that
      // synchronized or used another stream would have invalidated it).
      cudaStreamCaptureStatus capture_status = cudaStreamCaptureStatusNone;
      recorded = CudaCheck(cudaStreamIsCapturing(stream_, &capture_status), "IsCapturing");
      if (recorded.ok() && capture_status != cudaStreamCaptureStatusActive) {
        recorded = Internal("the stream left capture mode before step " + std::to_string(i) + " '" +
                            program.steps[i].kernel + "'");
      }
      if (recorded.ok()) recorded = RunStep(steps[i], program.steps[i], ctx);
    }
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (recorded.ok()) recorded = CudaCheck(end, "EndCapture");
    if (!recorded.ok()) {
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();  // clear a capture-invalidation error
      return recorded.WithContext(where);
    }
    cudaGraphExec_t exec = nullptr;
    Status made = CudaCheck(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    if (made.ok()) made = CudaCheck(cudaGraphUpload(exec, stream_), "cudaGraphUpload");
    if (made.ok()) made = CudaCheck(cudaStreamSynchronize(stream_), "cudaGraphUpload");
    if (!made.ok()) {
      if (exec) cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      return made.WithContext(where);
    }
    return std::unique_ptr<Replayable>(
        new CudaReplayable(this, graph, exec, steps.size(), program.key));
  }

  Status RunEager(const KeyProgram& program, const ExecBindings& bindings,
                  StepObserver* observer) override {
    MG_RETURN_IF_ERROR(SetDevice());
    const std::string where = "running " + program.key.ToString();
    std::vector<TensorArg> args;
    for (const KernelStep& step : program.steps) {
      args.clear();
      ResolvedStep resolved;
      MG_RETURN_IF_ERROR(ResolveStep(step, bindings, args, resolved).WithContext(where));
      LinkStep(resolved, args);
      // Outside any capture, so the scratch may grow here (captured graphs
      // keep the buffers they were recorded with).
      MG_RETURN_IF_ERROR(EnsureScratch(ScratchBytes(resolved, options_.activation_parts)));
      const double start = observer ? NowMicros() : 0;
      MG_RETURN_IF_ERROR(RunStep(resolved, step, Context()).WithContext(where));
      if (observer) {
        MG_RETURN_IF_ERROR(CudaCheck(cudaStreamSynchronize(stream_), where));
        observer->OnStep(step, start, NowMicros());
      }
    }
    return Status::Ok();
  }

  Status Synchronize() override {
    MG_RETURN_IF_ERROR(SetDevice());
    Status status = CudaCheck(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    if (!replay_error_.ok()) {
      status = replay_error_;
      replay_error_ = Status::Ok();
    }
    return status;
  }

  void LaunchGraph(cudaGraphExec_t exec, StepObserver* observer, const KernelStep& graph_step) {
    if (cudaSetDevice(options_.device) != cudaSuccess) return RecordError("cudaSetDevice");
    const double start = observer ? NowMicros() : 0;
    const cudaError_t e = cudaGraphLaunch(exec, stream_);
    if (e != cudaSuccess)
      return RecordError(std::string("cudaGraphLaunch: ") + cudaGetErrorString(e));
    if (observer) {
      const cudaError_t s = cudaStreamSynchronize(stream_);
      if (s != cudaSuccess) return RecordError(std::string("replay: ") + cudaGetErrorString(s));
      observer->OnStep(graph_step, start, NowMicros());
    }
  }

  cudaStream_t stream() const { return stream_; }

 private:
  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {}

  Status SetDevice() const { return CudaCheck(cudaSetDevice(options_.device), "cudaSetDevice"); }

  void RecordError(const std::string& message) {
    if (replay_error_.ok()) replay_error_ = Internal(message);
  }

  cuda::CudaStepContext Context() const {
    cuda::CudaStepContext ctx;
    ctx.stream = stream_;
    ctx.gemm = gemm_.get();
    ctx.scratch = scratch_;
    ctx.scratch_bytes = scratch_bytes_;
    ctx.activation_parts = options_.activation_parts;
    return ctx;
  }

  // Grows the scratch (geometrically) to at least `bytes`. The old buffer is
  // kept, not freed: graphs captured earlier still point at it.
  Status EnsureScratch(size_t bytes) {
    if (bytes <= scratch_bytes_) return Status::Ok();
    const size_t grown = std::max(bytes, 2 * scratch_bytes_);
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, grown);
    if (e != cudaSuccess) {
      return ResourceExhausted("cudaMalloc of " + std::to_string(grown) +
                               " scratch bytes: " + cudaGetErrorString(e));
    }
    scratch_buffers_.push_back(p);
    scratch_ = static_cast<std::byte*>(p);
    scratch_bytes_ = grown;
    return Status::Ok();
  }

  Status RunStep(const ResolvedStep& resolved, const KernelStep& step,
                 const cuda::CudaStepContext& ctx) {
    return resolved.kernel.run(resolved.args, ctx)
        .WithContext("step '" + step.kernel + "' (op #" + std::to_string(step.op_index) + ")");
  }

  CudaBackendOptions options_;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  std::unique_ptr<cuda::CublasLtGemm> gemm_;
  std::byte* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::vector<void*> scratch_buffers_;  // every scratch ever used, freed at destruction
  Status replay_error_;                 // from Replay, reported by Synchronize
};

void CudaReplayable::Replay(StepObserver* observer) {
  backend_->LaunchGraph(exec_, observer, graph_step_);
}

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  return CudaBackend::Create(options);
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device) {
  CudaBackendOptions options;
  options.device = device;
  return CudaBackend::Create(options);
}

bool CudaDeviceAvailable(std::string* reason) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    if (reason) *reason = std::string("no CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "no CUDA device: cudaGetDeviceCount returned 0";
    return false;
  }
  return true;
}

void* CudaBackendStream(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  return cuda ? static_cast<void*>(cuda->stream()) : nullptr;
}

}  // namespace moegraph

#else  // !MOEGRAPH_HAVE_CUDA

namespace moegraph {

namespace {
constexpr const char* kNoCuda =
    "this build has no CUDA backend (configure with -DMOEGRAPH_CUDA=ON on a machine with nvcc)";
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions&) {
  return Unimplemented(kNoCuda);
}
StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int) {
  return Unimplemented(kNoCuda);
}
bool CudaDeviceAvailable(std::string* reason) {
  if (reason) *reason = kNoCuda;
  return false;
}
void* CudaBackendStream(Backend&) {
  return nullptr;
}

}  // namespace moegraph

#endif  // MOEGRAPH_HAVE_CUDA
