// The family table. Adding a family is one line here (see docs/DESIGN-NOTES.md).
#include "frontends/family.h"

#include "frontends/config_reader.h"
#include "frontends/qwen3_moe.h"

namespace moegraph {

const std::vector<ModelFamily>& ModelFamilies() {
  static const std::vector<ModelFamily>* families = new std::vector<ModelFamily>{
      {"Qwen3MoeForCausalLM", "qwen3_moe", ParseQwen3MoeConfig, BuildQwen3MoeGraph,
       Qwen3MoeWeightList},
  };
  return *families;
}

std::string SupportedArchitectures() {
  std::string list;
  for (const ModelFamily& family : ModelFamilies()) {
    if (!list.empty()) list += ", ";
    list += "\"" + std::string(family.architecture) + "\"";
  }
  return list;
}

StatusOr<const ModelFamily*> FindModelFamily(std::string_view architecture) {
  for (const ModelFamily& family : ModelFamilies()) {
    if (family.architecture == architecture) return &family;
  }
  return NotFound("no model family for architecture \"" + std::string(architecture) +
                  "\"; supported architectures: " + SupportedArchitectures());
}

StatusOr<const ModelFamily*> FamilyForConfig(const JsonValue& json, std::string_view source) {
  if (!json.is_object()) {
    return InvalidArgument(std::string(source) + ": expected a JSON object, found " +
                           json.DescribeKind());
  }
  FieldReader reader(json, source);
  const JsonValue* architectures = reader.Get("architectures");
  if (architectures != nullptr) {
    if (!architectures->is_array()) {
      return reader.Error("architectures", std::string("must be an array of strings, found ") +
                                               architectures->DescribeKind());
    }
    for (const JsonValue& name : architectures->as_array()) {
      if (!name.is_string()) {
        return reader.Error("architectures",
                            "must be an array of strings, found " + architectures->Dump());
      }
    }
    for (const JsonValue& name : architectures->as_array()) {
      StatusOr<const ModelFamily*> family = FindModelFamily(name.as_string());
      if (family.ok()) return family;
    }
  }
  return reader.Unsupported(
      "architectures",
      (architectures == nullptr ? std::string("is missing") : "is " + architectures->Dump()) +
          "; supported architectures: " + SupportedArchitectures());
}

}  // namespace moegraph
