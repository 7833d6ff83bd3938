// The CUDA backend: availability reporting and the op table (run everywhere),
// then device memory, capture safety, replay semantics and the engine on the
// GPU (skipped, with the reason, when no CUDA device is present). Per-op
// numerics against the reference kernels live in tests/backends.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "ir/op_registry.h"
#include "runtime/backend.h"
#include "runtime/cuda_backend.h"
#include "runtime/engine.h"

#if defined(MOEGRAPH_HAVE_CUDA)
#include "kernels/cuda/cuda_ops.h"
#endif

namespace moegraph {
namespace {

#define REQUIRE_CUDA_DEVICE()                                  \
  do {                                                         \
    std::string reason;                                        \
    if (!CudaDeviceAvailable(&reason)) GTEST_SKIP() << reason; \
  } while (0)

TEST(CudaBackendTest, CreationAgreesWithDeviceAvailability) {
  std::string reason;
  const bool available = CudaDeviceAvailable(&reason);
  StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(0);
  EXPECT_EQ(backend.ok(), available) << reason;
  if (!available) {
    EXPECT_FALSE(reason.empty());
    EXPECT_NE(backend.status().message().find(reason), std::string::npos)
        << backend.status().ToString();
  } else {
    EXPECT_EQ((*backend)->name(), "cuda");
    EXPECT_FALSE((*backend)->host_memory());
  }
}

TEST(CudaBackendTest, EngineRejectsUnknownBackendNames) {
  EngineOptions options;
  options.backend = "tpu";
  StatusOr<std::unique_ptr<Backend>> backend = CreateBackendByName(options);
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.status().message().find("unknown backend 'tpu'"), std::string::npos);
}

#if defined(MOEGRAPH_HAVE_CUDA)

// Lowered programs of any model run on CUDA only if every op legal after
// lowering has a CUDA kernel (host-side table: no device needed).
TEST(CudaOpTableTest, EveryKernelOpHasACudaKernel) {
  for (const OpDef* def : AllOps()) {
    // HostSync ops run on host backends only (below: the reason CUDA gives).
    if (!def->Has(kKernel) || def->Has(kHostSync)) continue;
    KernelStep step;
    step.kernel = def->name;
    if (def->params != nullptr) {  // the op's parameter counts, as lower-to-kernels writes them
      step.ints.assign(static_cast<size_t>(def->params->num_ints), 0);
      step.floats.assign(static_cast<size_t>(def->params->num_floats), 0.0f);
    }
    EXPECT_EQ(cuda::CudaUnsupportedReason(step), "") << def->name;
  }
}

TEST(CudaOpTableTest, HostSyncOpsAreRejectedWithAReason) {
  KernelStep step;
  step.kernel = "ep_dispatch";
  step.ints.assign(static_cast<size_t>(kParamsInfo<EpParams>.num_ints), 0);
  EXPECT_EQ(cuda::CudaUnsupportedReason(step),
            "op 'ep_dispatch' has the HostSync trait: it waits for the host, which a captured "
            "CUDA graph cannot");
}

TEST(CudaOpTableTest, UnknownOpsAreRejectedWithAReason) {
  KernelStep step;
  step.kernel = "no_such_op";
  EXPECT_NE(cuda::CudaUnsupportedReason(step).find("unknown op 'no_such_op'"), std::string::npos);
  // "weight" is in the registry but is no kernel.
  step.kernel = "weight";
  EXPECT_NE(cuda::CudaUnsupportedReason(step).find("no kernel for op 'weight'"), std::string::npos);
}

#endif  // MOEGRAPH_HAVE_CUDA

// ---- With a device --------------------------------------------------------------

std::unique_ptr<Backend> CudaOrDie() {
  StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(0);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  return backend.ok() ? std::move(*backend) : nullptr;
}

TEST(CudaDeviceTest, AllocateZeroesAndUploadDownloadRoundTrip) {
  REQUIRE_CUDA_DEVICE();
  std::unique_ptr<Backend> backend = CudaOrDie();
  ASSERT_NE(backend, nullptr);
  StatusOr<std::byte*> p = backend->Allocate(1000);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::vector<int32_t> got(250, 7);
  ASSERT_TRUE(backend->Download(got.data(), *p, 1000).ok());
  EXPECT_EQ(got, std::vector<int32_t>(250, 0));
  std::vector<int32_t> want(250);
  for (int i = 0; i < 250; ++i)
    want[i] = i * 31 - 5;
  ASSERT_TRUE(backend->Upload(*p, want.data(), 1000).ok());
  ASSERT_TRUE(backend->Download(got.data(), *p, 1000).ok());
  EXPECT_EQ(got, want);
  backend->Free(*p);
}

TEST(CudaDeviceTest, BadDeviceIndexIsAnError) {
  REQUIRE_CUDA_DEVICE();
  StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(1 << 20);
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.status().message().find("does not exist"), std::string::npos);
}

