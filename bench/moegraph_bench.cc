// moegraph-bench: the whole-model benchmark driver. It measures the machine's
// yardsticks (read/triad bandwidth, peak FMA, OpenBLAS), generates the bench
// models, compiles their plans, runs every key of each plan in a child
// process (so peak RSS is the engine's own), measures the prefill MoE layer
// against peak FMA and OpenBLAS, and prints each figure next to its
// yardstick as a ratio. It never asserts on time.
#include <omp.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "bench/bench_models.h"
#include "bench/yardsticks.h"
#include "checkpoint/safetensors.h"
#include "compiler/compile_model.h"
#include "ir/program.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/opt_kernels.h"
#include "plan/plan_file.h"
#include "runtime/engine.h"
#include "runtime/synthetic_step.h"
#include "support/cli.h"
#include "support/half.h"
#include "support/strings.h"

namespace moegraph::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

struct DriverOptions {
  bool smoke = false;
  std::string cache_dir;            // default: bench-models next to the bin/ directory
  std::vector<std::string> models;  // default: see --models
  int threads = 0;                  // 0: OpenMP's default
  bool openblas = true;
  // Child mode: run the engine on one plan and write the results file.
  std::string engine_plan, engine_result;
  bool decode1_only = false;   // child: only the decode batch-1 key and its real decode
  int rounds = 0;              // timing rounds per key (0: 5, smoke 1)
  bool generate_only = false;  // write the models' checkpoints, then stop
  WeightFormat weights = WeightFormat::kCheckpoint;  // compile-model --weights of the plans
};

// ---- Engine run (child process) -----------------------------------------------------

struct KeyResult {
  std::string key;
  std::string phase;
  int32_t bucket = 0, tokens = 0;
  double replay_us = 0, eager_us = 0, kernel_us = 0;
  double dispatch_overhead = 0;  // fraction of an observed replay spent outside kernels
};

// Decoding like a user (RunRealDecode): real greedy tokens at increasing positions.
struct RealDecodeResult {
  int32_t batch = 0, steps = 0;
  double us_per_step = 0;
  double tokens_per_s() const { return us_per_step > 0 ? batch / (us_per_step * 1e-6) : 0; }
};

struct EngineResult {
  double load_s = 0;
  uint64_t peak_rss = 0, weight_bytes = 0, kv_bytes = 0, arena_bytes = 0;
  int threads = 0;
  std::vector<KeyResult> keys;
  std::vector<RealDecodeResult> real_decode;
};

struct KernelTimer : StepObserver {
  double total_us = 0;
  void OnStep(const KernelStep&, double start_us, double end_us) override {
    total_us += end_us - start_us;
  }
};

// Mean microseconds of fn over at least `min_runs` runs and `min_seconds`.
template <typename Fn>
double TimeIt(Fn fn, double min_seconds, int min_runs) {
  int runs = 0;
  const auto start = Clock::now();
  do {
    fn();
    ++runs;
  } while (runs < min_runs || Seconds(start) < min_seconds);
  return Seconds(start) * 1e6 / runs;
}

uint64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

Status RunEngineChild(const DriverOptions& options) {
  EngineOptions engine_options;
  engine_options.num_threads = options.threads;
  const auto load_start = Clock::now();
  MG_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine,
                      Engine::Open(options.engine_plan, engine_options));
  EngineResult result;
  result.load_s = Seconds(load_start);
  const int rounds = options.rounds > 0 ? options.rounds : options.smoke ? 1 : 5;
  const double round_seconds = options.smoke ? 0.005 : 0.1;
  for (const KeyProgram& program : engine->plan().programs) {
    if (options.decode1_only &&
        (program.key.phase != MoePhase::kDecode || program.key.token_bucket != 1)) {
      continue;
    }
    std::vector<int64_t> seqs;
    StatusOr<int32_t> tokens = PrepareSyntheticStep(*engine, program.key, seqs);
    if (tokens.ok() && *tokens > 0) {
      KeyResult r;
      r.key = program.key.ToString();
      r.phase = program.key.phase == MoePhase::kDecode ? "decode" : "prefill";
      r.bucket = program.key.token_bucket;
      r.tokens = *tokens;
      // Rounds of replay, eager and observed replay, interleaved so a noisy
      // moment hits all three alike; each figure is its median over rounds.
      // Kernel time is the sum of the observed replay's step durations.
      std::vector<double> replay, eager, kernels, observed_wall;
      (void)engine->ReplayKey(program.key);  // warm
      for (int round = 0; round < rounds; ++round) {
        replay.push_back(TimeIt([&] { (void)engine->ReplayKey(program.key); }, round_seconds, 2));
        eager.push_back(TimeIt([&] { (void)engine->RunEagerObserved(program.key, nullptr); },
                               round_seconds, 2));
        KernelTimer timer;
        int observed = 0;
        observed_wall.push_back(TimeIt(
            [&] {
              (void)engine->ReplayKey(program.key, &timer);
              ++observed;
            },
            round_seconds, 2));
        kernels.push_back(timer.total_us / observed);
      }
      r.replay_us = Median(replay);
      r.eager_us = Median(eager);
      r.kernel_us = Median(kernels);
      // Time outside kernels in the same observed replays (the replay loop,
      // plus the observer's own clock reads: an upper bound).
      std::vector<double> outside;
      for (int round = 0; round < rounds; ++round)
        outside.push_back(std::max(0.0, observed_wall[round] - kernels[round]) /
                          observed_wall[round]);
      r.dispatch_overhead = Median(outside);
      result.keys.push_back(r);
    }
    for (int64_t id : seqs)
      engine->Release(id);
    if (!tokens.ok()) return tokens.status().WithContext("benchmarking " + program.key.ToString());
  }
  // Real decode at each decode bucket the summary reports: a 32-token prompt,
  // then steps at positions 32.., as many as ~0.3 s takes (the median of the
  // rounds; smoke: one short round).
  for (const KeyResult& k : result.keys) {
    if (k.phase != "decode" || (k.bucket != 1 && k.bucket != 8 && k.bucket != 32)) continue;
    const int32_t steps = options.smoke ? std::min(4, RealDecodeSteps(*engine, k.replay_us))
                                        : RealDecodeSteps(*engine, k.replay_us);
    std::vector<double> us;
    for (int round = 0; round < std::min(rounds, options.smoke ? 1 : 3); ++round) {
      MG_ASSIGN_OR_RETURN(DecodeRun run,
                          RunRealDecode(*engine, k.bucket, kRealDecodePrompt, steps));
      us.push_back(run.seconds * 1e6 / run.steps);
    }
    result.real_decode.push_back({k.bucket, steps, Median(us)});
  }
  std::ofstream out(options.engine_result);
  out << "load_s " << result.load_s << "\n"
      << "peak_rss " << PeakRssBytes() << "\n"
      << "weights " << engine->weight_bytes() << "\n"
      << "kv " << engine->kv_cache().bytes() << "\n"
      << "arena " << engine->arena_bytes() << "\n"
      << "threads " << engine->num_threads() << "\n";
  for (const KeyResult& r : result.keys) {
    out << "key " << r.key << " " << r.phase << " " << r.bucket << " " << r.tokens << " "
        << r.replay_us << " " << r.eager_us << " " << r.kernel_us << " " << r.dispatch_overhead
        << "\n";
  }
  for (const RealDecodeResult& r : result.real_decode)
    out << "real " << r.batch << " " << r.steps << " " << r.us_per_step << "\n";
  if (!out) return InvalidArgument("cannot write " + options.engine_result);
  return Status::Ok();
}

