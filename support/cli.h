// Command-line helpers shared by the tools, on top of CLI11 (which parses):
// numeric options with an explicit range whose errors name the flag, the
// range and the value, the list formats the tools take, and the limits they
// enforce. Only this header's users that build a CLI::App include CLI11.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/status.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace moegraph {

// Limits on what the tools compile: a key's MoE chunk count (graphs grow
// linearly with it) and the MoE chunk capacity in rows.
inline constexpr int64_t kMaxMoeChunks = 256;
inline constexpr int64_t kMaxExpertParallelRanks = 4096;
inline constexpr int64_t kMaxChunkSize = 1 << 16;
// Token buckets and prompt lengths: no model has a longer context.
inline constexpr int64_t kMaxTokenBucket = 1 << 20;

// An inclusive range [min, max] of an integer option.
struct IntRange {
  int64_t min = 0, max = 0;
};

// `--name N`: an integer in `range`. Anything else — not an integer, out of
// range (no wrapping) — is an error "--name: VALUE is outside [min, max]".
// The help text gets " (range [min, max])" appended.
CLI::Option* AddIntOption(CLI::App& app, const std::string& name, int32_t& value, IntRange range,
                          const std::string& help);
CLI::Option* AddIntOption(CLI::App& app, const std::string& name, int64_t& value, IntRange range,
                          const std::string& help);
CLI::Option* AddUint64Option(CLI::App& app, const std::string& name, uint64_t& value,
                             const std::string& help);
// `--name X`: a finite number in [min, max], or in (min, max] when
// `min_exclusive`. NaN and infinities are errors.
CLI::Option* AddRealOption(CLI::App& app, const std::string& name, float& value, double min,
                           double max, bool min_exclusive, const std::string& help);
// `--name 1,2,4`: a non-empty comma-separated list of integers in `range`.
CLI::Option* AddIntListOption(CLI::App& app, const std::string& name, std::vector<int32_t>& values,
                              IntRange range, const std::string& help);

// Parses argv with `app`. Returns the exit code when the tool should stop
// (0 after printing --help to stdout, 1 after printing "tool: error" to
// stderr), nullopt to go on. An option CLI11 does not know is reported as
// "unknown option '--x' (see --help)" (the app must allow extras).
std::optional<int> ParseCommandLine(CLI::App& app, const std::string& tool, int argc, char** argv);

// "1,2,4" -> {1, 2, 4}. Every comma-separated piece must be an integer in
// `range`; an empty piece (",," or a trailing ",") or an empty list is an error.
StatusOr<std::vector<int32_t>> ParseIntList(std::string_view text, const std::string& what,
                                            IntRange range);
// "1,2;3" -> {{1, 2}, {3}}: prompts separated by ';', token ids by ','. An
// empty text or an empty prompt (";;", a trailing ';') is an error naming the
// prompt's position: a prompt is never dropped or renumbered.
StatusOr<std::vector<std::vector<int32_t>>> ParsePromptIds(std::string_view text,
                                                           const std::string& what);

// The small hand-written flag parser the benchmark programs (bench/,
// bench/gpu_bench.cc) still use; the tools parse with CLI11.
class FlagParser {
 public:
  FlagParser(std::string usage, std::string description)
      : usage_(std::move(usage)), description_(std::move(description)) {}

  // A flag taking a value: `--name VALUE` or `--name=VALUE`.
  void Value(const std::string& name, const std::string& metavar, const std::string& help,
             std::function<Status(const std::string&)> set);
  // A flag without a value.
  void Switch(const std::string& name, const std::string& help, std::function<void()> set);
  // A short alias ("-o" for "--output").
  void Alias(const std::string& short_name, const std::string& name);

  // Parses argv; positional arguments are returned. "-h"/"--help" sets help().
  StatusOr<std::vector<std::string>> Parse(int argc, char** argv);
  bool help() const { return help_; }
  std::string Help() const;

 private:
  struct Flag {
    std::string name, metavar, help;
    std::function<Status(const std::string&)> set_value;
    std::function<void()> set_switch;
  };
  const Flag* Find(const std::string& name) const;

  std::string usage_, description_;
  std::vector<Flag> flags_;
  std::vector<std::pair<std::string, std::string>> aliases_;
  bool help_ = false;
};

// A whole-text integer (no wrapping: out of int64 is an error).
StatusOr<int64_t> ParseInt(const std::string& text, const std::string& what);
// A whole-text number.
StatusOr<double> ParseDouble(const std::string& text, const std::string& what);

// CPUs this process may run on (its affinity mask), at least 1.
int AvailableCores();
// Physical memory in MiB (0 if unknown).
int64_t PhysicalMemoryMib();

}  // namespace moegraph
