// Flag parsing: CLI11 options with ranges for the tools, and the benchmarks' FlagParser.
#include "support/cli.h"

#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "support/memory.h"
#include "support/strings.h"

namespace moegraph {

void FlagParser::Value(const std::string& name, const std::string& metavar, const std::string& help,
                       std::function<Status(const std::string&)> set) {
  flags_.push_back(Flag{name, metavar, help, std::move(set), nullptr});
}

void FlagParser::Switch(const std::string& name, const std::string& help,
                        std::function<void()> set) {
  flags_.push_back(Flag{name, "", help, nullptr, std::move(set)});
}

void FlagParser::Alias(const std::string& short_name, const std::string& name) {
  aliases_.emplace_back(short_name, name);
}

const FlagParser::Flag* FlagParser::Find(const std::string& name) const {
  std::string full = name;
  for (const auto& [alias, target] : aliases_) {
    if (alias == name) full = target;
  }
  for (const Flag& f : flags_) {
    if (f.name == full) return &f;
  }
  return nullptr;
}

StatusOr<std::vector<std::string>> FlagParser::Parse(int argc, char** argv) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      help_ = true;
      continue;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    std::string value;
    bool has_value = false;
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const Flag* flag = Find(arg);
    if (!flag) return InvalidArgument("unknown option '" + arg + "' (see --help)");
    if (flag->set_switch) {
      if (has_value) return InvalidArgument("option " + arg + " takes no value");
      flag->set_switch();
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        return InvalidArgument("option " + arg + " needs a value (" + flag->metavar + ")");
      }
      value = argv[++i];
    }
    MG_RETURN_IF_ERROR(flag->set_value(value).WithContext("option " + flag->name));
  }
  return positional;
}

std::string FlagParser::Help() const {
  std::string out = "usage: " + usage_ + "\n\n" + description_ + "\n\noptions:\n";
  out += "  -h, --help\n      print this help and exit\n";
  for (const Flag& f : flags_) {
    std::string names = "  ";
    for (const auto& [alias, target] : aliases_) {
      if (target == f.name) names += alias + ", ";
    }
    names += f.name + (f.metavar.empty() ? "" : " " + f.metavar);
    out += names + "\n      " + f.help + "\n";
  }
  return out;
}

StatusOr<int64_t> ParseInt(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno == ERANGE || *end != '\0') {
    return InvalidArgument(what + ": '" + text + "' is not an integer");
  }
  return static_cast<int64_t>(v);
}

StatusOr<double> ParseDouble(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || errno == ERANGE || *end != '\0') {
    return InvalidArgument(what + ": '" + text + "' is not a number");
  }
  return v;
}

namespace {

std::string RangeText(IntRange range) {
  return "[" + std::to_string(range.min) + ", " + std::to_string(range.max) + "]";
}

// The error in `text` as an integer in `range` ("" if none), without the
// flag's name (the caller or CLI11 prefixes it).
std::string IntError(std::string_view text, IntRange range, int64_t* out) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || end != text.data() + text.size() ||
      (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    return "'" + EscapeBytes(text) + "' is not an integer (expected one in " + RangeText(range) +
           ")";
  }
  if (ec == std::errc::result_out_of_range || value < range.min || value > range.max) {
    return std::string(text) + " is outside the range " + RangeText(range);
  }
  if (out) *out = value;
  return "";
}

std::string IntListError(std::string_view text, IntRange range, std::vector<int32_t>* out) {
  if (text.empty()) return "expected a comma-separated list of integers, got an empty value";
  std::vector<int32_t> values;
  size_t start = 0;
  for (int index = 1;; ++index) {
    const size_t comma = text.find(',', start);
    const std::string_view piece = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (piece.empty()) {
      return "item " + std::to_string(index) + " of '" + EscapeBytes(text) +
             "' is empty (expected integers separated by single commas)";
    }
    int64_t value = 0;
    const std::string error = IntError(piece, range, &value);
    if (!error.empty()) return error;
    values.push_back(static_cast<int32_t>(value));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (out) *out = std::move(values);
  return "";
}

// Validators check the option's text before CLI11 converts it; CLI11
// reports a failure as "--name: <message>".
CLI::Validator IntValidator(IntRange range) {
  return CLI::Validator([range](std::string& text) { return IntError(text, range, nullptr); }, "",
                        "int range");
}

std::string WithRange(const std::string& help, const std::string& range) {
  return help + " (range " + range + ")";
}

}  // namespace

CLI::Option* AddIntOption(CLI::App& app, const std::string& name, int32_t& value, IntRange range,
                          const std::string& help) {
  range.min = std::max<int64_t>(range.min, INT32_MIN);
  range.max = std::min<int64_t>(range.max, INT32_MAX);
  return app.add_option(name, value, WithRange(help, RangeText(range)))
      ->check(IntValidator(range))
      ->type_name("N");
}

