// Message formatting on fmt: Format("{}: field \"{}\" is {}, expected at most {}", ...).
#pragma once

#include <fmt/format.h>

#include <string>
#include <utility>

namespace moegraph {

// fmt::format, with its format string checked at compile time (a "{}" without an argument, or
// an argument without a "{}", fails to build). The one name the tree uses, so that moving to
// std::format (which g++ 12's library lacks) is a change here only. Include it from .cc files
// only: the headers the package installs do not need fmt.
template <typename... Args>
std::string Format(fmt::format_string<Args...> format, Args&&... args) {
  return fmt::format(format, std::forward<Args>(args)...);
}

}  // namespace moegraph
