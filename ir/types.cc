// Type and attribute printing.
#include "ir/types.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace moegraph {

std::string Dim::ToString() const {
  return is_static() ? std::to_string(size) : symbol;
}

bool Type::is_static() const {
  for (const Dim& dim : dims) {
    if (!dim.is_static()) return false;
  }
  return true;
}

int64_t Type::StaticNumel() const {
  int64_t numel = 1;
  for (const Dim& dim : dims) {
    if (!dim.is_static() || dim.size < 0) return -1;
    if (dim.size != 0 && numel > std::numeric_limits<int64_t>::max() / dim.size) return -1;
    numel *= dim.size;
  }
  return numel;
}

std::string Type::ToString() const {
  if (is_meta()) return "!forward_meta";
  std::string out = "tensor<";
  for (const Dim& dim : dims)
    out += dim.ToString() + " x ";
  out += DTypeName(dtype);
  out += ">";
  return out;
}

namespace {

std::string QuoteString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// The shortest %g form that reads back to the same double.
std::string FormatDouble(double v) {
  char buf[64];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // Keep floats distinguishable from integers in the text form.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

}  // namespace

std::string AttributeToString(const Attribute& attr) {
  if (const auto* i = std::get_if<int64_t>(&attr)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&attr)) return FormatDouble(*d);
  if (const auto* s = std::get_if<std::string>(&attr)) return QuoteString(*s);
  const auto& list = std::get<std::vector<int64_t>>(attr);
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(list[i]);
  }
  return out + "]";
}

}  // namespace moegraph
