// Parser for the generic text form printed by PrintGraph.
#pragma once

#include <string_view>

#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// Parses one graph. Errors name `source_name:line:col` and what was expected.
// The result is not verified: run Verify on it.
StatusOr<Graph> ParseGraph(std::string_view text, std::string_view source_name = "<text>");

}  // namespace moegraph
