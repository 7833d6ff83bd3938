// graph-dump: prints a plan's or a model's IR — the generic graph, or one
// specialization key after any pass — as text, Graphviz DOT or JSON, or a
// line diff of two keys.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "compiler/pipeline.h"
#include "frontends/demo_model.h"
#include "frontends/family.h"
#include "frontends/hf_model.h"
#include "ir/graph_export.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "plan/plan_file.h"
#include "support/cli.h"
#include "support/strings.h"

namespace moegraph {
namespace {

constexpr int kExitError = 1;   // bad flags, missing or unreadable input, a failed compile
constexpr int kExitFaults = 2;  // the graph shown is ill-formed, or its IR text does not parse
constexpr int kDiffContext = 2;

enum class Format { kText, kDot, kJson };

struct Options {
  std::string input;
  std::optional<std::string> key;
  Format format = Format::kText;
  std::string after;
  std::optional<std::pair<std::string, std::string>> diff;
  std::optional<std::regex> grep;
  bool list_keys = false;
  std::optional<int32_t> chunk_size;
  std::string demo_dir;       // empty: ./demo-model, or ./demo-model-<family> with --family
  std::string family;         // with INPUT=demo: a registered family's demo
  int32_t rank = 0;           // the expert-parallel rank whose programs are shown
  std::optional<int32_t> ep;  // a model compiled for this many expert-parallel ranks
};

std::string Join(const std::vector<std::string>& words, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i)
    out += (i ? separator : "") + words[i];
  return out;
}

void Write(const std::string& text, std::FILE* stream) {
  std::fwrite(text.data(), 1, text.size(), stream);
}

int Fail(const Status& status) {
  std::fprintf(stderr, "graph-dump: %s\n", status.message().c_str());
  return kExitError;
}

// A key from graph-dump's partial form. Missing fields: phase prefill,
// chunks 1, max_chunks = chunks, tokens the phase's smallest bucket, seqs as
// the key set would give the bucket (tokens for decode, else
// min(tokens, max_prefill_seqs)).
StatusOr<SpecKey> ResolveKey(const std::string& text, const KeySetOptions& key_options) {
  SpecKey defaults;
  defaults.moe_num_chunk = 1;
  defaults.max_moe_num_chunk = 0;  // ParseSpecKey raises it to chunks when not given
  defaults.token_bucket = -1;      // ParseSpecKey accepts no negative value: -1 is "not given"
  defaults.seq_bucket = -1;
  StatusOr<SpecKey> parsed = ParseSpecKey(text, defaults);
  if (!parsed.ok()) return parsed.status().WithContext("key '" + text + "'");
  SpecKey key = *parsed;
  const bool decode = key.phase == MoePhase::kDecode;
  if (key.token_bucket < 0) {
    const std::vector<int32_t>& buckets =
        decode ? key_options.decode_buckets : key_options.prefill_buckets;
    key.token_bucket = buckets.empty() ? 1 : *std::min_element(buckets.begin(), buckets.end());
  }
  if (key.seq_bucket < 0) {
    key.seq_bucket =
        decode ? key.token_bucket : std::min(key.token_bucket, key_options.max_prefill_seqs);
  }
  if (key.token_bucket <= 0 || key.seq_bucket <= 0 || key.moe_num_chunk <= 0) {
    return InvalidArgument("key '" + text + "': tokens, seqs and chunks must be > 0");
  }
  if (key.max_moe_num_chunk < key.moe_num_chunk) {
    return InvalidArgument("key '" + text + "': max_chunks must be >= chunks");
  }
  // A key's graph holds one MoE op per chunk and layer, and a token bucket
  // sizes every activation: bound both as compile-model does.
  if (key.max_moe_num_chunk > kMaxMoeChunks) {
    return InvalidArgument("key '" + text + "': " + std::to_string(key.max_moe_num_chunk) +
                           " chunks is more than the " + std::to_string(kMaxMoeChunks) +
                           " compile-model allows (--max-chunks)");
  }
  if (key.token_bucket > kMaxTokenBucket || key.seq_bucket > kMaxTokenBucket) {
    return InvalidArgument("key '" + text + "': tokens and seqs must be at most " +
                           std::to_string(kMaxTokenBucket));
  }
  return key;
}

// INPUT loaded: a plan (with its programs and source IR) or a model (with its
// generic graph), and the graphs asked of it.
class GraphSource {
 public:
  // Reads INPUT: "demo", a model directory, or a plan file.
  Status Load(const Options& options) {
    name_ = options.input;
    std::error_code error;
    if (options.input == "demo" || std::filesystem::is_directory(options.input, error)) {
      MG_ASSIGN_OR_RETURN(std::string dir,
                          ResolveModelArgument(options.input, options.demo_dir, options.family));
      MG_ASSIGN_OR_RETURN(HfModel model, LoadHfModel(dir));
      generic_ = std::move(model.graph);
      key_options_.chunk_size = options.chunk_size.value_or(key_options_.chunk_size);
      key_options_.expert_parallel = options.ep.value_or(1);
      return CheckRank(options.rank);
    }
    if (!std::filesystem::exists(options.input, error)) {
      return NotFound("INPUT '" + options.input +
                      "' does not exist (expected a plan file, a model directory or 'demo')");
    }
    MG_ASSIGN_OR_RETURN(plan_, ReadPlanFile(options.input));
    key_options_ = plan_->key_options;
    if (options.ep) {
      return InvalidArgument("--ep applies to a model; plan '" + name_ + "' was compiled for " +
                             std::to_string(key_options_.expert_parallel) + " ranks");
    }
    MG_RETURN_IF_ERROR(CheckRank(options.rank));
    if (options.chunk_size) {
      return InvalidArgument("--chunk-size applies to a model; plan '" + name_ +
                             "' was compiled with chunk size " +
                             std::to_string(key_options_.chunk_size));
    }
    // The plan records compile-model's command line: compile keys the same way.
    for (const std::string& word : SplitString(plan_->compile_options, ' ')) {
      if (word == "--no-fuse") fuse_ = false;
    }
    return Status::Ok();
  }

