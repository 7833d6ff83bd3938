// run-model: loads a plan, captures every key, and generates or benchmarks.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>

#include "ir/op_registry.h"
#include "kernels/cpu/cpu_isa.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "runtime/mpi_communicator.h"
#include "runtime/plan_tokenizer.h"
#include "runtime/synthetic_step.h"
#include "support/cli.h"
#include "support/mapped_file.h"
#include "support/strings.h"
#include "tokenizer/tokenizer.h"

namespace moegraph {
namespace {

// Under mpirun: this rank's end of the job's communicator (null when run alone).
Communicator* g_rank_comm = nullptr;

int Fail(const Status& status) {
  if (g_rank_comm == nullptr) {
    std::fprintf(stderr, "run-model: %s\n", status.ToString().c_str());
    return 1;
  }
  // A rank may fail alone (its files, its memory): end the whole job so that no other rank
  // waits for it in a collective. Input errors fail every rank together (the step agreement),
  // each printing the same message.
  std::fprintf(stderr, "run-model (rank %d of %d): %s\n", g_rank_comm->rank(),
               g_rank_comm->world_size(), status.ToString().c_str());
  std::fflush(stderr);
  AbortMpiJob(1);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Resident memory now (VmRSS), 0 if unknown.
uint64_t CurrentRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

uint64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

// Chrome trace ("Trace Event Format") of engine steps and their kernels.
class TraceWriter : public StepObserver {
 public:
  void OnStep(const KernelStep& step, double start_us, double end_us) override {
    Event(step.kernel, "kernel", start_us, end_us, 2);
  }
  void Event(const std::string& name, const char* category, double start_us, double end_us,
             int tid) {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "%s{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
                  "\"pid\":1,\"tid\":%d}",
                  events_.empty() ? "" : ",\n", name.c_str(), category, start_us, end_us - start_us,
                  tid);
    events_ += buf;
  }
  Status Write(const std::string& path) const {
    std::ofstream out(path);
    out << "{\"traceEvents\":[\n" << events_ << "\n],\"displayTimeUnit\":\"ms\"}\n";
    if (!out) return InvalidArgument("cannot write trace file " + path);
    return Status::Ok();
  }

 private:
  std::string events_;
};

// Sums kernel time over replays.
struct KernelTimer : StepObserver {
  double total_us = 0;
  void OnStep(const KernelStep&, double start_us, double end_us) override {
    total_us += end_us - start_us;
  }
};

struct BenchRow {
  SpecKey key;
  int32_t tokens = 0;
  double replay_us = 0, eager_us = 0, kernel_us = 0;
};

// Microseconds per call of fn, timed over `runs` calls.
template <typename Fn>
double TimeRuns(Fn fn, int runs) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < runs; ++i)
    fn();
  return Seconds(start) * 1e6 / runs;
}

// The processor and the kernels' ISA, the first line of a CPU benchmark.
void PrintCpu(const Engine& engine) {
  if (engine.backend().name().starts_with("cpu")) {
    std::printf("cpu: %s; kernels %s\n", CpuSummary().c_str(),
                engine.backend().KernelIsa().c_str());
  }
}

