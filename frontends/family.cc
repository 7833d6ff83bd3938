// The family table. Adding a family is one line here (see docs/DESIGN-NOTES.md).
#include "frontends/family.h"

#include "frontends/config_reader.h"
#include "frontends/qwen3_moe.h"
#include "support/strings.h"

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
  return NotFound("no model family for architecture \"" + EscapeBytes(architecture) +
                  "\"; supported architectures: " + SupportedArchitectures());
}

StatusOr<const ModelFamily*> FamilyForConfig(const JsonValue& json, std::string_view source) {
  if (!json.is_object()) {
    return InvalidArgument(std::string(source) + ": expected a JSON object, found " +
                           json.DescribeKind());
  }
  FieldReader reader(json, source);
  MG_ASSIGN_OR_RETURN(const std::vector<std::string> architectures, reader.Architectures());
  for (const std::string& name : architectures) {
    StatusOr<const ModelFamily*> family = FindModelFamily(name);
    if (family.ok()) return family;
  }
  return reader.UnsupportedArchitecture(SupportedArchitectures());
}

}  // namespace moegraph
