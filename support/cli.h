// Command-line helpers shared by the tools: a tiny flag parser that knows
// each flag's help text, so --help and parsing never drift apart.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support/status.h"

namespace moegraph {

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

StatusOr<int64_t> ParseInt(const std::string& text, const std::string& what);
StatusOr<double> ParseDouble(const std::string& text, const std::string& what);
// "1,2,4" -> {1, 2, 4}.
StatusOr<std::vector<int32_t>> ParseIntList(const std::string& text, const std::string& what);

}  // namespace moegraph
