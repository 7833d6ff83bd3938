// compile-model: a Hugging Face model directory (or the built-in demo model)
// and a key set in, a plan file out.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "compiler/compile_model.h"
#include "runtime/plan_file.h"
#include "support/cli.h"
#include "support/strings.h"

namespace moegraph {
namespace {

Status SetRegex(const std::string& text, std::optional<std::regex>& out) {
  try {
    out = std::regex(text);
  } catch (const std::regex_error& e) {
    return InvalidArgument("'" + text + "' is not a valid regular expression: " + e.what());
  }
  return Status::Ok();
}

int Fail(const Status& status) {
  std::fprintf(stderr, "compile-model: %s\n", status.ToString().c_str());
  return 1;
}

int Main(int argc, char** argv) {
  CompileModelOptions options;
  std::string output, demo_dir;
  bool quiet = false;
  std::string phases = "prefill,decode";
  FlagParser flags(
      "compile-model MODEL -o PLAN [options]",
      "Compiles MODEL (a Hugging Face model directory with config.json and safetensors, or the\n"
      "word 'demo' for the built-in random-weight Qwen3-MoE model) into a plan file: one\n"
      "lowered, memory-planned kernel program per specialization key (MoE phase, chunk count,\n"
      "token bucket). Weights stay in the checkpoint; the plan references them by file and\n"
      "offset. Example:\n"
      "  compile-model demo -o demo.plan\n"
      "  compile-model /models/Qwen3-30B-A3B -o a3b.plan --decode-buckets 1,8,32 --prefill-buckets "
      "512");
  flags.Value("--output", "PLAN", "plan file to write (required)", [&](const std::string& v) {
    output = v;
    return Status::Ok();
  });
  flags.Alias("-o", "--output");
  flags.Value("--demo-dir", "DIR",
              "where MODEL=demo writes the demo checkpoint (default: <plan dir>/demo-model)",
              [&](const std::string& v) {
                demo_dir = v;
                return Status::Ok();
              });
  flags.Value("--phases", "LIST", "phases to compile: prefill,decode (default both)",
              [&](const std::string& v) {
                phases = v;
                return Status::Ok();
              });
  flags.Value("--chunk-size", "N", "MoE chunk capacity in rows (default 256)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, "--chunk-size"));
                options.keys.chunk_size = static_cast<int32_t>(n);
                return Status::Ok();
              });
  flags.Value("--max-chunks", "N", "largest MoE chunk count compiled (default 8)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, "--max-chunks"));
                options.keys.max_chunks = static_cast<int32_t>(n);
                return Status::Ok();
              });
  flags.Value("--expert-parallel", "N",
              "expert-parallel ranks; above 1 every key runs max-chunks chunks (default 1)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, "--expert-parallel"));
                options.keys.expert_parallel = static_cast<int32_t>(n);
                return Status::Ok();
              });
  flags.Value("--decode-buckets", "LIST", "decode token buckets (default 1,2,4,8,16,32,64)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(options.keys.decode_buckets,
                                    ParseIntList(v, "--decode-buckets"));
                return Status::Ok();
              });
  flags.Value(
      "--prefill-buckets", "LIST", "prefill token buckets (default 16,32,64,128,256,512,1024,2048)",
      [&](const std::string& v) -> Status {
        MG_ASSIGN_OR_RETURN(options.keys.prefill_buckets, ParseIntList(v, "--prefill-buckets"));
        return Status::Ok();
      });
  flags.Value("--max-prefill-seqs", "N", "sequence capacity of prefill keys (default 16)",
              [&](const std::string& v) -> Status {
                MG_ASSIGN_OR_RETURN(int64_t n, ParseInt(v, "--max-prefill-seqs"));
                options.keys.max_prefill_seqs = static_cast<int32_t>(n);
                return Status::Ok();
              });
  flags.Switch("--no-fuse", "skip the fuse pass", [&] { options.pipeline.fuse = false; });
  flags.Switch("--no-verify", "do not verify the graph after every pass",
               [&] { options.pipeline.pass_manager.verify_each = false; });
  flags.Value("--print-ir-before", "REGEX", "print the IR before passes whose name matches",
              [&](const std::string& v) {
                return SetRegex(v, options.pipeline.pass_manager.print_ir_before);
              });
  flags.Value("--print-ir-after", "REGEX", "print the IR after passes whose name matches",
              [&](const std::string& v) {
                return SetRegex(v, options.pipeline.pass_manager.print_ir_after);
              });
  flags.Switch("--print-ir-after-change", "print the IR after every pass that changed it",
               [&] { options.pipeline.pass_manager.print_ir_after_change = true; });
  flags.Value("--dump-dir", "DIR", "write the IR after every pass, one file per pass per key",
              [&](const std::string& v) {
                options.pipeline.pass_manager.dump_dir = v;
                return Status::Ok();
              });
  flags.Switch("--quiet", "no progress or summary", [&] { quiet = true; });
  flags.Alias("-q", "--quiet");

  StatusOr<std::vector<std::string>> args = flags.Parse(argc, argv);
  if (!args.ok()) return Fail(args.status());
  if (flags.help()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (args->size() != 1) return Fail(InvalidArgument("expected one MODEL argument (see --help)"));
  if (output.empty()) return Fail(InvalidArgument("missing -o PLAN (see --help)"));
  options.keys.prefill = phases.find("prefill") != std::string::npos;
  options.keys.decode = phases.find("decode") != std::string::npos;
  for (const std::string& p : SplitString(phases, ',')) {
    if (p != "prefill" && p != "decode") {
      return Fail(InvalidArgument("--phases: unknown phase '" + p + "' (prefill, decode)"));
    }
  }
  for (int i = 0; i < argc; ++i)
    options.command_line += (i ? " " : "") + std::string(argv[i]);

  const auto start = std::chrono::steady_clock::now();
  if (demo_dir.empty()) {
    demo_dir = (std::filesystem::path(output).parent_path() / "demo-model").string();
  }
  StatusOr<std::string> dir = ResolveModelArgument((*args)[0], demo_dir);
  if (!dir.ok()) return Fail(dir.status());
  if (!quiet && (*args)[0] == "demo") std::fprintf(stderr, "demo model: %s\n", dir->c_str());
  StatusOr<HfModel> model = LoadHfModel(*dir);
  if (!model.ok()) return Fail(model.status());
  StatusOr<std::vector<SpecKey>> keys = EnumerateKeys(options.keys);
  if (!keys.ok()) return Fail(keys.status());
  if (!quiet) {
    std::fprintf(stderr, "compiling %zu keys of %s (%lld layers, %lld experts, top-%lld)\n",
                 keys->size(), dir->c_str(),
                 static_cast<long long>(model->config.num_hidden_layers),
                 static_cast<long long>(model->config.num_experts),
                 static_cast<long long>(model->config.num_experts_per_tok));
  }
  std::vector<double> seconds;
  StatusOr<Plan> plan = CompileModel(*model, options, [&](const CompileProgress& p) {
    seconds.push_back(p.seconds);
    if (!quiet) {
      std::fprintf(stderr, "  [%zu/%zu] %-52s %8.1f ms\n", p.done, p.total,
                   p.program->key.ToString().c_str(), p.seconds * 1e3);
    }
  });
  if (!plan.ok()) return Fail(plan.status());
  Status written = WritePlanFile(*plan, output);
  if (!written.ok()) return Fail(written);
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!quiet) {
    std::printf("%-52s %12s %7s %10s\n", "key", "arena", "steps", "compile");
    for (size_t i = 0; i < plan->programs.size(); ++i) {
      const KeyProgram& p = plan->programs[i];
      std::printf("%-52s %12s %7zu %7.1f ms\n", p.key.ToString().c_str(),
                  FormatBytes(p.arena_bytes).c_str(), p.steps.size(), seconds[i] * 1e3);
    }
    uint64_t weight_bytes = 0;
    for (const PlanWeight& w : plan->weights) {
      for (const PlanWeightSlice& s : w.slices)
        weight_bytes += s.bytes;
    }
    std::printf(
        "wrote %s: %zu keys, runtime arena %s (largest key), %zu weights (%s, referenced "
        "in %s), %s plan file, %.2f s\n",
        output.c_str(), plan->programs.size(), FormatBytes(plan->max_arena_bytes()).c_str(),
        plan->weights.size(), FormatBytes(weight_bytes).c_str(), plan->model_dir.c_str(),
        FormatBytes(std::filesystem::file_size(output)).c_str(), total);
  }
  return 0;
}

}  // namespace
}  // namespace moegraph

int main(int argc, char** argv) {
  return moegraph::Main(argc, argv);
}