Status RunBench(Engine& engine) {
  PrintCpu(engine);
  std::vector<BenchRow> rows;
  for (const KeyProgram& program : engine.plan().programs) {
    std::vector<int64_t> seqs;
    StatusOr<int32_t> tokens = PrepareSyntheticStep(engine, program.key, seqs);
    if (tokens.ok() && *tokens > 0) {
      BenchRow row;
      row.key = program.key;
      row.tokens = *tokens;
      // Five interleaved rounds of replay, eager and timed-kernel replay, each
      // long enough to average out the clock (~20 ms); medians per quantity,
      // so a burst of noise hits one round, not one quantity.
      auto replay = [&] { (void)engine.ReplayKey(program.key); };
      auto eager = [&] { (void)engine.RunEagerObserved(program.key, nullptr); };
      replay();
      const double once = TimeRuns(replay, 1);
      const int runs = std::clamp(static_cast<int>(20000.0 / std::max(once, 1.0)), 1, 200);
      std::vector<double> replay_us, eager_us, kernel_us;
      for (int round = 0; round < 5; ++round) {
        replay_us.push_back(TimeRuns(replay, runs));
        eager_us.push_back(TimeRuns(eager, runs));
        KernelTimer timer;
        for (int i = 0; i < runs; ++i)
          (void)engine.ReplayKey(program.key, &timer);
        kernel_us.push_back(timer.total_us / runs);
      }
      row.replay_us = Median(replay_us);
      row.eager_us = Median(eager_us);
      row.kernel_us = Median(kernel_us);
      rows.push_back(row);
    }
    for (int64_t id : seqs)
      engine.Release(id);
    if (!tokens.ok()) return tokens.status().WithContext("benchmarking " + program.key.ToString());
  }
  std::printf("\n%-48s %6s %11s %11s %11s %9s %8s %12s\n", "key", "tokens", "replay us", "eager us",
              "kernels us", "dispatch", "eager/", "tokens/s");
  std::printf("%-48s %6s %11s %11s %11s %9s %8s %12s\n", "", "", "", "", "", "overhead", "replay",
              "(replay)");
  for (const BenchRow& r : rows) {
    const double overhead = 100.0 * std::max(0.0, r.replay_us - r.kernel_us) / r.replay_us;
    std::printf("%-48s %6d %11.1f %11.1f %11.1f %8.2f%% %8.3f %12.1f\n", r.key.ToString().c_str(),
                r.tokens, r.replay_us, r.eager_us, r.kernel_us, overhead, r.eager_us / r.replay_us,
                r.tokens / (r.replay_us * 1e-6));
  }
  auto find = [&](MoePhase phase, int32_t bucket) -> const BenchRow* {
    for (const BenchRow& r : rows) {
      if (r.key.phase == phase && r.key.token_bucket == bucket) return &r;
    }
    return nullptr;
  };
  std::printf("\nsummary (%d threads):\n", engine.num_threads());
  // Headline decode figures decode like a user: real greedy tokens at
  // increasing positions through Engine::Step (so the experts hit change and
  // the host's per-step work counts); the replayed synthetic step repeats one
  // position and one set of experts, and is shown beside it.
  for (int32_t b : {1, 8, 32}) {
    const BenchRow* r = find(MoePhase::kDecode, b);
    if (r == nullptr) continue;
    constexpr int32_t kPrompt = kRealDecodePrompt;
    StatusOr<DecodeRun> real =
        RunRealDecode(engine, b, kPrompt, RealDecodeSteps(engine, r->replay_us));
    if (!real.ok()) return real.status().WithContext("decoding real tokens");
    std::printf(
        "  decode batch %-3d  %10.1f tokens/s  (%.1f us/step, real tokens at positions %d..%d; "
        "replayed synthetic step %.1f tokens/s)\n",
        b, real->tokens_per_second(), real->seconds * 1e6 / real->steps, kPrompt,
        kPrompt + real->steps - 1, r->tokens / (r->replay_us * 1e-6));
  }
  for (int32_t t : {128, 512}) {
    if (const BenchRow* r = find(MoePhase::kPrefill, t)) {
      std::printf("  prefill %-4d      %10.1f tokens/s  (%.1f us/step)\n", t,
                  r->tokens / (r->replay_us * 1e-6), r->replay_us);
    }
  }
  double eager_sum = 0, replay_sum = 0;
  for (const BenchRow& r : rows) {
    eager_sum += r.eager_us;
    replay_sum += r.replay_us;
  }
  if (!rows.empty()) {
    std::printf("  replay vs eager: eager steps take %.3fx the replayed time over all keys\n",
                eager_sum / replay_sum);
  }
  return Status::Ok();
}

// Why a sequence ended, for its line: " (eos)", " (stop token)", the context, or "".
std::string StopReason(const GenerationResult& r, const std::vector<int32_t>& user_stop_tokens,
                       int32_t max_position_embeddings) {
  const bool by_eos =
      r.stopped_by_token && std::find(user_stop_tokens.begin(), user_stop_tokens.end(),
                                      r.tokens.back()) == user_stop_tokens.end();
  return by_eos                 ? " (eos)"
         : r.stopped_by_token   ? " (stop token)"
         : r.stopped_by_context ? " (the model's context ended: max_position_embeddings " +
                                      std::to_string(max_position_embeddings) + ")"
                                : "";
}

// ---- One rank of an expert-parallel plan (mpirun) ------------------------------------------
//
// Every rank of `mpirun -np N run-model PLAN ...` parses the same command line. Prompt i is
// rank (i mod N)'s: each rank generates its own prompts with its own KV cache (EP x DP) and
// rank 0 prints every sequence's line, in prompt order, when all are done (texts whole, not
// streamed). --bench replays every key on every rank in step (the ranks agree on the
// repetitions) and reports each rank's step latency and its share of collective kernels.