  const std::optional<Plan>& plan() const { return plan_; }
  int32_t rank() const { return rank_; }
  const KeySetOptions& key_options() const { return key_options_; }
  bool fuse() const { return fuse_; }
  // IR text that did not parse (empty if none): shown with line numbers.
  const std::string& unparsed() const { return unparsed_; }

  // The generic graph (a plan's source IR, parsed).
  StatusOr<Graph> Generic() {
    if (!generic_) {
      MG_ASSIGN_OR_RETURN(Graph graph, Parse(plan_->source_ir, name_ + " (source IR)"));
      generic_ = std::move(graph);
    }
    return *generic_;
  }

  // The graph of `key`: a plan's stored program when it has the key and no
  // pass is named, else the pipeline run on the generic graph (up to `after`).
  StatusOr<Graph> ForKey(const SpecKey& key, const std::string& after) {
    if (plan_ && after.empty()) {
      for (const KeyProgram& program : plan_->programs) {
        if (program.key == key && program.rank == rank_) {
          return Parse(program.ir, name_ + " (IR of key " + key.ToString() + ")");
        }
      }
      std::fprintf(stderr, "graph-dump: note: %s holds no program for %s; compiling it\n",
                   name_.c_str(), key.ToString().c_str());
    }
    MG_ASSIGN_OR_RETURN(Graph generic, Generic());
    if (!VerifyGraph(generic).empty()) {
      std::fprintf(stderr,
                   "graph-dump: cannot compile %s: the generic graph of %s is ill-formed; "
                   "showing it instead\n",
                   key.ToString().c_str(), name_.c_str());
      return generic;
    }
    PipelineOptions pipeline;
    pipeline.chunk_size = key_options_.chunk_size;
    pipeline.fuse = fuse_;
    pipeline.stop_after = after;
    if (key_options_.expert_parallel > 1) {
      pipeline.expert_parallel = ExpertParallelFor(key_options_, rank_, key.phase);
    }
    WeightTable weights;
    KeyProgram program;
    return RunPipeline(generic, key, pipeline, weights, &program);
  }

 private:
  Status CheckRank(int32_t rank) {
    rank_ = rank;
    if (rank < key_options_.expert_parallel) return Status::Ok();
    return InvalidArgument("--rank " + std::to_string(rank) + ": " + name_ + " has " +
                           std::to_string(key_options_.expert_parallel) +
                           " expert-parallel rank(s), 0 to " +
                           std::to_string(key_options_.expert_parallel - 1) +
                           (plan_ ? "" : " (--ep sets a model's ranks)"));
  }

