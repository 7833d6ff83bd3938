// PassManager: runs passes with verification, printing and dumping.
#include "passes/pass.h"

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "ir/printer.h"
#include "ir/verifier.h"
#include "support/log.h"
#include "support/mapped_file.h"

namespace moegraph {

void PassManager::Print(const std::string& banner, const Graph& graph) {
  std::ostream& out = options_.print_stream ? *options_.print_stream : std::cerr;
  out << "// ----- " << banner << " -----\n" << PrintGraph(graph);
}

Status PassManager::Dump(int index, std::string_view pass, const Graph& graph) {
  std::error_code ec;
  std::filesystem::create_directories(options_.dump_dir, ec);
  if (ec) return InvalidArgument("--dump-dir " + options_.dump_dir + ": " + ec.message());
  char number[8];
  std::snprintf(number, sizeof(number), "%02d", index);
  std::string tag = options_.dump_tag;
  for (char& c : tag) {
    if (c == '/' || c == ' ' || c == ',' || c == '=') c = '_';
  }
  const std::string path =
      options_.dump_dir + "/" + tag + "." + number + "." + std::string(pass) + ".mgir";
  return WriteFileAtomically(path, PrintGraph(graph));
}

Status PassManager::Run(Graph& graph) {
  changed_.clear();
  if (options_.verify_each) MG_RETURN_IF_ERROR(Verify(graph).WithContext("input to the pipeline"));
  if (!options_.dump_dir.empty()) MG_RETURN_IF_ERROR(Dump(0, "input", graph));
  int index = 1;
  for (const std::unique_ptr<Pass>& pass : passes_) {
    const std::string name(pass->name());
    if (options_.print_ir_before && std::regex_search(name, *options_.print_ir_before)) {
      Print("IR before " + name + " (" + options_.dump_tag + ")", graph);
    }
    StatusOr<bool> changed = pass->Run(graph);
    if (!changed.ok()) return changed.status().WithContext("pass '" + name + "'");
    if (*changed) changed_.push_back(name);
    if (LogEnabled("passes")) {
      LogLine("passes", options_.dump_tag + ": " + name +
                            (*changed ? " changed the graph (" : " no change (") +
                            std::to_string(graph.ops().size()) + " ops)");
    }
    if (options_.verify_each) {
      MG_RETURN_IF_ERROR(Verify(graph).WithContext("after pass '" + name + "'"));
    }
    const bool print_after =
        options_.print_ir_after && std::regex_search(name, *options_.print_ir_after);
    if (print_after || (options_.print_ir_after_change && *changed)) {
      Print("IR after " + name + (*changed ? "" : " (no change)") + " (" + options_.dump_tag + ")",
            graph);
    }
    if (!options_.dump_dir.empty()) MG_RETURN_IF_ERROR(Dump(index, name, graph));
    ++index;
  }
  return Status::Ok();
}

}  // namespace moegraph