// Every rank's `mine`, in rank order (every rank calls it).
StatusOr<std::vector<std::string>> GatherStrings(Communicator& comm, const std::string& mine) {
  const auto ranks = static_cast<size_t>(comm.world_size());
  int64_t size = static_cast<int64_t>(mine.size());
  std::vector<int64_t> sizes(ranks);
  MG_RETURN_IF_ERROR(comm.AllGatherHost(&size, sizes.data(), sizeof(size)));
  const int64_t longest = *std::max_element(sizes.begin(), sizes.end());
  std::vector<std::string> out(ranks);
  if (longest == 0) return out;
  std::string padded = mine;
  padded.resize(static_cast<size_t>(longest));
  std::string all(static_cast<size_t>(longest) * ranks, '\0');
  MG_RETURN_IF_ERROR(comm.AllGatherHost(padded.data(), all.data(), static_cast<size_t>(longest)));
  for (size_t r = 0; r < ranks; ++r)
    out[r] = all.substr(r * static_cast<size_t>(longest), static_cast<size_t>(sizes[r]));
  return out;
}

// Kernel time over replays, and the part of it in collective kernels.
struct CollectiveTimer : StepObserver {
  double total_us = 0, collective_us = 0;
  void OnStep(const KernelStep& step, double start_us, double end_us) override {
    total_us += end_us - start_us;
    const OpDef* def = LookupOp(step.kernel);
    if (def != nullptr && def->Has(kCollective)) collective_us += end_us - start_us;
  }
};

Status RunRankBench(Engine& engine, Communicator& comm, uint64_t baseline_rss) {
  if (comm.rank() == 0) PrintCpu(engine);
  std::string report;
  char line[256];
  std::snprintf(line, sizeof(line), "\nrank %d of %d (%d threads):\n%-48s %6s %11s %12s %12s\n",
                engine.rank(), comm.world_size(), engine.num_threads(), "key", "tokens",
                "replay us", "collectives", "tokens/s");
  report += line;
  for (const KeyProgram& program : engine.plan().programs) {
    if (program.rank != engine.rank()) continue;
    std::vector<int64_t> seqs;
    StatusOr<int32_t> tokens = PrepareSyntheticStep(engine, program.key, seqs);
    if (tokens.ok() && *tokens > 0) {
      auto replay = [&] { (void)engine.ReplayKey(program.key); };
      replay();
      int64_t runs = std::clamp(static_cast<int64_t>(20000.0 / std::max(TimeRuns(replay, 1), 1.0)),
                                int64_t{1}, int64_t{200});
      MG_RETURN_IF_ERROR(comm.AllReduceMaxHost(&runs, 1));
      std::vector<double> replay_us, share;
      for (int round = 0; round < 3; ++round) {
        replay_us.push_back(TimeRuns(replay, static_cast<int>(runs)));
        CollectiveTimer timer;
        for (int64_t i = 0; i < runs; ++i)
          (void)engine.ReplayKey(program.key, &timer);
        share.push_back(timer.total_us > 0 ? timer.collective_us / timer.total_us : 0);
      }
      const double us = Median(replay_us);
      std::snprintf(line, sizeof(line), "%-48s %6d %11.1f %11.1f%% %12.1f\n",
                    program.key.ToString().c_str(), *tokens, us, 100 * Median(share),
                    *tokens / (us * 1e-6));
      report += line;
    }
    for (int64_t id : seqs)
      engine.Release(id);
    if (!tokens.ok()) return tokens.status().WithContext("benchmarking " + program.key.ToString());
  }
  // Real tokens at increasing positions, every rank decoding its own batch at once.
  int32_t max_decode = 0;
  for (const KeyProgram& p : engine.plan().programs) {
    if (p.key.phase == MoePhase::kDecode) max_decode = std::max(max_decode, p.key.token_bucket);
  }
  for (int32_t b : {1, 8}) {
    if (b > max_decode) continue;
    const int32_t steps =
        std::min<int32_t>(32, engine.plan().model.max_position_embeddings - kRealDecodePrompt);
    if (steps < 1) break;
    StatusOr<DecodeRun> real = RunRealDecode(engine, b, kRealDecodePrompt, steps);
    if (!real.ok()) return real.status().WithContext("decoding real tokens");
    std::snprintf(line, sizeof(line),
                  "  decode batch %-3d %10.1f tokens/s on this rank (%.1f us/step, real tokens "
                  "at positions %d..%d)\n",
                  b, real->tokens_per_second(), real->seconds * 1e6 / real->steps,
                  kRealDecodePrompt, kRealDecodePrompt + real->steps - 1);
    report += line;
  }
  const uint64_t peak = PeakRssBytes();
  std::snprintf(
      line, sizeof(line), "  peak RSS %s (%s at start); weights mapped %s, KV cache %s, arena %s\n",
      FormatBytes(peak).c_str(), FormatBytes(baseline_rss).c_str(),
      FormatBytes(engine.weight_bytes()).c_str(), FormatBytes(engine.kv_cache().bytes()).c_str(),
      FormatBytes(engine.arena_bytes()).c_str());
  report += line;
  MG_ASSIGN_OR_RETURN(std::vector<std::string> reports, GatherStrings(comm, report));
  if (comm.rank() == 0) {
    for (const std::string& r : reports)
      std::fputs(r.c_str(), stdout);
  }
  return Status::Ok();
}

