// Small string helpers shared by error messages and tools.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moegraph {

// "[2, 3, 4]".
std::string ShapeString(const std::vector<int64_t>& shape);
// Splits on `sep`, dropping empty pieces.
std::vector<std::string> SplitString(std::string_view text, char sep);
// Replaces the first "{e}" in `pattern` with `index` (expert weight names).
std::string ExpandExpertName(const std::string& pattern, int64_t index);
// "1.5 MiB", "312 KiB", "17 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace moegraph
