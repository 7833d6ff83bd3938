// compile-model: a Hugging Face model directory (or the built-in demo model)
// and a key set in, a plan file out.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "frontends/family.h"
#include "plan/plan_file.h"
#include "plan/plan_generated.h"
#include "support/cli.h"
#include "support/strings.h"

namespace moegraph {
namespace {

// Compiles the option's REGEX when it was given.
Status SetRegex(const CLI::Option& flag, const std::string& text, std::optional<std::regex>& out) {
  if (flag.count() == 0) return Status::Ok();
  try {
    out = std::regex(text);
  } catch (const std::regex_error& e) {
    return InvalidArgument(flag.get_name() + ": '" + text +
                           "' is not a valid regular expression: " + e.what());
  }
  return Status::Ok();
}

int Fail(const Status& status) {
  std::fprintf(stderr, "compile-model: %s\n", status.ToString().c_str());
  return 1;
}

// compile-model writes only over an earlier plan: never over a file of the
// model it reads (`-o DIR/model.safetensors`), nor over anything else that
// is not a plan (its FlatBuffers file identifier at byte 4).
Status CheckOutputPath(const std::string& output, const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(output, error);
  if (!fs::exists(status)) return Status::Ok();
  if (fs::is_directory(status)) {
    return InvalidArgument("-o " + output + " is a directory; expected a plan file path");
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(model_dir, error)) {
    std::error_code same_error;
    if (fs::equivalent(entry.path(), output, same_error)) {
      const std::string which =
          entry.path() == fs::path(output) ? "" : " (" + entry.path().string() + ")";
      return InvalidArgument("refusing to write the plan to " + output + ": it is a file" + which +
                             " of the input model directory " + model_dir + "; choose another -o");
    }
  }
  char head[8] = {};
  std::ifstream in(output, std::ios::binary);
  in.read(head, sizeof(head));
  const char* identifier = fb::PlanIdentifier();
  if (!in || std::memcmp(head + 4, identifier, 4) != 0) {
    return InvalidArgument("refusing to overwrite " + output +
                           ": it exists and is not a moegraph plan (no \"" + identifier +
                           "\" file identifier at byte 4); remove it or choose another -o");
  }
  return Status::Ok();
}

int Main(int argc, char** argv) {
  CompileModelOptions options;
  std::vector<std::string> args;
  std::string output, demo_dir, print_before, print_after;
  bool quiet = false;
  std::string phases = "prefill,decode";
  CLI::App app(
      "Compiles MODEL (a Hugging Face model directory with config.json and safetensors, or the\n"
      "word 'demo' for the built-in random-weight Qwen3-MoE model) into a plan file: one\n"
      "lowered, memory-planned kernel program per specialization key (MoE phase, chunk count,\n"
      "token bucket). Weights stay in the checkpoint; the plan references them by file and\n"
      "offset. An existing PLAN is overwritten only if it is a plan, never a model file.\n"
      "The directory's tokenizer.json, tokenizer_config.json and generation_config.json, where\n"
      "present, are checked (they load; their ids are below vocab_size) and recorded in the\n"
      "plan by name and XXH64: run-model reads them back for text prompts and the eos ids,\n"
      "and refuses one that changed. Without tokenizer.json the plan takes token ids only.\n"
      "With --family NAME, MODEL=demo is a random-weight demo of that model family instead\n"
      "(its small config.json, the same demo tokenizer), written to <plan dir>/demo-model-NAME.\n"
      "Example:\n"
      "  compile-model demo -o demo.plan\n"
      "  compile-model demo --family mixtral -o mixtral.plan\n"
      "  compile-model /models/Qwen3-30B-A3B -o a3b.plan --decode-buckets 1,8,32 --prefill-buckets "
      "512",
      "compile-model");
  app.allow_extras();
  app.add_option("MODEL", args, "a model directory, or 'demo'")->type_name("");
  app.add_option("-o,--output", output, "plan file to write (required)")->type_name("PLAN");
  app.add_option("--demo-dir", demo_dir,
                 "where MODEL=demo writes the demo checkpoint (default: <plan dir>/demo-model, "
                 "or <plan dir>/demo-model-NAME with --family)")
      ->type_name("DIR");
  std::string family;
  app.add_option("--family", family,
                 "with MODEL=demo: a demo of model family NAME instead of the built-in Qwen3-MoE "
                 "one (" +
                     ModelFamilyNames() + ")")
      ->type_name("NAME");
  app.add_option("--phases", phases, "phases to compile: prefill,decode (default both)")
      ->type_name("LIST");
  AddIntOption(app, "--chunk-size", options.keys.chunk_size, {1, kMaxChunkSize},
               "MoE chunk capacity in rows (default 256)");
  AddIntOption(app, "--max-chunks", options.keys.max_chunks, {1, kMaxMoeChunks},
               "largest MoE chunk count compiled (default 8)");
  AddIntListOption(app, "--decode-buckets", options.keys.decode_buckets, {1, kMaxTokenBucket},
                   "decode token buckets (default 1,2,4,8,16,32,64)");
  AddIntListOption(app, "--prefill-buckets", options.keys.prefill_buckets, {1, kMaxTokenBucket},
                   "prefill token buckets (default 16,32,64,128,256,512,1024,2048)");
  AddIntOption(app, "--max-prefill-seqs", options.keys.max_prefill_seqs, {1, kMaxTokenBucket},
               "sequence capacity of prefill keys (default 16)");
  AddIntOption(app, "--ep", options.keys.expert_parallel, {1, kMaxExpertParallelRanks},
               "expert-parallel ranks (EP x DP: each rank its own sequences, the routed experts "
               "split across ranks); run the plan with `mpirun -np N run-model` (default 1)");
  bool no_fuse = false, no_verify = false;
  app.add_flag("--no-fuse", no_fuse, "skip the fuse pass");
  app.add_flag("--no-verify", no_verify, "do not verify the graph after every pass");
  const CLI::Option* print_before_flag =
      app.add_option("--print-ir-before", print_before,
                     "print the IR before passes whose name matches")
          ->type_name("REGEX");
  const CLI::Option* print_after_flag =
      app.add_option("--print-ir-after", print_after,
                     "print the IR after passes whose name matches")
          ->type_name("REGEX");
  app.add_flag("--print-ir-after-change", options.pipeline.pass_manager.print_ir_after_change,
               "print the IR after every pass that changed it");
  app.add_option("--dump-dir", options.pipeline.pass_manager.dump_dir,
                 "write the IR after every pass, one file per pass per key")
      ->type_name("DIR");
  std::string kv_dtype;
  const CLI::Option* kv_dtype_flag =
      app.add_option("--kv-dtype", kv_dtype,
                     "KV cache storage dtype: f32, f16 or bf16 (default: the checkpoint's 16-bit "
                     "dtype for a bf16/f16 checkpoint, else f32)")
          ->type_name("DTYPE");
  std::string weights = "checkpoint";
  app.add_option("--weights", weights,
                 "weights the plan reads: 'checkpoint' (as stored), 'int8' or 'int4' (matmul "
                 "weights quantized to int8 / int4 blocks with f32 scales, written beside the "
                 "plan as PLAN_STEM.int8.safetensors / PLAN_STEM.int4.safetensors; CPU backend)")
      ->type_name("FORMAT");
  AddIntOption(app, "--weight-block", options.quant_block_cols, {8, 256},
               "input columns per scale of --weights int8 (a multiple of 8) or int4 (a multiple "
               "of 32); 32 is llama.cpp's Q8_0 / Q4_0 block (default 32)");
  app.add_flag("-q,--quiet", quiet, "no progress or summary");
  if (std::optional<int> exit_code = ParseCommandLine(app, "compile-model", argc, argv)) {
    return *exit_code;
  }
  if (no_fuse) options.pipeline.fuse = false;
  if (no_verify) options.pipeline.pass_manager.verify_each = false;
  if (Status s =
          SetRegex(*print_before_flag, print_before, options.pipeline.pass_manager.print_ir_before);
      !s.ok()) {
    return Fail(s);
  }
  if (Status s =
          SetRegex(*print_after_flag, print_after, options.pipeline.pass_manager.print_ir_after);
      !s.ok()) {
    return Fail(s);
  }
  if (kv_dtype_flag->count() > 0) {
    const std::optional<DType> parsed = ParseDType(kv_dtype);
    if (!parsed || !IsKvCacheDType(*parsed)) {
      return Fail(InvalidArgument("--kv-dtype: expected f32, f16 or bf16, got '" + kv_dtype + "'"));
    }
    options.kv_dtype = *parsed;
  }
  if (const std::optional<WeightFormat> format = ParseWeightFormat(weights)) {
    options.weights = *format;
  } else {
    return Fail(
        InvalidArgument("--weights: expected checkpoint, int8 or int4, got '" + weights + "'"));
  }
  const int32_t block_multiple = options.weights == WeightFormat::kInt4 ? 32 : 8;
  if (options.quant_block_cols % block_multiple != 0) {
    return Fail(InvalidArgument("--weight-block: expected a multiple of " +
                                std::to_string(block_multiple) + " for --weights " + weights +
                                ", got " + std::to_string(options.quant_block_cols)));
  }
  if (args.size() != 1) return Fail(InvalidArgument("expected one MODEL argument (see --help)"));
  if (!family.empty()) {
    if (args[0] != "demo") {
      return Fail(InvalidArgument("--family " + family + " applies to MODEL 'demo' only, got '" +
                                  args[0] + "'"));
    }
    if (Status known = FindModelFamilyByName(family).status(); !known.ok()) {
      return Fail(known.WithContext("--family"));
    }
  }
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
    demo_dir = (std::filesystem::path(output).parent_path() / DemoDirName(family)).string();
  }
  StatusOr<std::string> dir = ResolveModelArgument(args[0], demo_dir, family);
  if (!dir.ok()) return Fail(dir.status());
  if (Status checked = CheckOutputPath(output, *dir); !checked.ok()) return Fail(checked);
  if (!quiet && args[0] == "demo") std::fprintf(stderr, "demo model: %s\n", dir->c_str());
  StatusOr<HfModel> model = LoadHfModel(*dir);
  if (!model.ok()) return Fail(model.status());
  // Tensors the graph does not read are not an error (MTP layers are expected), but they are
  // reported even with -q: a checkpoint in a layout the family does not know shows up here.
  if (const std::vector<std::string> unread = UnreadTensors(*model); !unread.empty()) {
    std::string names;
    for (size_t i = 0; i < unread.size() && i < 4; ++i)
      names += (i ? ", " : "") + unread[i];
    if (unread.size() > 4) names += ", ... (" + std::to_string(unread.size() - 4) + " more)";
    std::fprintf(stderr,
                 "compile-model: warning: %zu tensor(s) of %s are not read by the %s graph: %s\n",
                 unread.size(), dir->c_str(), model->family.c_str(), names.c_str());
  }
  StatusOr<std::vector<SpecKey>> keys = EnumerateKeys(options.keys);
  if (!keys.ok()) return Fail(keys.status());
  const int32_t ranks = options.keys.expert_parallel;
  // A program's name: its key, after its rank when the plan has several.
  const auto program_name = [&](const KeyProgram& p) {
    return (ranks > 1 ? "rank " + std::to_string(p.rank) + " " : std::string()) + p.key.ToString();
  };
  if (!quiet) {
    const std::string for_ranks =
        ranks > 1 ? " for each of " + std::to_string(ranks) + " expert-parallel ranks" : "";
    std::fprintf(stderr, "compiling %zu keys%s of %s (%s: %s)\n", keys->size(), for_ranks.c_str(),
                 dir->c_str(), model->family.c_str(), DescribeModel(model->config).c_str());
  }
  QuantizeReport quantized;
  if (options.weights != WeightFormat::kCheckpoint) {
    options.packed_weights_path = PackedWeightsPath(output, options.weights);
    options.quantize_report = &quantized;
    if (!quiet) {
      options.quantize_progress = [&](size_t done, size_t total) {
        if (done == total || done % 16 == 0) {
          std::fprintf(stderr, "\r  quantizing weights to %s: %zu/%zu",
                       WeightFormatName(options.weights), done, total);
          if (done == total) std::fprintf(stderr, "\n");
        }
      };
    }
  }
  std::vector<double> seconds;
  StatusOr<Plan> plan = CompileModel(*model, options, [&](const CompileProgress& p) {
    seconds.push_back(p.seconds);
    if (!quiet) {
      std::fprintf(stderr, "  [%zu/%zu] %-52s %8.1f ms\n", p.done, p.total,
                   program_name(*p.program).c_str(), p.seconds * 1e3);
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
      std::printf("%-52s %12s %7zu %7.1f ms\n", program_name(p).c_str(),
                  FormatBytes(p.arena_bytes).c_str(), p.steps.size(), seconds[i] * 1e3);
    }
    uint64_t weight_bytes = 0;
    for (const PlanWeight& w : plan->weights) {
      for (const PlanWeightSlice& s : w.slices)
        weight_bytes += s.bytes;
      for (const PlanWeightSlice& s : w.scale_slices)
        weight_bytes += s.bytes;
    }
    std::printf(
        "wrote %s: %zu keys%s, runtime arena %s (largest key), %zu weights (%s, referenced "
        "in %s), KV cache %s, %s plan file, %.2f s\n",
        output.c_str(), plan->programs.size() / static_cast<size_t>(ranks),
        ranks > 1 ? (" x " + std::to_string(ranks) + " expert-parallel ranks").c_str() : "",
        FormatBytes(plan->max_arena_bytes()).c_str(), plan->weights.size(),
        FormatBytes(weight_bytes).c_str(), plan->model_dir.c_str(),
        plan->kv_layers.empty() ? "-" : DTypeName(plan->kv_layers[0].dtype),
        FormatBytes(std::filesystem::file_size(output)).c_str(), total);
    if (options.weights != WeightFormat::kCheckpoint) {
      std::printf(
          "%s weights (blocks of %d): %lld matmul weights packed into %s (%s from %s in the "
          "checkpoint); %zu kept as stored\n",
          WeightFormatName(options.weights), options.quant_block_cols,
          static_cast<long long>(quantized.weights), options.packed_weights_path.c_str(),
          FormatBytes(quantized.packed_bytes).c_str(), FormatBytes(quantized.source_bytes).c_str(),
          quantized.kept.size());
      for (const std::string& kept : quantized.kept)
        std::printf("  kept: %s\n", kept.c_str());
    }
    std::string tokenizer_files;
    for (const PlanTokenizerFile& f : plan->tokenizer_files)
      tokenizer_files += (tokenizer_files.empty() ? "" : ", ") + f.file;
    const bool has_tokenizer =
        std::any_of(plan->tokenizer_files.begin(), plan->tokenizer_files.end(),
                    [](const PlanTokenizerFile& f) { return f.file == "tokenizer.json"; });
    std::printf("tokenizer files recorded: %s%s\n",
                tokenizer_files.empty() ? "none" : tokenizer_files.c_str(),
                has_tokenizer ? "" : " (no tokenizer.json: run-model takes --prompt-ids only)");
  }
  return 0;
}

}  // namespace
}  // namespace moegraph

int main(int argc, char** argv) {
  return moegraph::Main(argc, argv);
}