  StatusOr<Graph> Parse(const std::string& text, const std::string& source_name) {
    StatusOr<Graph> graph = ParseGraph(text, source_name);
    if (!graph.ok()) unparsed_ = text;
    return graph;
  }

  std::string name_;
  std::optional<Plan> plan_;
  std::optional<Graph> generic_;
  KeySetOptions key_options_;
  bool fuse_ = true;
  int32_t rank_ = 0;
  std::string unparsed_;
};

struct Rendered {
  std::string text;
  std::vector<std::string> diagnostics;  // FormatDiagnostic lines
};

Rendered Render(const Graph& graph, Format format, const std::optional<std::regex>& grep) {
  Rendered out;
  const std::vector<Diagnostic> diagnostics = VerifyGraph(graph);
  for (const Diagnostic& d : diagnostics)
    out.diagnostics.push_back(FormatDiagnostic(graph, d));
  switch (format) {
    case Format::kText: {
      PrintOptions print;
      for (const Diagnostic& d : diagnostics) {
        if (d.op_index < 0) continue;
        std::string& note = print.op_faults[d.op_index];
        note += (note.empty() ? "" : "; ") + d.message + " [rule: " + d.rule + "]";
      }
      out.text = PrintGraph(graph, print);
      break;
    }
    case Format::kDot:
      out.text = ExportDot(graph);
      break;
    case Format::kJson:
      out.text = ExportJson(graph);
      break;
  }
  if (grep) out.text = FilterLines(out.text, *grep);
  return out;
}

// Prints the diagnostics; the exit status for what was shown.
int Report(const std::string& what, const std::vector<std::string>& diagnostics) {
  if (diagnostics.empty()) return 0;
  std::fprintf(stderr, "graph-dump: %s fails verification (%zu fault%s):\n", what.c_str(),
               diagnostics.size(), diagnostics.size() == 1 ? "" : "s");
  for (const std::string& line : diagnostics)
    std::fprintf(stderr, "  %s\n", line.c_str());
  return kExitFaults;
}

// IR text that did not parse: the parse error, then the text with line
// numbers so the position in the error can be found.
int ShowUnparsed(const Status& status, const std::string& text) {
  std::fprintf(stderr, "graph-dump: %s\n", status.message().c_str());
  size_t start = 0;
  for (int line = 1; start < text.size(); ++line) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::printf("%5d | ", line);
    Write(text.substr(start, end - start) + "\n", stdout);
    start = end + 1;
  }
  return kExitFaults;
}

int ListKeys(const std::string& input, const Plan& plan, int32_t rank) {
  const int32_t ranks = plan.key_options.expert_parallel;
  const std::string of_rank = ranks > 1 ? " of rank " + std::to_string(rank) + " (" +
                                              std::to_string(ranks) +
                                              " expert-parallel ranks, each with these keys)"
                                        : "";
  std::printf("%s: %zu keys%s, chunk size %d, largest arena %lld bytes\n", input.c_str(),
              plan.programs.size() / static_cast<size_t>(ranks), of_rank.c_str(),
              plan.key_options.chunk_size, static_cast<long long>(plan.max_arena_bytes()));
  std::printf("%-52s %14s %7s\n", "key", "arena_bytes", "steps");
  for (const KeyProgram& program : plan.programs) {
    if (program.rank != rank) continue;
    std::printf("%-52s %14lld %7zu\n", program.key.ToString().c_str(),
                static_cast<long long>(program.arena_bytes), program.steps.size());
  }
  return 0;
}