// Generates this rank's share of `prompts` (prompt i on rank i mod ranks); rank 0 prints
// every sequence in prompt order.
Status GenerateAsRank(Engine& engine, Communicator& comm,
                      const std::vector<std::vector<int32_t>>& prompts,
                      const SamplingParams& sampling, const std::vector<int32_t>& user_stop_tokens,
                      const tokenizer::Tokenizer* text, bool print_ids) {
  Generator generator(engine);
  Status added = Status::Ok();
  for (size_t i = static_cast<size_t>(comm.rank()); i < prompts.size() && added.ok();
       i += static_cast<size_t>(comm.world_size())) {
    added = generator.Add(GenerationRequest{static_cast<int64_t>(i), prompts[i], sampling});
  }
  // A prompt one rank refuses fails every rank, with its message.
  MG_RETURN_IF_ERROR(engine.AgreeAcrossRanks(added));
  const auto start = std::chrono::steady_clock::now();
  MG_ASSIGN_OR_RETURN(std::vector<GenerationResult> results, generator.RunToCompletion());
  const double seconds = Seconds(start);
  // One record per sequence, length-prefixed (generated text may hold any byte):
  // "<id> <bytes>\n<its lines>"; id -1 is the rank's summary.
  std::string mine;
  size_t generated = 0;
  for (const GenerationResult& r : results) {
    std::string ids;
    for (int32_t t : r.tokens)
      ids += (ids.empty() ? "" : ",") + std::to_string(t);
    std::string lines;
    if (text != nullptr) {
      MG_ASSIGN_OR_RETURN(std::string decoded,
                          text->Decode(r.tokens, /*skip_special_tokens=*/true));
      lines += "sequence " + std::to_string(r.id) + " text: " + decoded + "\n";
      if (!print_ids) ids = std::to_string(r.tokens.size()) + " tokens";
    }
    lines += "sequence " + std::to_string(r.id) + ": prompt " +
             std::to_string(prompts[static_cast<size_t>(r.id)].size()) + " tokens -> generated " +
             ids + StopReason(r, user_stop_tokens, engine.plan().model.max_position_embeddings) +
             " [rank " + std::to_string(comm.rank()) + "]\n";
    mine += std::to_string(r.id) + " " + std::to_string(lines.size()) + "\n" + lines;
    generated += r.tokens.size();
  }
  char line[160];
  std::snprintf(line, sizeof(line), "rank %d: %zu sequences, %zu tokens in %lld steps, %.3f s\n",
                comm.rank(), results.size(), generated,
                static_cast<long long>(generator.num_steps()), seconds);
  mine += "-1 " + std::to_string(std::strlen(line)) + "\n" + line;
  MG_ASSIGN_OR_RETURN(std::vector<std::string> all, GatherStrings(comm, mine));
  if (comm.rank() != 0) return Status::Ok();
  std::vector<std::pair<int64_t, std::string>> records, summaries;
  for (const std::string& rank_records : all) {
    size_t at = 0;
    while (at < rank_records.size()) {
      const size_t newline = rank_records.find('\n', at);
      int64_t id = 0;
      size_t bytes = 0;
      const std::string header =
          rank_records.substr(at, newline == std::string::npos ? 0 : newline - at);
      if (newline == std::string::npos ||
          std::sscanf(header.c_str(), "%" SCNd64 " %zu", &id, &bytes) != 2 ||
          bytes > rank_records.size() - newline - 1) {
        return Internal("a rank's results arrived malformed at byte " + std::to_string(at));
      }
      (id < 0 ? summaries : records).emplace_back(id, rank_records.substr(newline + 1, bytes));
      at = newline + 1 + bytes;
    }
  }
  std::stable_sort(records.begin(), records.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [id, lines] : records)
    std::fputs(lines.c_str(), stdout);
  for (const auto& [id, lines] : summaries)
    std::fputs(lines.c_str(), stdout);
  return Status::Ok();
}