StatusOr<EngineResult> ReadEngineResult(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": the engine run wrote no results");
  EngineResult r;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string field;
    ls >> field;
    if (field == "load_s") ls >> r.load_s;
    if (field == "peak_rss") ls >> r.peak_rss;
    if (field == "weights") ls >> r.weight_bytes;
    if (field == "kv") ls >> r.kv_bytes;
    if (field == "arena") ls >> r.arena_bytes;
    if (field == "threads") ls >> r.threads;
    if (field == "key") {
      KeyResult k;
      ls >> k.key >> k.phase >> k.bucket >> k.tokens >> k.replay_us >> k.eager_us >> k.kernel_us >>
          k.dispatch_overhead;
      r.keys.push_back(k);
    }
    if (field == "real") {
      RealDecodeResult d;
      ls >> d.batch >> d.steps >> d.us_per_step;
      r.real_decode.push_back(d);
    }
  }
  return r;
}

// ---- Prefill MoE layer (in process) -------------------------------------------------

struct MoeLayerResult {
  int64_t tokens = 0, pairs = 0;
  double layer_s = 0;    // router .. unpermute-reduce
  double grouped_s = 0;  // the two grouped matmuls
  double flops = 0;      // expert GEMM flops (2 * pairs * 3 * inter * hidden)
  double blas_s = 0;     // OpenBLAS per-expert sgemms + SiLU, same routing
  std::string variant;
};

struct Buffer {
  std::vector<float> f32;
  std::vector<int32_t> i32;
};

TensorArg Tensor(void* data, DType dtype, std::vector<int64_t> shape) {
  TensorArg t;
  t.data = data;
  t.dtype = dtype;
  t.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), t.shape);
  return t;
}

// The kernel dispatch selects for `kernel` on these input dtypes.
KernelFn Select(const std::string& kernel, const std::vector<DType>& input_dtypes,
                std::string* variant) {
  KernelStep step;
  step.kernel = kernel;
  for (DType d : input_dtypes) {
    ArgRef ref;
    ref.dtype = d;
    step.inputs.push_back(ref);
  }
  const CpuKernelChoice choice = SelectCpuKernel(step, /*reference_only=*/false);
  if (variant) *variant = choice.variant;
  return choice.fn;
}

// Calls fn with the op's parameters (none, or one params struct).
template <typename... P>
void Call(KernelFn fn, std::vector<TensorArg> in, std::vector<TensorArg> out, int threads,
          const P&... params) {
  KernelArgs args;
  args.in = in.data();
  args.num_in = static_cast<int>(in.size());
  args.out = out.data();
  args.num_out = static_cast<int>(out.size());
  (SetParams(args, params), ...);
  args.num_threads = threads;
  fn(args);
}