CLI::Option* AddIntOption(CLI::App& app, const std::string& name, int64_t& value, IntRange range,
                          const std::string& help) {
  return app.add_option(name, value, WithRange(help, RangeText(range)))
      ->check(IntValidator(range))
      ->type_name("N");
}

CLI::Option* AddUint64Option(CLI::App& app, const std::string& name, uint64_t& value,
                             const std::string& help) {
  const std::string range = "[0, " + std::to_string(UINT64_MAX) + "]";
  return app.add_option(name, value, WithRange(help, range))
      ->check(CLI::Validator(
          [range](std::string& text) -> std::string {
            uint64_t parsed = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
            if (text.empty() || end != text.data() + text.size()) {
              return "'" + EscapeBytes(text) + "' is not an integer in " + range;
            }
            if (ec != std::errc()) return text + " is outside the range " + range;
            return "";
          },
          "", "uint64"))
      ->type_name("N");
}

CLI::Option* AddRealOption(CLI::App& app, const std::string& name, float& value, double min,
                           double max, bool min_exclusive, const std::string& help) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%c%g, %g]", min_exclusive ? '(' : '[', min, max);
  const std::string range = buf;
  return app.add_option(name, value, WithRange(help, range))
      ->check(CLI::Validator(
          [=](std::string& text) -> std::string {
            errno = 0;
            char* end = nullptr;
            const double v = std::strtod(text.c_str(), &end);
            if (text.empty() || *end != '\0') {
              return "'" + EscapeBytes(text) + "' is not a number (expected one in " + range + ")";
            }
            if (!std::isfinite(v)) {
              return text + " is not a finite number (expected one in " + range + ")";
            }
            const bool below = min_exclusive ? !(v > min) : !(v >= min);
            if (below || v > max) {
              return text + " is outside the range " + range;
            }
            return "";
          },
          "", "real range"))
      ->type_name("X");
}

CLI::Option* AddIntListOption(CLI::App& app, const std::string& name, std::vector<int32_t>& values,
                              IntRange range, const std::string& help) {
  range.min = std::max<int64_t>(range.min, INT32_MIN);
  range.max = std::min<int64_t>(range.max, INT32_MAX);
  return app
      .add_option_function<std::string>(
          name, [&values, range](const std::string& text) { IntListError(text, range, &values); },
          help + " (each in " + RangeText(range) + ")")
      ->check(
          CLI::Validator([range](std::string& text) { return IntListError(text, range, nullptr); },
                         "", "int list"))
      ->type_name("LIST");
}

std::optional<int> ParseCommandLine(CLI::App& app, const std::string& tool, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success&) {  // --help
    std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", tool.c_str(), EscapeBytes(e.what()).c_str());
    return 1;
  }
  for (const std::string& extra : app.remaining()) {
    const std::string flag = extra.substr(0, extra.find('='));
    std::fprintf(stderr, "%s: %s '%s' (see --help)\n", tool.c_str(),
                 extra.size() > 1 && extra[0] == '-' ? "unknown option" : "unexpected argument",
                 EscapeBytes(flag).c_str());
    return 1;
  }
  return std::nullopt;
}

StatusOr<std::vector<int32_t>> ParseIntList(std::string_view text, const std::string& what,
                                            IntRange range) {
  std::vector<int32_t> values;
  const std::string error = IntListError(text, range, &values);
  if (!error.empty()) return InvalidArgument(what + ": " + error);
  return values;
}

StatusOr<std::vector<std::vector<int32_t>>> ParsePromptIds(std::string_view text,
                                                           const std::string& what) {
  if (text.empty()) {
    return InvalidArgument(what +
                           ": empty; expected token ids such as 1,2,3 (prompts separated "
                           "by ';')");
  }
  const size_t num_prompts = static_cast<size_t>(std::count(text.begin(), text.end(), ';')) + 1;
  std::vector<std::vector<int32_t>> prompts;
  size_t start = 0;
  for (size_t index = 1; index <= num_prompts; ++index) {
    const size_t semi = text.find(';', start);
    const std::string_view piece =
        text.substr(start, semi == std::string_view::npos ? std::string_view::npos : semi - start);
    const std::string where =
        what + ": prompt " + std::to_string(index) + " of " + std::to_string(num_prompts);
    if (piece.empty()) {
      return InvalidArgument(where + " is empty (prompts are separated by single ';')");
    }
    std::vector<int32_t> ids;
    const std::string error = IntListError(piece, {0, INT32_MAX}, &ids);
    if (!error.empty()) return InvalidArgument(where + ": " + error);
    prompts.push_back(std::move(ids));
    start = semi + 1;
  }
  return prompts;
}

int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
}

int64_t PhysicalMemoryMib() {
  return static_cast<int64_t>(PhysicalMemoryBytes() >> 20);
}

}  // namespace moegraph