int Main(int argc, char** argv) {
  Options options;
  CLI::App app(
      "Prints the IR of INPUT: a plan file (compile-model's output), a Hugging Face model\n"
      "directory, or the word 'demo' (the built-in demo model, or with --family a demo of\n"
      "that model family, written to --demo-dir).\n"
      "Without --key it prints the generic graph (a plan's source IR, or the graph built from\n"
      "the model). With --key it prints that specialization key's IR: a plan's stored program\n"
      "for the key, or (with --after, or a key the plan lacks, or a model) the compile\n"
      "pipeline run on the generic graph. Text output is the parseable IR text form.\n"
      "\n"
      "Keys are name=value lists; missing fields default: phase=prefill, chunks=1,\n"
      "max_chunks=chunks, tokens=the phase's smallest bucket, seqs=tokens (decode) or\n"
      "min(tokens, the plan's max prefill seqs) (prefill). chunks and max_chunks are at most\n"
      "256 (as compile-model --max-chunks), tokens and seqs at most 1048576.\n"
      "\n"
      "An ill-formed graph is still printed (text: `// FAULT:` after the bad op; dot: red\n"
      "nodes; json: \"faults\"), its faults go to stderr, and the exit status is 2. IR text\n"
      "that does not parse is printed with line numbers after the parse error (exit 2).\n"
      "Other errors (bad flags, a missing or unreadable INPUT, a failed compile) exit 1;\n"
      "success exits 0.\n"
      "\n"
      "examples:\n"
      "  graph-dump demo                                  # the demo model's generic graph\n"
      "  graph-dump demo --family mixtral                 # a Mixtral demo's generic graph\n"
      "  graph-dump demo.plan --list-keys\n"
      "  graph-dump demo.plan --key phase=decode,chunks=1,tokens=8\n"
      "  graph-dump demo --key phase=decode,tokens=4 --after moe-lower --grep 'l0\\.'\n"
      "  graph-dump demo.plan --format dot | dot -Tsvg > graph.svg\n"
      "  graph-dump demo.plan --format json --key phase=prefill,tokens=16\n"
      "  graph-dump demo --diff phase=prefill,tokens=16 phase=decode,tokens=16 \\\n"
      "      --after moe-lower --grep 'l0\\.'\n"
      "  graph-dump ep3.plan --rank 2 --key phase=decode,tokens=1 --grep ep_   # a rank's "
      "collectives",
      "graph-dump");
  app.allow_extras();
  std::vector<std::string> args, diff;
  std::string format = "text", grep, key;
  int32_t chunk_size = 0;
  app.add_option("INPUT", args, "a plan file, a model directory or 'demo'")->type_name("");
  const CLI::Option* key_flag =
      app.add_option("--key", key,
                     "the specialization key to show, e.g. phase=decode,chunks=1,tokens=8")
          ->type_name("K");
  app.add_option("--format", format, "text (default; parseable IR), dot (Graphviz digraph) or json")
      ->type_name("FORMAT");
  app.add_option("--after", options.after,
                 "compile the key only up to and including PASS (needs --key or --diff); passes: " +
                     Join(PipelinePassNames(), ", "))
      ->type_name("PASS");
  const CLI::Option* diff_flag =
      app.add_option("--diff", diff,
                     "print a line diff (unified style, 2 lines of context) of keys K1 and K2; "
                     "with --after both stop after PASS")
          ->expected(2)
          ->type_name("KEY");
  const CLI::Option* grep_flag =
      app.add_option("--grep", grep,
                     "keep only output lines matching REGEX (ECMAScript; with --diff, applied to "
                     "both texts before diffing), e.g. 'l0\\.' for the first layer")
          ->type_name("REGEX");
  app.add_flag("--list-keys", options.list_keys,
               "list a plan's keys with their arena bytes and step counts");
  const CLI::Option* chunk_flag = AddIntOption(
      app, "--chunk-size", chunk_size, {1, kMaxChunkSize},
      "MoE chunk capacity in rows when compiling keys of a model (default 256; a plan uses its "
      "own)");
  app.add_option("--demo-dir", options.demo_dir,
                 "where INPUT=demo writes the demo checkpoint (default ./demo-model, or "
                 "./demo-model-NAME with --family)")
      ->type_name("DIR");
  app.add_option("--family", options.family,
                 "with INPUT=demo: a demo of model family NAME instead of the built-in Qwen3-MoE "
                 "one (" +
                     ModelFamilyNames() + ")")
      ->type_name("NAME");
  AddIntOption(app, "--rank", options.rank, {0, kMaxExpertParallelRanks - 1},
               "the expert-parallel rank whose programs to show (default 0)");
  int32_t ep = 1;
  const CLI::Option* ep_flag =
      AddIntOption(app, "--ep", ep, {1, kMaxExpertParallelRanks},
                   "compile a model's keys for this many expert-parallel ranks, as compile-model "
                   "--ep (a plan uses its own)");
  if (std::optional<int> exit_code = ParseCommandLine(app, "graph-dump", argc, argv)) {
    return *exit_code;
  }
  if (ep_flag->count() > 0) options.ep = ep;
  if (format == "text") {
    options.format = Format::kText;
  } else if (format == "dot") {
    options.format = Format::kDot;
  } else if (format == "json") {
    options.format = Format::kJson;
  } else {
    return Fail(InvalidArgument("--format: '" + format + "' is not a format: text, dot or json"));
  }
  if (key_flag->count() > 0) options.key = key;
  if (diff_flag->count() > 0) options.diff = std::make_pair(diff[0], diff[1]);
  if (grep_flag->count() > 0) {
    try {
      options.grep = std::regex(grep);
    } catch (const std::regex_error& e) {
      return Fail(
          InvalidArgument("--grep: '" + grep + "' is not a regular expression: " + e.what()));
    }
  }
  if (chunk_flag->count() > 0) options.chunk_size = chunk_size;
  if (args.size() != 1) {
    return Fail(
        InvalidArgument("expected one INPUT (a plan file, a model directory or 'demo'), got " +
                        std::to_string(args.size()) + " (see --help)"));
  }
  options.input = args[0];
  if (!options.family.empty()) {
    if (options.input != "demo") {
      return Fail(InvalidArgument("--family " + options.family +
                                  " applies to INPUT 'demo' only, got '" + options.input + "'"));
    }
    if (Status known = FindModelFamilyByName(options.family).status(); !known.ok()) {
      return Fail(known.WithContext("--family"));
    }
  }
  if (options.demo_dir.empty()) options.demo_dir = "./" + DemoDirName(options.family);
  if (options.key && options.diff)
    return Fail(InvalidArgument("--key and --diff exclude each other"));
  if (!options.after.empty() && !options.key && !options.diff) {
    return Fail(InvalidArgument("--after " + options.after +
                                " needs --key (or --diff): the passes from specialize on compile "
                                "one specialization key"));
  }
  if (options.list_keys && (options.key || options.diff || !options.after.empty())) {
    return Fail(InvalidArgument("--list-keys takes no --key, --diff or --after"));
  }

  GraphSource source;
  if (Status loaded = source.Load(options); !loaded.ok()) return Fail(loaded);
  if (options.list_keys) {
    if (!source.plan()) {
      return Fail(InvalidArgument("--list-keys needs a plan file; '" + options.input +
                                  "' is a model (compile it with compile-model first)"));
    }
    return ListKeys(options.input, *source.plan(), source.rank());
  }
  if (!options.after.empty()) {
    const std::vector<std::string> passes = PipelinePassNames(source.fuse());
    if (std::find(passes.begin(), passes.end(), options.after) == passes.end()) {
      return Fail(InvalidArgument("--after: no pass named '" + options.after +
                                  "'; the pipeline runs: " + Join(passes, ", ")));
    }
  }

  // The graph for one key text (nullopt: the generic graph).
  const auto graph_for = [&](const std::optional<std::string>& key_text,
                             std::string* label) -> StatusOr<Graph> {
    if (!key_text) {
      *label = options.input + " (generic graph)";
      return source.Generic();
    }
    MG_ASSIGN_OR_RETURN(SpecKey key, ResolveKey(*key_text, source.key_options()));
    *label = key.ToString() + (options.after.empty() ? "" : " after " + options.after);
    return source.ForKey(key, options.after);
  };

  if (options.diff) {
    std::string labels[2];
    Rendered texts[2];
    const std::string* keys[2] = {&options.diff->first, &options.diff->second};
    for (int i = 0; i < 2; ++i) {
      StatusOr<Graph> graph = graph_for(*keys[i], &labels[i]);
      if (!graph.ok()) {
        if (!source.unparsed().empty()) return ShowUnparsed(graph.status(), source.unparsed());
        return Fail(graph.status());
      }
      texts[i] = Render(*graph, options.format, options.grep);
    }
    Write(LineDiff(texts[0].text, texts[1].text, labels[0], labels[1], kDiffContext), stdout);
    const int first = Report(labels[0], texts[0].diagnostics);
    const int second = Report(labels[1], texts[1].diagnostics);
    return std::max(first, second);
  }

  std::string label;
  StatusOr<Graph> graph = graph_for(options.key, &label);
  if (!graph.ok()) {
    if (!source.unparsed().empty()) return ShowUnparsed(graph.status(), source.unparsed());
    return Fail(graph.status());
  }
  const Rendered rendered = Render(*graph, options.format, options.grep);
  Write(rendered.text, stdout);
  return Report(label, rendered.diagnostics);
}

}  // namespace
}  // namespace moegraph

int main(int argc, char** argv) {
  return moegraph::Main(argc, argv);
}