StatusOr<MoeLayerResult> RunMoeLayer(const Qwen3MoeConfig& c, const std::string& dir,
                                     int64_t tokens, int threads, bool openblas, int reps) {
  MG_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(dir));
  int64_t layer = 0;
  while (!c.IsMoeLayer(layer))
    ++layer;
  const std::string prefix = "model.layers." + std::to_string(layer) + ".mlp.";
  const int64_t hidden = c.hidden_size, inter = c.moe_intermediate_size, experts = c.num_experts,
                top_k = c.num_experts_per_tok;
  MG_ASSIGN_OR_RETURN(const SafetensorsTensor* router, checkpoint.Get(prefix + "gate.weight"));
  std::vector<const void*> gate(experts), up(experts), down(experts);
  for (int64_t e = 0; e < experts; ++e) {
    const std::string ep = prefix + "experts." + std::to_string(e) + ".";
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* g, checkpoint.Get(ep + "gate_proj.weight"));
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* u, checkpoint.Get(ep + "up_proj.weight"));
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* d, checkpoint.Get(ep + "down_proj.weight"));
    gate[e] = g->data;
    up[e] = u->data;
    down[e] = d->data;
  }
  const DType wdtype = router->dtype;
  const int64_t pairs = tokens * top_k;
  // Hidden states after RMSNorm: unit RMS.
  std::vector<float> x(tokens * hidden);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.7320508f, 1.7320508f);
  for (float& v : x)
    v = dist(rng);
  std::vector<float> logits(tokens * experts), route_w(pairs), xp(pairs * hidden), h(pairs * inter),
      yp(pairs * hidden), out(tokens * hidden);
  std::vector<int32_t> ids(pairs), sorted(pairs), offsets(experts + 1);

  TensorArg router_arg = Tensor(const_cast<std::byte*>(router->data), wdtype, {experts, hidden});
  TensorArg gate_arg = Tensor(nullptr, wdtype, {experts, inter, hidden});
  gate_arg.expert_data = gate.data();
  TensorArg up_arg = Tensor(nullptr, wdtype, {experts, inter, hidden});
  up_arg.expert_data = up.data();
  TensorArg down_arg = Tensor(nullptr, wdtype, {experts, hidden, inter});
  down_arg.expert_data = down.data();

  MoeLayerResult result;
  const KernelFn linear = Select("linear", {DType::kF32, wdtype}, nullptr);
  const KernelFn topk = Select("topk_route", {DType::kF32}, nullptr);
  const KernelFn align = Select("moe_align", {DType::kI32}, nullptr);
  const KernelFn permute = Select("moe_permute", {DType::kF32, DType::kI32}, nullptr);
  const KernelFn gate_up = Select("grouped_matmul_silu_mul",
                                  {DType::kF32, DType::kI32, wdtype, wdtype}, &result.variant);
  const KernelFn grouped = Select("grouped_matmul", {DType::kF32, DType::kI32, wdtype}, nullptr);
  const KernelFn unpermute =
      Select("moe_unpermute_reduce", {DType::kF32, DType::kI32, DType::kF32}, nullptr);

  auto route = [&] {
    Call(linear, {Tensor(x.data(), DType::kF32, {tokens, hidden}), router_arg},
         {Tensor(logits.data(), DType::kF32, {tokens, experts})}, threads);
    Call(topk, {Tensor(logits.data(), DType::kF32, {tokens, experts})},
         {Tensor(ids.data(), DType::kI32, {tokens, top_k}),
          Tensor(route_w.data(), DType::kF32, {tokens, top_k})},
         threads,
         TopkRouteParams{
             .top_k = top_k, .norm_topk_prob = c.norm_topk_prob ? 1 : 0, .row_offset = 0});
    Call(align, {Tensor(ids.data(), DType::kI32, {tokens, top_k})},
         {Tensor(sorted.data(), DType::kI32, {pairs}),
          Tensor(offsets.data(), DType::kI32, {experts + 1})},
         threads, NumExpertsParams{.num_experts = experts});
    Call(permute,
         {Tensor(x.data(), DType::kF32, {tokens, hidden}),
          Tensor(sorted.data(), DType::kI32, {pairs})},
         {Tensor(xp.data(), DType::kF32, {pairs, hidden})}, threads, TopKParams{.top_k = top_k});
  };
  auto experts_gemm = [&] {
    Call(gate_up,
         {Tensor(xp.data(), DType::kF32, {pairs, hidden}),
          Tensor(offsets.data(), DType::kI32, {experts + 1}), gate_arg, up_arg},
         {Tensor(h.data(), DType::kF32, {pairs, inter})}, threads);
    Call(grouped,
         {Tensor(h.data(), DType::kF32, {pairs, inter}),
          Tensor(offsets.data(), DType::kI32, {experts + 1}), down_arg},
         {Tensor(yp.data(), DType::kF32, {pairs, hidden})}, threads);
  };
  auto reduce = [&] {
    Call(unpermute,
         {Tensor(yp.data(), DType::kF32, {pairs, hidden}),
          Tensor(sorted.data(), DType::kI32, {pairs}),
          Tensor(route_w.data(), DType::kF32, {tokens, top_k})},
         {Tensor(out.data(), DType::kF32, {tokens, hidden})}, threads, TopKParams{.top_k = top_k});
  };
  route();
  experts_gemm();  // warm: pages of every routed expert
  result.layer_s = result.grouped_s = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto start = Clock::now();
    route();
    const auto gemm_start = Clock::now();
    experts_gemm();
    result.grouped_s = std::min(result.grouped_s, Seconds(gemm_start));
    reduce();
    result.layer_s = std::min(result.layer_s, Seconds(start));
  }
  result.tokens = tokens;
  result.pairs = offsets[experts];
  result.flops = 2.0 * result.pairs * 3.0 * inter * hidden;

  if (openblas && HaveOpenBlas()) {
    // fp32 copies of every routed expert's weights; same rows, same routing.
    std::vector<BlasExpert> blas(experts);
    auto widen = [&](const void* src, int64_t n, std::vector<float>& dst) {
      dst.resize(n);
      const uint16_t* bits = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        dst[i] = wdtype == DType::kF32    ? static_cast<const float*>(src)[i]
                 : wdtype == DType::kBF16 ? Bf16ToF32(bits[i])
                                          : F16ToF32(bits[i]);
      }
    };
    for (int64_t e = 0; e < experts; ++e) {
      blas[e].rows = offsets[e + 1] - offsets[e];
      if (blas[e].rows == 0) continue;
      widen(gate[e], inter * hidden, blas[e].gate);
      widen(up[e], inter * hidden, blas[e].up);
      widen(down[e], hidden * inter, blas[e].down);
    }
    OpenBlasMoeSeconds(blas, xp, hidden, inter, threads, 1);  // warm
    result.blas_s = OpenBlasMoeSeconds(blas, xp, hidden, inter, threads, reps);
  }
  return result;
}

