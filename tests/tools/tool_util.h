// Running the built tools from tests: exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace moegraph::testing {

struct ToolRun {
  int exit_code = -1;  // 128 + signal when killed by one
  std::string out, err;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline std::string ShellQuote(const std::string& word) {
  std::string out = "'";
  for (char c : word)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs build/bin/`tool` with `args` in `dir`; `env` is a prefix such as
// "MOEGRAPH_LOG=dispatch".
inline ToolRun RunTool(const std::string& tool, const std::vector<std::string>& args,
                       const std::string& dir, const std::string& env = "") {
  const std::string out = dir + "/" + tool + ".stdout", err = dir + "/" + tool + ".stderr";
  std::string command = "cd " + ShellQuote(dir) + " && " + env + " " +
                        ShellQuote(std::string(MOEGRAPH_BIN_DIR) + "/" + tool);
  for (const std::string& arg : args)
    command += " " + ShellQuote(arg);
  command += " >" + ShellQuote(out) + " 2>" + ShellQuote(err) + " </dev/null";
  const int status = std::system(command.c_str());
  ToolRun run;
  if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) run.exit_code = 128 + WTERMSIG(status);
  run.out = ReadFile(out);
  run.err = ReadFile(err);
  return run;
}

}  // namespace moegraph::testing