// Where generated text goes: with one text prompt it streams to stdout as it is decoded; with
// several, each sequence's text is printed whole when it finishes, so texts never interleave.
class TextPrinter {
 public:
  TextPrinter(const tokenizer::Tokenizer& tok, size_t num_prompts)
      : stream_(num_prompts == 1), texts_(num_prompts) {
    for (size_t i = 0; i < num_prompts; ++i)
      decoders_.emplace_back(tok, /*skip_special_tokens=*/true);
  }

  void Start() {
    if (stream_) Write("sequence 0 text: ");
  }
  Status Push(int64_t id, int32_t token) {
    MG_ASSIGN_OR_RETURN(std::string piece, decoders_[id].Push(token));
    if (stream_) {
      Write(piece);
    } else {
      texts_[id] += piece;
    }
    return Status::Ok();
  }
  Status Finish(int64_t id) {
    MG_ASSIGN_OR_RETURN(std::string rest, decoders_[id].Flush());
    if (stream_) {
      Write(rest + "\n");
    } else {
      Write("sequence " + std::to_string(id) + " text: " + texts_[id] + rest + "\n");
    }
    return Status::Ok();
  }

 private:
  static void Write(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  bool stream_;
  std::vector<tokenizer::IncrementalDecoder> decoders_;
  std::vector<std::string> texts_;
};

int Main(int argc, char** argv) {
  EngineOptions options;
  std::vector<std::vector<int32_t>> prompts;
  SamplingParams sampling;
  bool bench = false;
  std::string trace_path;
  std::vector<std::string> args;
  std::string prompt_ids;
  std::vector<std::string> text_prompts, prompt_files;
  bool print_ids = false, ignore_eos = false;
  int64_t kv_cache_mb = static_cast<int64_t>(options.kv_cache_bytes >> 20);
  CLI::App app(
      "Loads a plan written by compile-model, binds the checkpoint's weights, captures one\n"
      "replayable program per key, and generates or benchmarks.\n"
      "Prompts: --prompt / --prompt-file (text, tokenized with the model directory's\n"
      "tokenizer.json that compile-model recorded) or --prompt-ids (token ids); not both.\n"
      "Chat templates (the Jinja chat_template of tokenizer_config.json) are out of scope:\n"
      "the raw prompt text is tokenized as it is, with the tokenizer's own special tokens and\n"
      "tokenizer_config.json's add_bos_token. With one text prompt the generated text streams\n"
      "to stdout as it is decoded ('sequence 0 text: ...'); with several, each sequence's text\n"
      "is printed whole when it finishes ('sequence N text: ...'), in finishing order. Then one\n"
      "line per sequence gives its counts (and, with --ids or --prompt-ids, its token ids).\n"
      "Generation stops at generation_config.json's eos_token_id (one or a list) unless\n"
      "--ignore-eos, at --stop-ids, at --max-new-tokens or at the model's context.\n"
      "Prompts that do not fit in the KV cache together wait until running ones finish.\n"
      "Examples:\n"
      "  run-model demo.plan --prompt 'Hello' --max-new-tokens 16\n"
      "  run-model demo.plan --prompt 'Hello' --prompt 'The quick brown fox' --ids\n"
      "  run-model demo.plan --prompt-file question.txt\n"
      "  run-model demo.plan --prompt-ids 1,2,3 --max-new-tokens 8\n"
      "  run-model demo.plan --prompt-ids '1,2,3;4,5' --temperature 0.8 --top-p 0.9 --seed 7\n"
      "  run-model demo.plan --bench\n"
      "  mpirun -np 3 run-model ep3.plan --prompt-ids '1,2;3;4,5,6'   # a plan of compile-model "
      "--ep 3\n"
      "Under mpirun (a plan compiled with --ep N, N processes) every rank reads the same command\n"
      "line; prompt i runs on rank i mod N, and rank 0 prints every sequence when all are done.\n"
      "--bench then times every key on every rank in step (per-rank latency, collective share).\n"
      "Set MOEGRAPH_LOG=capture,dispatch to see each capture and each step's key choice.",
      "run-model");
  app.allow_extras();
  app.add_option("PLAN", args, "a plan file written by compile-model")->type_name("");
  const CLI::Option* prompt_flag =
      app.add_option("--prompt-ids", prompt_ids,
                     "prompt token ids; several prompts separated by ';' run as one batch "
                     "(default without --bench: 1,2,3,4,5,6,7,8)")
          ->type_name("LISTS");
  app.add_option("--prompt", text_prompts,
                 "a text prompt; repeat for several, which run as one batch (sequences 0, 1, ... "
                 "in the order given, before any --prompt-file)")
      ->type_name("TEXT");
  app.add_option("--prompt-file", prompt_files,
                 "a file whose whole content, byte for byte (newlines included), is one text "
                 "prompt; repeatable")
      ->type_name("FILE");
  app.add_flag("--ids", print_ids, "with text prompts, print the generated token ids as well");
  app.add_flag("--ignore-eos", ignore_eos,
               "do not stop at generation_config.json's eos_token_id (--stop-ids still apply)");
  AddIntOption(app, "--max-new-tokens", sampling.max_new_tokens, {1, kMaxTokenBucket},
               "tokens to generate per prompt (default 16; fewer when the model's context "
               "ends first)");
  AddRealOption(app, "--temperature", sampling.temperature, 0, 100, /*min_exclusive=*/false,
                "sampling temperature; 0 is greedy (default 0)");
  AddIntOption(app, "--top-k", sampling.top_k, {0, INT32_MAX},
               "sample among the K most likely tokens; 0 is all (default 0)");
  AddRealOption(app, "--top-p", sampling.top_p, 0, 1, /*min_exclusive=*/true,
                "nucleus sampling mass (default 1)");
  AddUint64Option(app, "--seed", sampling.seed, "sampling seed (default 0)");
  AddIntListOption(app, "--stop-ids", sampling.stop_tokens, {0, INT32_MAX},
                   "token ids that end a sequence");
  app.add_flag("--eager", options.eager,
               "run every step op by op instead of replaying the captured programs");
  app.add_flag("--bench", bench,
               "benchmark every key: replay and eager step latency, kernel time, dispatch "
               "overhead, tokens/s");
  app.add_option("--trace", trace_path,
                 "write a Chrome trace (JSON) of the generation's steps and kernels")
      ->type_name("FILE");
  const int cores = AvailableCores();
  AddIntOption(app, "--threads", options.num_threads, {1, cores},
               "CPU threads, at most the " + std::to_string(cores) +
                   " cores this process may use (default: OpenMP's default)");
  const int64_t memory_mib = PhysicalMemoryMib();
  AddIntOption(app, "--kv-cache-mb", kv_cache_mb, {1, memory_mib > 0 ? memory_mib : 1 << 20},
               "KV cache budget in MiB, at most the machine's memory (default: room for the "
               "plan's largest sequence bucket at max_position_embeddings each, at most a "
               "quarter of memory; pages are used only as tokens fill them)");
  app.add_option("--model-dir", options.model_dir,
                 "read weights from DIR instead of the plan's checkpoint path")
      ->type_name("DIR");
  if (std::optional<int> exit_code = ParseCommandLine(app, "run-model", argc, argv)) {
    return *exit_code;
  }
  if (args.size() != 1) return Fail(InvalidArgument("expected one PLAN argument (see --help)"));
  const bool text_mode = !text_prompts.empty() || !prompt_files.empty();
  if (text_mode && prompt_flag->count() > 0) {
    return Fail(InvalidArgument(
        "--prompt-ids cannot be combined with --prompt or --prompt-file: give ids or text"));
  }
  for (const std::string& file : prompt_files) {
    StatusOr<std::string> text = ReadFileToString(file);
    if (!text.ok()) return Fail(text.status().WithContext("--prompt-file " + file));
    text_prompts.push_back(std::move(*text));
  }
  if (prompt_flag->count() > 0) {
    StatusOr<std::vector<std::vector<int32_t>>> parsed = ParsePromptIds(prompt_ids, "--prompt-ids");
    if (!parsed.ok()) return Fail(parsed.status());
    prompts = std::move(*parsed);
  }
  if (Status valid = ValidateSamplingParams(sampling); !valid.ok()) return Fail(valid);
  options.kv_cache_bytes = static_cast<uint64_t>(kv_cache_mb) << 20;

  std::unique_ptr<Communicator> rank_comm;
  if (MpirunWorldSize() > 1) {
    StatusOr<std::unique_ptr<Communicator>> made = CreateMpiCommunicator();
    if (!made.ok()) return Fail(made.status());
    rank_comm = std::move(*made);
    g_rank_comm = rank_comm.get();
    options.communicator = g_rank_comm;
    if (!trace_path.empty()) {
      return Fail(InvalidArgument("--trace writes one process's trace: run it without mpirun"));
    }
  }
  const bool quiet_rank = g_rank_comm != nullptr && g_rank_comm->rank() != 0;

  const uint64_t baseline_rss = CurrentRssBytes();
  const auto load_start = std::chrono::steady_clock::now();
  const bool tty = isatty(STDERR_FILENO);
  options.on_capture = [tty, quiet_rank](size_t i, size_t total, const SpecKey& key) {
    if (quiet_rank) return;
    // One updating line on a terminal, one line per key in a log.
    std::fprintf(stderr, tty ? "\rcapturing %zu/%zu %-56s" : "capturing %zu/%zu %s\n", i + 1, total,
                 key.ToString().c_str());
    if (tty && i + 1 == total) std::fprintf(stderr, "\n");
  };
  StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(args[0], options);
  if (!engine.ok()) return Fail(engine.status());
  const double load_s = Seconds(load_start);
  Engine& e = **engine;
  // Sliding-window layers keep each sequence in a ring: say what those take.
  const std::string rings = e.kv_cache().has_rings()
                                ? ", of which " + FormatBytes(e.kv_cache().ring_bytes()) + " in " +
                                      std::to_string(e.kv_cache().config().num_rings) +
                                      " sliding-window rings"
                                : "";
  const std::string ranks = g_rank_comm == nullptr
                                ? ""
                                : " (rank 0 of " + std::to_string(g_rank_comm->world_size()) +
                                      ", expert-parallel; " + "each rank maps its own experts)";
  if (!quiet_rank) {
    std::printf(
        "loaded %s%s: %zu keys, weights %s, KV cache %s %s (%d blocks of %d tokens%s), arena %s, "
        "load + capture %.3f s%s\n",
        args[0].c_str(), ranks.c_str(),
        e.plan().programs.size() / e.plan().key_options.expert_parallel,
        FormatBytes(e.weight_bytes()).c_str(), FormatBytes(e.kv_cache().bytes()).c_str(),
        e.kv_cache().DTypeSummary().c_str(), e.kv_cache().config().num_blocks,
        e.kv_cache().config().block_size, rings.c_str(), FormatBytes(e.arena_bytes()).c_str(),
        load_s, options.eager ? " (eager: nothing captured)" : "");
  }

  StatusOr<PlanTokenizer> text_config =
      LoadPlanTokenizer(e.plan(), options.model_dir, /*load_tokenizer=*/text_mode);
  if (!text_config.ok()) return Fail(text_config.status());
  for (size_t i = 0; i < text_prompts.size(); ++i) {
    const size_t num_flags = text_prompts.size() - prompt_files.size();
    const std::string what = i < num_flags ? "--prompt #" + std::to_string(i + 1)
                                           : "--prompt-file " + prompt_files[i - num_flags];
    StatusOr<std::vector<int32_t>> ids = EncodePrompt(*text_config, text_prompts[i], what);
    if (!ids.ok()) return Fail(ids.status());
    prompts.push_back(std::move(*ids));
  }
  const std::vector<int32_t> user_stop_tokens = sampling.stop_tokens;
  if (!ignore_eos) {
    for (int32_t eos : text_config->eos_token_ids)
      sampling.stop_tokens.push_back(eos);
  }

  if (g_rank_comm != nullptr) {
    if (!bench || !prompts.empty()) {
      if (prompts.empty()) prompts.push_back({1, 2, 3, 4, 5, 6, 7, 8});
      const tokenizer::Tokenizer* tok = text_mode ? text_config->tokenizer.get() : nullptr;
      Status generated =
          GenerateAsRank(e, *g_rank_comm, prompts, sampling, user_stop_tokens, tok, print_ids);
      if (!generated.ok()) return Fail(generated);
    }
    if (bench) {
      if (options.eager) return Fail(InvalidArgument("--bench times replays; drop --eager"));
      Status status = RunRankBench(e, *g_rank_comm, baseline_rss);
      if (!status.ok()) return Fail(status);
    }
    return 0;
  }
  if (!bench || !prompts.empty()) {
    if (prompts.empty()) prompts.push_back({1, 2, 3, 4, 5, 6, 7, 8});
    Generator generator(e);
    for (size_t i = 0; i < prompts.size(); ++i) {
      Status added =
          generator.Add(GenerationRequest{static_cast<int64_t>(i), prompts[i], sampling});
      if (!added.ok()) return Fail(added);
    }
    TraceWriter trace;
    if (!trace_path.empty()) e.set_observer(&trace);
    std::optional<TextPrinter> text;
    if (text_mode) {
      text.emplace(*text_config->tokenizer, prompts.size());
      text->Start();
    }
    const auto start = std::chrono::steady_clock::now();
    std::vector<GenerationResult> results;
    while (!generator.Idle()) {
      const double step_start = NowMicros();
      StatusOr<std::vector<GenerationResult>> done = generator.Step();
      if (!done.ok()) return Fail(done.status());
      if (!trace_path.empty()) {
        trace.Event(e.last_key().ToString(), "step", step_start, NowMicros(), 1);
      }
      if (text) {
        for (const auto& [id, token] : generator.last_step_tokens()) {
          if (Status pushed = text->Push(id, token); !pushed.ok()) return Fail(pushed);
        }
        for (const GenerationResult& r : *done) {
          if (Status finished = text->Finish(r.id); !finished.ok()) return Fail(finished);
        }
      }
      for (GenerationResult& r : *done)
        results.push_back(std::move(r));
    }
    e.set_observer(nullptr);
    const double gen_s = Seconds(start);
    std::sort(results.begin(), results.end(),
              [](const GenerationResult& a, const GenerationResult& b) { return a.id < b.id; });
    size_t generated = 0;
    for (const GenerationResult& r : results) {
      std::string ids;
      for (int32_t t : r.tokens)
        ids += (ids.empty() ? "" : ",") + std::to_string(t);
      if (text_mode && !print_ids) ids = std::to_string(r.tokens.size()) + " tokens";
      const std::string why =
          StopReason(r, user_stop_tokens, e.plan().model.max_position_embeddings);
      std::printf("sequence %lld: prompt %zu tokens -> generated %s%s\n",
                  static_cast<long long>(r.id), prompts[r.id].size(), ids.c_str(), why.c_str());
      generated += r.tokens.size();
    }
    std::printf("%zu tokens in %lld steps, %.3f s (%s)\n", generated,
                static_cast<long long>(generator.num_steps()), gen_s,
                options.eager ? "eager" : "replay");
    if (!trace_path.empty()) {
      Status written = trace.Write(trace_path);
      if (!written.ok()) return Fail(written);
      std::printf("wrote trace %s\n", trace_path.c_str());
    }
  }
  if (bench) {
    if (options.eager)
      return Fail(InvalidArgument("--bench compares replay with eager; drop --eager"));
    Status status = RunBench(e);
    if (!status.ok()) return Fail(status);
    const uint64_t expected = e.weight_bytes() + e.kv_cache().bytes() + e.arena_bytes();
    // The process holds its shared libraries (with CUDA built in, cuBLASLt
    // alone maps ~150 MiB) before any plan is opened: that baseline is
    // reported apart from what the engine adds.
    const uint64_t peak = PeakRssBytes();
    const uint64_t engine_rss = peak > baseline_rss ? peak - baseline_rss : 0;
    std::printf(
        "  peak RSS %s = %s at start (libraries, runtime) + %s for the engine; weights + "
        "KV cache + arena = %s; engine / that = %.3f\n",
        FormatBytes(peak).c_str(), FormatBytes(baseline_rss).c_str(),
        FormatBytes(engine_rss).c_str(), FormatBytes(expected).c_str(),
        static_cast<double>(engine_rss) / expected);
    std::printf("  load + capture %.3f s\n", load_s);
  }
  return 0;
}

}  // namespace
}  // namespace moegraph

int main(int argc, char** argv) {
  return moegraph::Main(argc, argv);
}
