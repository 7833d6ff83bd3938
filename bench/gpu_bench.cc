// gpu-bench: the demo model on the GPU (or, for a baseline, the CPU): capture
// time and graph memory per key, decode step latency per bucket with replay
// against eager (launch overhead), and tokens/s. Built only with CUDA;
// scripts/gpu-check.sh runs it. Prints ratios, never asserts on time.
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "runtime/engine.h"
#include "support/cli.h"

namespace moegraph {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int Fail(const Status& status) {
  std::fprintf(stderr, "gpu-bench: %s\n", status.ToString().c_str());
  return 1;
}

// Free device memory (0 when there is no device).
size_t FreeDeviceBytes() {
  size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) return 0;
  return free_bytes;
}

struct CaptureRecord {
  SpecKey key;
  double seconds = 0;
  double mib = 0;  // device memory taken while capturing the key
};

// Decode step latency of `num_seqs` sequences, averaged over `iters` steps.
StatusOr<double> DecodeStepSeconds(Engine& engine, int32_t num_seqs, int iters, int64_t first_id,
                                   bool eager) {
  const int32_t vocab = engine.plan().model.vocab_size;
  std::vector<SequenceStep> batch;
  for (int32_t s = 0; s < num_seqs; ++s) {
    batch.push_back({first_id + s, {static_cast<int32_t>((7 * s + 1) % vocab), 3, 5}, 0});
  }
  MG_RETURN_IF_ERROR(engine.Step(batch).status());
  for (SequenceStep& s : batch) {
    s.num_cached = 3;
    s.tokens = {static_cast<int32_t>((s.seq_id * 13) % vocab)};
  }
  engine.set_eager(eager);
  MG_RETURN_IF_ERROR(engine.Step(batch).status());  // warm
  for (SequenceStep& s : batch)
    ++s.num_cached;
  const auto start = Clock::now();
  for (int i = 0; i < iters; ++i) {
    MG_RETURN_IF_ERROR(engine.Step(batch).status());
    for (SequenceStep& s : batch)
      ++s.num_cached;
  }
  const double seconds = Seconds(start) / iters;
  engine.set_eager(false);
  for (const SequenceStep& s : batch)
    engine.Release(s.seq_id);
  return seconds;
}

