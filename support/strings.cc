// String helpers.
#include "support/strings.h"

#include "support/format.h"

namespace moegraph {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return Format("[{}]", fmt::join(shape, ", "));
}

std::vector<std::string> SplitString(std::string_view text, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) parts.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::string ExpandExpertName(const std::string& pattern, int64_t index) {
  std::string name = pattern;
  size_t at = name.find("{e}");
  if (at != std::string::npos) name.replace(at, 3, std::to_string(index));
  return name;
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes >= (1ull << 30)) return Format("{:.2f} GiB", bytes / double(1ull << 30));
  if (bytes >= (1ull << 20)) return Format("{:.2f} MiB", bytes / double(1ull << 20));
  if (bytes >= 1024) return Format("{:.1f} KiB", bytes / 1024.0);
  return Format("{} B", bytes);
}

namespace {

// The length of the valid UTF-8 sequence starting at text[at], 0 if none
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t Utf8SequenceLength(std::string_view text, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(at);
  size_t length = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) lo = 0xa0;
    if (lead == 0xed) hi = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) lo = 0x90;
    if (lead == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (at + length > text.size()) return 0;
  if (byte(at + 1) < lo || byte(at + 1) > hi) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(at + i) < 0x80 || byte(at + i) > 0xbf) return 0;
  }
  return length;
}

}  // namespace

std::string EscapeBytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    const size_t length = c >= 0x80 ? Utf8SequenceLength(text, i) : 0;
    if (length > 0) {
      out.append(text.substr(i, length));
      i += length;
      continue;
    }
    out += Format("\\x{:02x}", c);
    ++i;
  }
  return out;
}

}  // namespace moegraph
