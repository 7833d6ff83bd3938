// Debug channels read once from MOEGRAPH_LOG.
#include "support/log.h"

#include <cstdio>
#include <cstdlib>

#include "support/strings.h"

namespace moegraph {

bool LogEnabled(std::string_view channel) {
  static const std::vector<std::string> channels = [] {
    const char* env = std::getenv("MOEGRAPH_LOG");
    return env ? SplitString(env, ',') : std::vector<std::string>{};
  }();
  for (const std::string& c : channels) {
    if (c == channel || c == "all") return true;
  }
  return false;
}

void LogLine(std::string_view channel, const std::string& message) {
  std::fprintf(stderr, "[moegraph:%.*s] %s\n", static_cast<int>(channel.size()), channel.data(),
               message.c_str());
}

}  // namespace moegraph