int Main(int argc, char** argv) {
  std::string backend = "cuda";
  std::string dtype_name = "bf16";
  int iters = 50;
  std::string work_dir = "/tmp/moegraph-gpu-bench-" + std::to_string(::getpid());
  FlagParser flags(
      "gpu-bench [--backend cuda|cpu] [--iters N] [--dtype bf16|f16|f32]",
      "Benchmarks the built-in demo model: capture time and device memory per key,\n"
      "decode step latency per bucket (replay vs eager), prefill and decode tokens/s.");
  flags.Value("--backend", "NAME", "cuda (default) or cpu, for a baseline",
              [&](const std::string& v) -> Status {
                if (v != "cuda" && v != "cpu") return InvalidArgument("--backend: cuda or cpu");
                backend = v;
                return Status::Ok();
              });
  flags.Value("--iters", "N", "timed steps per measurement (default 50)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, "--iters"));
                if (n < 1) return InvalidArgument("--iters must be >= 1");
                iters = static_cast<int>(n);
                return Status::Ok();
              });
  flags.Value("--dtype", "T", "demo weights dtype (default bf16)",
              [&](const std::string& v) -> Status {
                if (v != "bf16" && v != "f16" && v != "f32") {
                  return InvalidArgument("--dtype: bf16, f16 or f32");
                }
                dtype_name = v;
                return Status::Ok();
              });
  StatusOr<std::vector<std::string>> args = flags.Parse(argc, argv);
  if (!args.ok()) return Fail(args.status());
  if (flags.help()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }

  DemoModelOptions demo;
  demo.dtype = dtype_name == "f32" ? DType::kF32 : dtype_name == "f16" ? DType::kF16 : DType::kBF16;
  if (Status s = WriteDemoModel(work_dir, demo); !s.ok()) return Fail(s);
  StatusOr<HfModel> model = LoadHfModel(work_dir);
  if (!model.ok()) return Fail(model.status());
  CompileModelOptions compile;
  compile.keys.decode_buckets = {1, 2, 4, 8, 16, 32, 64};
  compile.keys.prefill_buckets = {64, 256};
  compile.keys.chunk_size = 256;
  compile.keys.max_chunks = 1;
  compile.keys.max_prefill_seqs = 64;  // the decode benchmark prefills up to 64 sequences at once
  const auto compile_start = Clock::now();
  StatusOr<Plan> plan = CompileModel(*model, compile);
  if (!plan.ok()) return Fail(plan.status());
  std::printf("demo model (%s weights), %zu keys compiled in %.2f s\n", dtype_name.c_str(),
              plan->programs.size(), Seconds(compile_start));

  // Capture time and memory per key: on_capture fires before each capture,
  // so each record closes at the next call (the last one after Load).
  std::vector<CaptureRecord> captures;
  Clock::time_point mark;
  size_t free_at_mark = 0;
  auto close_record = [&] {
    if (captures.empty()) return;
    captures.back().seconds = Seconds(mark);
    const size_t free_now = FreeDeviceBytes();
    captures.back().mib =
        free_at_mark > free_now ? static_cast<double>(free_at_mark - free_now) / (1 << 20) : 0.0;
  };
  EngineOptions options;
  options.backend = backend;
  options.kv_cache_bytes = 64ull << 20;
  options.on_capture = [&](size_t, size_t, const SpecKey& key) {
    close_record();
    captures.push_back({key, 0, 0});
    free_at_mark = FreeDeviceBytes();
    mark = Clock::now();
  };
  const size_t free_before_load = FreeDeviceBytes();
  const auto load_start = Clock::now();
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(*plan, options);
  if (!engine.ok()) return Fail(engine.status());
  close_record();
  const double load_seconds = Seconds(load_start);
  const size_t free_after_load = FreeDeviceBytes();
  std::printf(
      "backend %s: load + capture of every key %.2f s, device memory %.1f MiB "
      "(weights %.1f MiB, arena %.1f MiB)\n",
      backend.c_str(), load_seconds,
      free_before_load > free_after_load
          ? static_cast<double>(free_before_load - free_after_load) / (1 << 20)
          : 0.0,
      static_cast<double>((*engine)->weight_bytes()) / (1 << 20),
      static_cast<double>((*engine)->arena_bytes()) / (1 << 20));
  std::printf("\ncapture per key:\n");
  for (const CaptureRecord& r : captures) {
    std::printf("  %-52s %8.2f ms %8.2f MiB\n", r.key.ToString().c_str(), r.seconds * 1e3, r.mib);
  }

  std::printf("\ndecode step latency (Engine::Step: meta upload, replay, logits download):\n");
  std::printf("  %6s %12s %12s %8s %12s\n", "seqs", "replay ms", "eager ms", "eager/x", "tokens/s");
  int64_t next_id = 1;
  for (int32_t seqs : compile.keys.decode_buckets) {
    StatusOr<double> replay = DecodeStepSeconds(**engine, seqs, iters, next_id, false);
    next_id += 1000;
    if (!replay.ok()) return Fail(replay.status());
    StatusOr<double> eager = DecodeStepSeconds(**engine, seqs, iters, next_id, true);
    next_id += 1000;
    if (!eager.ok()) return Fail(eager.status());
    std::printf("  %6d %12.3f %12.3f %8.2f %12.0f\n", seqs, *replay * 1e3, *eager * 1e3,
                *eager / *replay, seqs / *replay);
  }

  // Prefill: one 256-token prompt per step.
  std::vector<int32_t> prompt(256);
  for (size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = static_cast<int32_t>((i * 31 + 7) % 512);
  double prefill_seconds = 0;
  for (int i = 0; i < std::max(iters / 5, 2); ++i) {
    const auto start = Clock::now();
    StatusOr<StepLogits> out = (*engine)->Step({SequenceStep{next_id, prompt, 0}});
    if (!out.ok()) return Fail(out.status());
    if (i > 0) prefill_seconds += Seconds(start);  // the first is a warm-up
    (*engine)->Release(next_id++);
  }
  prefill_seconds /= std::max(iters / 5, 2) - 1;
  std::printf("\nprefill of 256 tokens: %.3f ms per step, %.0f tokens/s\n", prefill_seconds * 1e3,
              256 / prefill_seconds);
  engine->reset();
  std::filesystem::remove_all(work_dir);
  return 0;
}

}  // namespace
}  // namespace moegraph

int main(int argc, char** argv) {
  return moegraph::Main(argc, argv);
}
