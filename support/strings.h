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
// `text` safe to quote in a message: bytes below 0x20, 0x7f, backslash and
// bytes that are not part of valid UTF-8 become \xNN; valid UTF-8 stays.
// For names and strings read from files, which may hold anything.
std::string EscapeBytes(std::string_view text);

}  // namespace moegraph
