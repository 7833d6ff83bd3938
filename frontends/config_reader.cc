// FieldReader implementation.
#include "frontends/config_reader.h"

#include "support/format.h"
#include "support/strings.h"

namespace moegraph {

Status FieldReader::Error(std::string_view field, const std::string& what) const {
  return InvalidArgument(Format("{}: field \"{}\" {}", source_, field, what));
}

Status FieldReader::Unsupported(std::string_view field, const std::string& what) const {
  return Unimplemented(Format("{}: field \"{}\" {}", source_, field, what));
}

StatusOr<std::vector<std::string>> FieldReader::Architectures() const {
  std::vector<std::string> names;
  const JsonValue* architectures = Get("architectures");
  if (architectures == nullptr) return names;
  if (!architectures->is_array()) {
    return Error("architectures",
                 Format("must be an array of strings, found {}", architectures->DescribeKind()));
  }
  for (const JsonValue& name : architectures->as_array()) {
    if (!name.is_string()) {
      return Error("architectures", Format("must be an array of strings, found {}",
                                           EscapeBytes(architectures->Dump())));
    }
    names.push_back(name.as_string());
  }
  return names;
}

Status FieldReader::UnsupportedArchitecture(const std::string& supported) const {
  const JsonValue* architectures = Get("architectures");
  return Unsupported(
      "architectures",
      Format("{}; supported architectures: {}",
             architectures == nullptr ? "is missing" : "is " + EscapeBytes(architectures->Dump()),
             supported));
}

const JsonValue* FieldReader::Get(std::string_view field) const {
  const JsonValue* value = json_.Find(field);
  return value == nullptr || value->is_null() ? nullptr : value;
}

Status FieldReader::RequiredInt(std::string_view field, int64_t& out) const {
  if (Get(field) == nullptr) return Error(field, "is required (an integer)");
  return OptionalInt(field, out);
}

Status FieldReader::OptionalInt(std::string_view field, int64_t& out) const {
  const JsonValue* value = Get(field);
  if (value == nullptr) return Status::Ok();
  if (!value->is_int())
    return Error(field, Format("must be an integer, found {}", value->DescribeKind()));
  out = value->as_int();
  return Status::Ok();
}

Status FieldReader::OptionalDouble(std::string_view field, double& out) const {
  const JsonValue* value = Get(field);
  if (value == nullptr) return Status::Ok();
  if (!value->is_number())
    return Error(field, Format("must be a number, found {}", value->DescribeKind()));
  out = value->as_double();
  return Status::Ok();
}

Status FieldReader::OptionalBool(std::string_view field, bool& out) const {
  const JsonValue* value = Get(field);
  if (value == nullptr) return Status::Ok();
  if (!value->is_bool())
    return Error(field, Format("must be true or false, found {}", value->DescribeKind()));
  out = value->as_bool();
  return Status::Ok();
}

Status FieldReader::OptionalString(std::string_view field, std::string& out) const {
  const JsonValue* value = Get(field);
  if (value == nullptr) return Status::Ok();
  if (!value->is_string())
    return Error(field, Format("must be a string, found {}", value->DescribeKind()));
  out = value->as_string();
  return Status::Ok();
}

}  // namespace moegraph
