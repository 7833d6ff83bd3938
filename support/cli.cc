// Flag parsing for the tools.
#include "support/cli.h"

#include <cerrno>
#include <cstdlib>

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

StatusOr<std::vector<int32_t>> ParseIntList(const std::string& text, const std::string& what) {
  std::vector<int32_t> values;
  for (const std::string& piece : SplitString(text, ',')) {
    MG_ASSIGN_OR_RETURN(int64_t v, ParseInt(piece, what));
    if (v < INT32_MIN || v > INT32_MAX)
      return InvalidArgument(what + ": " + piece + " is out of range");
    values.push_back(static_cast<int32_t>(v));
  }
  if (values.empty())
    return InvalidArgument(what + ": expected a comma-separated list of integers");
  return values;
}

}  // namespace moegraph
