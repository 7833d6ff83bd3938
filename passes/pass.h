// Passes and the PassManager. A pass is a small class with a name and
// Run(Graph&) -> changed | error; passes never reach into the runtime.
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string_view name() const = 0;
  // Rewrites `graph`; returns whether anything changed.
  virtual StatusOr<bool> Run(Graph& graph) = 0;
};

struct PassManagerOptions {
  bool verify_each = true;
  std::optional<std::regex> print_ir_before;  // pass names matching it
  std::optional<std::regex> print_ir_after;
  bool print_ir_after_change = false;    // after every pass that changed the graph
  std::string dump_dir;                  // one file per pass: <dir>/<tag>.<NN>.<pass>.mgir
  std::string dump_tag = "graph";        // e.g. the specialization key
  std::ostream* print_stream = nullptr;  // where print-ir output goes (default std::cerr)
};

class PassManager {
 public:
  explicit PassManager(PassManagerOptions options = {}) : options_(std::move(options)) {}

  void Add(std::unique_ptr<Pass> pass) { passes_.push_back(std::move(pass)); }
  // Runs every pass in order. Errors name the pass; with verify_each, a pass
  // that leaves an ill-formed graph is an error naming that pass.
  Status Run(Graph& graph);
  // Names of the passes that changed the graph in the last Run.
  const std::vector<std::string>& changed_passes() const { return changed_; }

 private:
  void Print(const std::string& banner, const Graph& graph);
  Status Dump(int index, std::string_view pass, const Graph& graph);

  PassManagerOptions options_;
  std::vector<std::unique_ptr<Pass>> passes_;
  std::vector<std::string> changed_;
};

}  // namespace moegraph
