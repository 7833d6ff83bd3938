// Typed access to the fields of a Hugging Face config.json, shared by every family's config
// parser, with messages naming the file and the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// Optional fields keep their default when absent or null (Hugging Face writes null for "use the
// default"). `json` and `source` must outlive the reader.
class FieldReader {
 public:
  FieldReader(const JsonValue& json, std::string_view source) : json_(json), source_(source) {}

  // InvalidArgument / Unimplemented: `<source>: field "<field>" <what>`.
  Status Error(std::string_view field, const std::string& what) const;
  Status Unsupported(std::string_view field, const std::string& what) const;

  // The field, or null when absent or null.
  const JsonValue* Get(std::string_view field) const;

  Status RequiredInt(std::string_view field, int64_t& out) const;
  Status OptionalInt(std::string_view field, int64_t& out) const;
  Status OptionalDouble(std::string_view field, double& out) const;
  Status OptionalBool(std::string_view field, bool& out) const;
  Status OptionalString(std::string_view field, std::string& out) const;

  // "architectures": the model class names (empty when absent); an error
  // unless it is an array of strings.
  StatusOr<std::vector<std::string>> Architectures() const;
  // Unimplemented: "architectures" names none of `supported` (a description
  // such as "\"Qwen3MoeForCausalLM\"").
  Status UnsupportedArchitecture(const std::string& supported) const;

  std::string_view source() const { return source_; }

 private:
  const JsonValue& json_;
  std::string_view source_;
};

}  // namespace moegraph