// ---- Reporting -------------------------------------------------------------------------

struct Yardsticks {
  double read_gbs = 0;         // best of 1/4/8 streams per thread
  double stream_read_gbs = 0;  // 1 stream per thread (STREAM's pattern)
  double triad_gbs = 0;
  double peak_gflops = 0;         // AVX2 FMA
  double peak_avx512_gflops = 0;  // AVX-512 FMA (0 without AVX-512)
  // The FMA peak of the ISA the kernels use: what their GEMMs are measured against.
  double kernel_peak_gflops() const {
    return CpuIsaAtLeast(CpuIsa::kAvx512) ? peak_avx512_gflops : peak_gflops;
  }
};

Yardsticks MeasureYardsticks(int threads, uint64_t stream_bytes, int reps, bool smoke) {
  Yardsticks y;
  y.stream_read_gbs = MeasureReadBandwidth(threads, stream_bytes, reps, 1);
  y.read_gbs = std::max(y.stream_read_gbs, MeasureBestReadBandwidth(threads, stream_bytes, reps));
  y.triad_gbs = MeasureTriadBandwidth(threads, stream_bytes / 2, reps);
  y.peak_gflops = MeasurePeakFma(threads, smoke ? 1 : 3);
  y.peak_avx512_gflops = MeasurePeakFmaAvx512(threads, smoke ? 1 : 3);
  return y;
}

struct ModelRun {
  std::string name;
  BenchConfig config;
  double generate_s = -1;  // -1: reused
  double compile_s = 0;
  size_t num_keys = 0;
  std::string plan_path;
  uint64_t decode_bytes_per_token = 0;  // weight bytes one decode token reads (PlanDecodeBytes)
  EngineResult engine;
};

const KeyResult* FindKey(const EngineResult& r, const std::string& phase, int32_t bucket) {
  for (const KeyResult& k : r.keys) {
    if (k.phase == phase && k.bucket == bucket) return &k;
  }
  return nullptr;
}