// A program computing out = a + b over [rows, cols] arena slots.
KeyProgram AddProgram(int64_t rows, int64_t cols) {
  KeyProgram program;
  const int64_t bytes = rows * cols * 4;
  KernelStep step;
  step.kernel = "add";
  for (int i = 0; i < 3; ++i) {
    ArgRef ref;
    ref.arena_offset = i * ((bytes + 255) / 256 * 256);
    ref.shape = {rows, cols};
    (i < 2 ? step.inputs : step.outputs).push_back(ref);
  }
  program.steps = {step};
  program.arena_bytes = 3 * ((bytes + 255) / 256 * 256);
  return program;
}

TEST(CudaDeviceTest, ReplayReadsTheBuffersAsTheyAreAtReplayTime) {
  REQUIRE_CUDA_DEVICE();
  std::unique_ptr<Backend> backend = CudaOrDie();
  ASSERT_NE(backend, nullptr);
  const int64_t rows = 7, cols = 19, n = rows * cols;
  const KeyProgram program = AddProgram(rows, cols);
  StatusOr<std::byte*> arena = backend->Allocate(program.arena_bytes);
  ASSERT_TRUE(arena.ok());
  ExecBindings bindings;
  bindings.arena = *arena;
  bindings.arena_bytes = program.arena_bytes;
  StatusOr<std::unique_ptr<Replayable>> captured = backend->Capture(program, bindings);
  ASSERT_TRUE(captured.ok()) << captured.status().ToString();
  EXPECT_EQ((*captured)->num_steps(), 1u);
  const ArgRef &a = program.steps[0].inputs[0], &b = program.steps[0].inputs[1];
  const ArgRef& out = program.steps[0].outputs[0];
  for (int round = 0; round < 3; ++round) {
    std::vector<float> x(n), y(n), replayed(n), eager(n);
    for (int64_t i = 0; i < n; ++i) {
      x[i] = 0.5f * i + round;
      y[i] = -0.25f * i * round;
    }
    ASSERT_TRUE(backend->Upload(*arena + a.arena_offset, x.data(), n * 4).ok());
    ASSERT_TRUE(backend->Upload(*arena + b.arena_offset, y.data(), n * 4).ok());
    (*captured)->Replay();
    ASSERT_TRUE(backend->Synchronize().ok());
    ASSERT_TRUE(backend->Download(replayed.data(), *arena + out.arena_offset, n * 4).ok());
    ASSERT_TRUE(backend->RunEager(program, bindings).ok());
    ASSERT_TRUE(backend->Download(eager.data(), *arena + out.arena_offset, n * 4).ok());
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(replayed[i], x[i] + y[i]) << round << " " << i;
    EXPECT_EQ(std::memcmp(replayed.data(), eager.data(), n * 4), 0);
  }
  captured->reset();
  backend->Free(*arena);
}

