// Debug channels: MOEGRAPH_LOG=passes,capture,dispatch (or "all") turns on
// the named channels; messages go to stderr.
#pragma once

#include <string>
#include <string_view>

namespace moegraph {

bool LogEnabled(std::string_view channel);
void LogLine(std::string_view channel, const std::string& message);

}  // namespace moegraph