const RealDecodeResult* FindRealDecode(const EngineResult& r, int32_t batch) {
  for (const RealDecodeResult& d : r.real_decode) {
    if (d.batch == batch) return &d;
  }
  return nullptr;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

void Row(const std::string& figure, const std::string& measured, const std::string& yardstick,
         const std::string& ratio, const std::string& target, const std::string& met) {
  std::printf("| %-44s | %-20s | %-26s | %-7s | %-8s | %-3s |\n", figure.c_str(), measured.c_str(),
              yardstick.c_str(), ratio.c_str(), target.c_str(), met.c_str());
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// The weight bytes one decode token reads from the plan's weights as stored (quantized or not):
// every weight in full but the embedding (one row; all of it again when it is the tied LM head)
// and the routed experts (top_k of each stacked [E, ...] weight).
uint64_t PlanDecodeBytes(const Plan& plan, const BenchConfig& config) {
  const DecoderConfig& d = config.decoder();
  const int64_t top_k = TopK(config.config);
  uint64_t bytes = 0;
  for (const PlanWeight& w : plan.weights) {
    uint64_t total = 0;
    for (const PlanWeightSlice& s : w.slices)
      total += s.bytes;
    for (const PlanWeightSlice& s : w.scale_slices)
      total += s.bytes;
    if (w.name == "model.embed_tokens.weight") {
      const uint64_t row = total / static_cast<uint64_t>(std::max<int64_t>(w.shape[0], 1));
      bytes += d.tie_word_embeddings ? total + row : row;
    } else if (top_k > 0 && w.name.find(".experts.") != std::string::npos && !w.shape.empty() &&
               w.shape[0] > 0 && (w.experts > 0 || w.shape.size() >= 2)) {
      bytes += total / static_cast<uint64_t>(w.shape[0]) * static_cast<uint64_t>(top_k);
    } else {
      bytes += total;
    }
  }
  return bytes;
}

Status CompilePlan(const BenchConfig& config, const std::string& model_dir,
                   const std::string& plan_path, bool smoke, WeightFormat weights, ModelRun& run) {
  CompileModelOptions options;
  options.weights = weights;
  if (weights != WeightFormat::kCheckpoint) {
    options.packed_weights_path = PackedWeightsPath(plan_path, weights);
  }
  options.keys.decode_buckets = {1, 8, 32};
  options.keys.prefill_buckets = smoke ? std::vector<int32_t>{32} : std::vector<int32_t>{128, 512};
  // One MoE chunk for every prefill bucket: all 512 tokens' routes meet in one grouped GEMM.
  options.keys.chunk_size = smoke ? 32 : 512;
  options.keys.max_chunks = 1;
  options.command_line = "moegraph-bench";
  const auto start = Clock::now();
  MG_ASSIGN_OR_RETURN(HfModel model, LoadHfModel(model_dir));
  MG_ASSIGN_OR_RETURN(Plan plan, CompileModel(model, options));
  run.compile_s = Seconds(start);
  run.num_keys = plan.programs.size();
  run.decode_bytes_per_token = PlanDecodeBytes(plan, config);
  return WritePlanFile(plan, plan_path);
}

std::string SelfPath() {
  std::error_code error;
  return std::filesystem::read_symlink("/proc/self/exe", error).string();
}

std::string Quote(const std::string& s) {
  return "'" + s + "'";
}

int Fail(const Status& status) {
  std::fprintf(stderr, "moegraph-bench: %s\n", status.ToString().c_str());
  return 1;
}

// Runs RunEngineChild in a child process (so peak RSS is the engine's alone).
StatusOr<EngineResult> RunEngineInChild(const DriverOptions& options, const std::string& plan,
                                        const std::string& result_path, int threads,
                                        bool decode1_only) {
  std::filesystem::remove(result_path);
  const std::string cmd = Quote(SelfPath()) + " --engine-run " + Quote(plan) + " --engine-result " +
                          Quote(result_path) + (options.smoke ? " --smoke" : "") +
                          (decode1_only ? " --engine-decode1-only" : "") + " --threads " +
                          std::to_string(threads) +
                          (options.rounds > 0 ? " --rounds " + std::to_string(options.rounds) : "");
  std::fflush(stdout);
  if (std::system(cmd.c_str()) != 0) return Internal("the engine run failed: " + cmd);
  return ReadEngineResult(result_path);
}

// Decode batch 1 (real tokens) with one thread and with `threads`, with and without a busy
// loop pinned to core 0 in another process (the "quiet" figures are whatever else the machine
// runs, without the busy loop).
struct ContentionResult {
  int threads = 0;
  double quiet_1 = 0, quiet_n = 0, busy_1 = 0, busy_n = 0;  // tokens/s
};

StatusOr<ContentionResult> MeasureContention(const DriverOptions& options, const std::string& plan,
                                             int threads) {
  ContentionResult r;
  r.threads = threads;
  const std::string result = plan + ".contention.txt";
  auto decode1 = [&](int n) -> StatusOr<double> {
    MG_ASSIGN_OR_RETURN(EngineResult e, RunEngineInChild(options, plan, result, n, true));
    for (const RealDecodeResult& d : e.real_decode) {
      if (d.batch == 1) return d.tokens_per_s();
    }
    return Internal("the contention run reported no decode batch 1");
  };
  // Interleaved rounds (1 thread, then `threads`), medians: the machine's other load drifts.
  auto rounds = [&](double* one, double* many) -> Status {
    std::vector<double> a, b;
    for (int round = 0; round < (options.smoke ? 1 : 3); ++round) {
      MG_ASSIGN_OR_RETURN(double x, decode1(1));
      MG_ASSIGN_OR_RETURN(double y, decode1(threads));
      a.push_back(x);
      b.push_back(y);
    }
    *one = Median(a);
    *many = Median(b);
    return Status::Ok();
  };
  MG_RETURN_IF_ERROR(rounds(&r.quiet_1, &r.quiet_n));
  std::fflush(stdout);
  const pid_t spinner = fork();
  if (spinner < 0) return Internal("fork failed for the busy loop");
  if (spinner == 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof(one), &one);
    std::atomic<uint64_t> spins{0};
    for (;;)
      spins.fetch_add(1, std::memory_order_relaxed);
  }
  const Status busy = rounds(&r.busy_1, &r.busy_n);
  kill(spinner, SIGKILL);
  waitpid(spinner, nullptr, 0);
  MG_RETURN_IF_ERROR(busy);
  return r;
}

int Main(int argc, char** argv) {
  DriverOptions options;
  std::string models_flag;
  FlagParser flags(
      "moegraph-bench [--smoke] [--cache-dir DIR] [--models LIST] [--threads N]",
      "Benchmarks moegraph's CPU backend against the machine's own yardsticks, measured in the\n"
      "same run, and prints each figure with its ratio and target. Generates the bench models\n"
      "(bench/configs/*.json, random weights) into the cache directory once and reuses them.\n"
      "Timings never fail the run. --smoke runs a tiny model with short timings (CI).");
  flags.Switch("--smoke", "tiny model, tiny arrays, short timings (seconds)",
               [&] { options.smoke = true; });
  flags.Switch("--generate-only",
               "write the --models' checkpoints into the cache directory and stop (to compile "
               "them yourself, e.g. with compile-model --ep N for an mpirun benchmark)",
               [&] { options.generate_only = true; });
  flags.Value("--cache-dir", "DIR",
              "where bench models and plans live (default: <build dir>/bench-models)",
              [&](const std::string& v) {
                options.cache_dir = v;
                return Status::Ok();
              });
  flags.Value("--models", "LIST",
              "bench models to run (default bench-tiny,bench-glm4-moe,bench-a3b-4l; smoke: "
              "bench-smoke-glm4,bench-smoke-dsv3,bench-smoke-gptoss-mxfp4,bench-smoke; on "
              "request: bench-dsv3, ~27 GB of bf16 weights, bench-dsv3-fp8, ~15 GB, and "
              "bench-gptoss / bench-gptoss-mxfp4, gpt-oss-20b's layers in bf16 / MXFP4 experts); "
              "any family, one of them Qwen3-MoE",
              [&](const std::string& v) {
                models_flag = v;
                return Status::Ok();
              });
  flags.Value("--threads", "N", "threads for kernels and yardsticks (default: OpenMP's)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, "--threads"));
                options.threads = static_cast<int>(n);
                return Status::Ok();
              });
  flags.Switch("--no-openblas", "skip the OpenBLAS baseline", [&] { options.openblas = false; });
  flags.Value(
      "--weights", "FORMAT",
      "the plans' weights, as compile-model --weights: checkpoint (default), int8 or "
      "int4 (blocks of 32); the decode bandwidth counts the bytes of that format",
      [&](const std::string& v) {
        const std::optional<WeightFormat> format = ParseWeightFormat(v);
        if (!format) {
          return InvalidArgument("--weights: expected checkpoint, int8 or int4, got '" + v + "'");
        }
        options.weights = *format;
        return Status::Ok();
      });
  flags.Value("--rounds", "N",
              "timing rounds per plan key in the engine runs (default 5, smoke 1; each round "
              "times replay, eager and observed replay, each at least twice): fewer for models "
              "whose steps take seconds (bench-dsv3-fp8)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, "--rounds"));
                if (n < 1 || n > 100) return InvalidArgument("--rounds must be in [1, 100]");
                options.rounds = static_cast<int>(n);
                return Status::Ok();
              });
  flags.Value("--engine-run", "PLAN", "(internal) run the engine on PLAN in this process",
              [&](const std::string& v) {
                options.engine_plan = v;
                return Status::Ok();
              });
  flags.Switch("--engine-decode1-only", "(internal) --engine-run times decode batch 1 only",
               [&] { options.decode1_only = true; });
  flags.Value("--engine-result", "FILE", "(internal) where --engine-run writes its results",
              [&](const std::string& v) {
                options.engine_result = v;
                return Status::Ok();
              });
  StatusOr<std::vector<std::string>> args = flags.Parse(argc, argv);
  if (!args.ok()) return Fail(args.status());
  if (flags.help()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (!options.engine_plan.empty()) {
    Status status = RunEngineChild(options);
    return status.ok() ? 0 : Fail(status);
  }
  if (options.cache_dir.empty()) {
    options.cache_dir =
        (std::filesystem::path(SelfPath()).parent_path().parent_path() / "bench-models").string();
  }
  options.models =
      models_flag.empty()
          ? (options.smoke
                 ? std::vector<std::string>{"bench-smoke-glm4", "bench-smoke-dsv3",
                                            "bench-smoke-gptoss-mxfp4", "bench-smoke"}
                 : std::vector<std::string>{"bench-tiny", "bench-glm4-moe", "bench-a3b-4l"})
          : SplitString(models_flag, ',');
  int threads = options.threads;
  if (threads <= 0) {
#pragma omp parallel
    {
#pragma omp single
      threads = omp_get_num_threads();
    }
  }
  std::printf("moegraph-bench%s: %d threads, kernels %s, load average at start %s\ncpu: %s\n",
              options.smoke ? " (smoke)" : "", threads, CpuKernelsName().c_str(),
              LoadAverage().c_str(), CpuSummary().c_str());

  // 1. Yardsticks, measured now and again after the runs; the best of the two
  // is the yardstick (a momentary dip must not flatter the ratios).
  const uint64_t stream_bytes = options.smoke ? (16ull << 20) : (1ull << 30);
  const int reps = options.smoke ? 2 : 5;
  Yardsticks yard = MeasureYardsticks(threads, stream_bytes, reps, options.smoke);
  std::printf(
      "yardsticks: read %.1f GB/s (1 stream/thread %.1f), triad %.1f GB/s, peak FMA %.1f "
      "GFLOP/s (AVX2), %.1f (AVX-512)%s\n",
      yard.read_gbs, yard.stream_read_gbs, yard.triad_gbs, yard.peak_gflops,
      yard.peak_avx512_gflops, HaveOpenBlas() ? ", OpenBLAS linked" : ", no OpenBLAS");

  // 2. Models: generate, compile, run the engine in a child process.
  std::vector<ModelRun> runs;
  for (const std::string& name : options.models) {
    ModelRun run;
    run.name = name;
    StatusOr<BenchConfig> config = LoadBenchConfig(name);
    if (!config.ok()) return Fail(config.status());
    run.config = *config;
    const std::string dir = options.cache_dir + "/" + name;
    bool generated = false;
    auto start = Clock::now();
    Status made = EnsureBenchModel(run.config, dir, /*seed=*/20260501, &generated);
    if (!made.ok()) return Fail(made);
    if (generated) run.generate_s = Seconds(start);
    std::printf("%s: %s checkpoint (%s) %s\n", name.c_str(), generated ? "generated" : "reused",
                FormatBytes(CheckpointBytes(run.config)).c_str(),
                generated ? ("in " + Fixed(run.generate_s, 1) + " s").c_str() : "");
    if (options.generate_only) {
      std::printf("  %s\n", dir.c_str());
      continue;
    }
    const std::string suffix = options.weights == WeightFormat::kCheckpoint
                                   ? ""
                                   : std::string("-") + WeightFormatName(options.weights);
    const std::string plan_path = options.cache_dir + "/" + name + suffix + ".plan";
    Status compiled = CompilePlan(run.config, dir, plan_path, options.smoke, options.weights, run);
    if (!compiled.ok()) return Fail(compiled);
    run.plan_path = plan_path;
    StatusOr<EngineResult> engine =
        RunEngineInChild(options, plan_path, options.cache_dir + "/" + name + ".engine.txt",
                         threads, /*decode1_only=*/false);
    if (!engine.ok()) return Fail(engine.status());
    run.engine = *engine;
    runs.push_back(run);
  }
  if (options.generate_only) return 0;

  // 2b. A busy machine: another process spins on core 0 while the first model decodes at
  // batch 1 with one thread and with `threads`; more threads must never be slower.
  ContentionResult contention;
  if (threads >= 2) {
    StatusOr<ContentionResult> measured =
        MeasureContention(options, runs.front().plan_path, threads);
    if (!measured.ok()) return Fail(measured.status());
    contention = *measured;
  }

  // 3. Prefill MoE layer of the last Qwen3-MoE model, against peak FMA and OpenBLAS.
  const ModelRun* big_run = nullptr;
  for (const ModelRun& run : runs) {
    const auto* qwen = std::get_if<Qwen3MoeConfig>(&run.config.config);
    if (qwen != nullptr && qwen->num_experts > 0) big_run = &run;
  }
  if (big_run == nullptr) {
    return Fail(InvalidArgument("--models needs a Qwen3-MoE model for the MoE layer benchmark"));
  }
  const ModelRun& big = *big_run;
  const int64_t moe_tokens = options.smoke ? 32 : 512;
  StatusOr<MoeLayerResult> moe =
      RunMoeLayer(std::get<Qwen3MoeConfig>(big.config.config), options.cache_dir + "/" + big.name,
                  moe_tokens, threads, options.openblas, options.smoke ? 2 : 5);
  if (!moe.ok()) return Fail(moe.status());

  // 4. Report.
  const Yardsticks after = MeasureYardsticks(threads, stream_bytes, reps, options.smoke);
  std::printf(
      "yardsticks again: read %.1f GB/s (1 stream/thread %.1f), triad %.1f GB/s, peak FMA "
      "%.1f GFLOP/s (AVX2), %.1f (AVX-512)\n",
      after.read_gbs, after.stream_read_gbs, after.triad_gbs, after.peak_gflops,
      after.peak_avx512_gflops);
  yard.read_gbs = std::max(yard.read_gbs, after.read_gbs);
  yard.stream_read_gbs = std::max(yard.stream_read_gbs, after.stream_read_gbs);
  yard.triad_gbs = std::max(yard.triad_gbs, after.triad_gbs);
  yard.peak_gflops = std::max(yard.peak_gflops, after.peak_gflops);
  yard.peak_avx512_gflops = std::max(yard.peak_avx512_gflops, after.peak_avx512_gflops);
  const double read_gbs = yard.read_gbs, stream_read_gbs = yard.stream_read_gbs,
               triad_gbs = yard.triad_gbs, peak_gflops = yard.kernel_peak_gflops();
  const std::string peak_name =
      std::string("peak FMA ") + (CpuIsaAtLeast(CpuIsa::kAvx512) ? "AVX-512 " : "AVX2 ");
  std::printf("\nper key (replay = captured program, eager = step-by-step interpreter):\n");
  std::printf("| %-13s | %-44s | %6s | %11s | %11s | %11s | %8s | %7s | %10s |\n", "model", "key",
              "tokens", "replay us", "eager us", "kernels us", "overhead", "eager/", "tokens/s");
  for (const ModelRun& run : runs) {
    for (const KeyResult& k : run.engine.keys) {
      const double overhead = 100.0 * k.dispatch_overhead;
      std::printf("| %-13s | %-44s | %6d | %11.1f | %11.1f | %11.1f | %7.2f%% | %7.3f | %10.1f |\n",
                  run.name.c_str(), k.key.c_str(), k.tokens, k.replay_us, k.eager_us, k.kernel_us,
                  overhead, k.eager_us / k.replay_us, k.tokens / (k.replay_us * 1e-6));
    }
  }

  std::printf("\nsummary (%d threads; load average now %s):\n", threads, LoadAverage().c_str());
  Row("figure", "measured", "yardstick", "ratio", "target", "met");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(46, '-').c_str(), std::string(22, '-').c_str(),
              std::string(28, '-').c_str(), std::string(9, '-').c_str(),
              std::string(10, '-').c_str(), std::string(5, '-').c_str());
  Row("read bandwidth (best of 1/4/8 streams/thread)", Fixed(read_gbs, 1) + " GB/s", "-", "-", "-",
      "-");
  Row("read bandwidth (STREAM-like, 1 stream/thread)", Fixed(stream_read_gbs, 1) + " GB/s", "-",
      "-", "-", "-");
  Row("triad bandwidth (all threads)", Fixed(triad_gbs, 1) + " GB/s", "-", "-", "-", "-");
  Row("peak FMA (AVX2, all threads)", Fixed(yard.peak_gflops, 1) + " GFLOP/s", "-", "-", "-", "-");
  if (yard.peak_avx512_gflops > 0) {
    Row("peak FMA (AVX-512, all threads)", Fixed(yard.peak_avx512_gflops, 1) + " GFLOP/s", "-", "-",
        "-", "-");
  }
  auto yes = [](bool met) { return std::string(met ? "yes" : "no"); };
  const ModelRun& first = runs.front();
  for (const ModelRun& run : runs) {
    // Headline: real tokens at increasing positions (the replayed step's figure is below).
    if (const RealDecodeResult* d = FindRealDecode(run.engine, 1)) {
      const double bytes = static_cast<double>(run.decode_bytes_per_token);
      const double gbs = bytes / (d->us_per_step * 1e-6) / 1e9;
      const double ratio = gbs / read_gbs;
      Row(run.name + " decode b1 weight bandwidth (real)",
          Fixed(gbs, 1) + " GB/s (" + FormatBytes(static_cast<uint64_t>(bytes)) + "/tok)",
          "read " + Fixed(read_gbs, 1) + " GB/s", Fixed(ratio, 3), ">= 0.85",
          &run == &runs.back() ? yes(ratio >= 0.85) : "-");
    }
  }
  const double moe_gflops = moe->flops / moe->grouped_s / 1e9;
  const double layer_gflops = moe->flops / moe->layer_s / 1e9;
  Row(big.name + " prefill MoE GEMMs (" + std::to_string(moe->tokens) + " tok)",
      Fixed(moe_gflops, 1) + " GFLOP/s", peak_name + Fixed(peak_gflops, 1) + " GFLOP/s",
      Fixed(moe_gflops / peak_gflops, 3), ">= 0.7", yes(moe_gflops / peak_gflops >= 0.7));
  Row(big.name + " prefill MoE layer (router..reduce)", Fixed(layer_gflops, 1) + " GFLOP/s",
      peak_name + Fixed(peak_gflops, 1) + " GFLOP/s", Fixed(layer_gflops / peak_gflops, 3), "-",
      "-");
  if (moe->blas_s > 0) {
    const double blas_gflops = moe->flops / moe->blas_s / 1e9;
    Row(big.name + " prefill MoE GEMMs vs OpenBLAS", Fixed(moe->grouped_s * 1e3, 1) + " ms",
        "OpenBLAS " + Fixed(moe->blas_s * 1e3, 1) + " ms (" + Fixed(blas_gflops, 0) + " GF/s)",
        Fixed(moe->blas_s / moe->grouped_s, 3), ">= 1.0", yes(moe->blas_s / moe->grouped_s >= 1.0));
  }
  if (const KeyResult* k = FindKey(first.engine, "decode", 1)) {
    const double overhead = k->dispatch_overhead;
    Row(first.name + " decode b1 replay dispatch overhead", Fixed(100 * overhead, 2) + "%",
        "kernels " + Fixed(k->kernel_us, 1) + " us", "-", "<= 3%", yes(overhead <= 0.03));
    Row(first.name + " decode b1 eager / replay", Fixed(k->eager_us, 1) + " us",
        "replay " + Fixed(k->replay_us, 1) + " us", Fixed(k->eager_us / k->replay_us, 3), "-", "-");
  }
  for (const ModelRun& run : runs) {
    for (int32_t b : {1, 8, 32}) {
      if (const RealDecodeResult* d = FindRealDecode(run.engine, b)) {
        Row(run.name + " decode batch " + std::to_string(b) + " (real)",
            Fixed(d->tokens_per_s(), 1) + " tok/s",
            Fixed(d->us_per_step / 1e3, 2) + " ms/step, pos 32.." + std::to_string(31 + d->steps),
            "-", "-", "-");
      }
      if (const KeyResult* k = FindKey(run.engine, "decode", b)) {
        Row(run.name + " decode batch " + std::to_string(b) + " (replayed step)",
            Fixed(k->tokens / (k->replay_us * 1e-6), 1) + " tok/s",
            Fixed(k->replay_us / 1e3, 2) + " ms/step", "-", "-", "-");
      }
    }
    for (int32_t t : {32, 128, 512}) {
      if (const KeyResult* k = FindKey(run.engine, "prefill", t)) {
        Row(run.name + " prefill " + std::to_string(t),
            Fixed(k->tokens / (k->replay_us * 1e-6), 1) + " tok/s",
            Fixed(k->replay_us / 1e3, 2) + " ms/step", "-", "-", "-");
      }
    }
    const KvElementsPerToken kv = KvElementsPerTokenPerLayer(run.config);
    Row(run.name + " KV values per token per layer", std::to_string(kv.cached),
        "MHA equivalent " + std::to_string(kv.mha_equivalent),
        Fixed(static_cast<double>(kv.cached) / static_cast<double>(kv.mha_equivalent), 4), "-",
        "-");
    Row(run.name + " plan compile (" + std::to_string(run.num_keys) + " keys)",
        Fixed(run.compile_s, 3) + " s", "-", "-", "-", "-");
    Row(run.name + " load + capture", Fixed(run.engine.load_s, 3) + " s", "-", "-", "-", "-");
    const uint64_t expected =
        run.engine.weight_bytes + run.engine.kv_bytes + run.engine.arena_bytes;
    const double rss_ratio = static_cast<double>(run.engine.peak_rss) / expected;
    Row(run.name + " peak RSS", FormatBytes(run.engine.peak_rss),
        "W+KV+arena " + FormatBytes(expected), Fixed(rss_ratio, 3), "<= 1.10",
        yes(rss_ratio <= 1.10));
  }
  if (contention.threads >= 2) {
    const std::string n = std::to_string(contention.threads);
    const std::string model = runs.front().name;
    Row(model + " decode b1, quiet: " + n + " threads / 1", Fixed(contention.quiet_n, 1) + " tok/s",
        "1 thread " + Fixed(contention.quiet_1, 1) + " tok/s",
        Fixed(contention.quiet_n / contention.quiet_1, 3), "-", "-");
    const double ratio = contention.busy_n / contention.busy_1;
    Row(model + " decode b1, core 0 busy: " + n + " threads / 1",
        Fixed(contention.busy_n, 1) + " tok/s",
        "1 thread " + Fixed(contention.busy_1, 1) + " tok/s", Fixed(ratio, 3), ">= 1.0",
        yes(ratio >= 1.0));
  }
  return 0;
}

}  // namespace
}  // namespace moegraph::bench

int main(int argc, char** argv) {
  return moegraph::bench::Main(argc, argv);
}