TEST(CudaDeviceTest, CaptureRejectsUnsupportedStepsAndStaysUsable) {
  REQUIRE_CUDA_DEVICE();
  std::unique_ptr<Backend> backend = CudaOrDie();
  ASSERT_NE(backend, nullptr);
  KeyProgram program = AddProgram(3, 5);
  StatusOr<std::byte*> arena = backend->Allocate(program.arena_bytes);
  ASSERT_TRUE(arena.ok());
  ExecBindings bindings;
  bindings.arena = *arena;
  bindings.arena_bytes = program.arena_bytes;
  KeyProgram bad = program;
  bad.steps.push_back(program.steps[0]);
  bad.steps.back().kernel = "no_such_op";
  EXPECT_FALSE(backend->Supports(bad.steps.back()));
  StatusOr<std::unique_ptr<Replayable>> rejected = backend->Capture(bad, bindings);
  ASSERT_FALSE(rejected.ok());
  EXPECT_NE(rejected.status().message().find("no_such_op"), std::string::npos);
  // A step writing outside the arena is refused before anything runs.
  KeyProgram outside = program;
  outside.steps[0].outputs[0].arena_offset = program.arena_bytes;
  EXPECT_FALSE(backend->Capture(outside, bindings).ok());
  // The stream is not left capturing: the good program still captures.
  StatusOr<std::unique_ptr<Replayable>> captured = backend->Capture(program, bindings);
  ASSERT_TRUE(captured.ok()) << captured.status().ToString();
  (*captured)->Replay();
  EXPECT_TRUE(backend->Synchronize().ok());
  captured->reset();
  backend->Free(*arena);
}

// The demo model end to end on the GPU: every key replays bit-identically to
// its eager run, and the logits stay close to the CPU engine's.
TEST(CudaDeviceTest, DemoModelReplayEqualsEagerAndMatchesCpu) {
  REQUIRE_CUDA_DEVICE();
  const std::string dir = ::testing::TempDir() + "/moegraph-cuda-demo";
  ASSERT_TRUE(WriteDemoModel(dir).ok());
  StatusOr<HfModel> model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok());
  CompileModelOptions compile;
  compile.keys.prefill_buckets = {16, 64};
  compile.keys.decode_buckets = {1, 4};
  compile.keys.chunk_size = 32;
  compile.keys.max_chunks = 2;
  StatusOr<Plan> plan = CompileModel(*model, compile);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EngineOptions options;
  options.num_threads = 2;
  options.kv_cache_bytes = 16ull << 20;
  StatusOr<std::unique_ptr<Engine>> cpu = Engine::Load(*plan, options);
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  options.backend = "cuda";
  StatusOr<std::unique_ptr<Engine>> gpu = Engine::Load(*plan, options);
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();

  const std::vector<SequenceStep> prompt = {{1, {5, 9, 2, 77, 100, 3, 4}, 0}, {2, {8, 8, 1}, 0}};
  const std::vector<SequenceStep> decode = {{1, {11}, 7}, {2, {12}, 3}};
  for (const auto* batch : {&prompt, &decode}) {
    StatusOr<StepLogits> want = (*cpu)->Step(*batch);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    StatusOr<StepLogits> replayed = (*gpu)->Step(*batch);
    ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
    for (size_t i = 0; i < want->data.size(); ++i) {
      ASSERT_NEAR(replayed->data[i], want->data[i], 5e-3 + 5e-3 * std::fabs(want->data[i])) << i;
    }
    // The same step again, eagerly, from the same cache state: bit-identical.
    for (const SequenceStep& s : *batch)
      (*gpu)->Release(s.seq_id);
    if (batch == &decode) {
      ASSERT_TRUE((*gpu)->Step(prompt).ok());
    }
    (*gpu)->set_eager(true);
    StatusOr<StepLogits> eager = (*gpu)->Step(*batch);
    (*gpu)->set_eager(false);
    ASSERT_TRUE(eager.ok()) << eager.status().ToString();
    EXPECT_EQ(std::memcmp(eager->data.data(), replayed->data.data(), eager->data.size() * 4), 0);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moegraph
