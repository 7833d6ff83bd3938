// The family table. Adding a family is one line here (see docs/DESIGN-NOTES.md).
#include "frontends/family.h"

#include "frontends/config_reader.h"
#include "frontends/ernie4_5_moe.h"
#include "frontends/mixtral.h"
#include "frontends/qwen2.h"
#include "frontends/qwen3_moe.h"
#include "support/strings.h"

namespace moegraph {
namespace {

// A registry entry from a family's typed functions.
template <typename Config, StatusOr<Config> (*Parse)(const JsonValue&, std::string_view),
          StatusOr<Graph> (*Build)(const Config&, const Checkpoint&),
          std::vector<WeightSpec> (*List)(const Config&)>
ModelFamily Family(std::string_view architecture, std::string_view name) {
  return {architecture, name,
          [](const JsonValue& json, std::string_view source) -> StatusOr<ModelConfig> {
            MG_ASSIGN_OR_RETURN(Config config, Parse(json, source));
            return ModelConfig(std::move(config));
          },
          [](const ModelConfig& config, const Checkpoint& checkpoint) {
            return Build(std::get<Config>(config), checkpoint);
          },
          [](const ModelConfig& config) { return List(std::get<Config>(config)); }};
}

}  // namespace

const std::vector<ModelFamily>& ModelFamilies() {
  static const std::vector<ModelFamily>* families = new std::vector<ModelFamily>{
      Family<Qwen3MoeConfig, ParseQwen3MoeConfig, BuildQwen3MoeGraph, Qwen3MoeWeightList>(
          "Qwen3MoeForCausalLM", "qwen3_moe"),
      Family<Qwen3MoeConfig, ParseQwen3Config, BuildQwen3MoeGraph, Qwen3MoeWeightList>(
          "Qwen3ForCausalLM", "qwen3"),
      Family<MixtralConfig, ParseMixtralConfig, BuildMixtralGraph, MixtralWeightList>(
          "MixtralForCausalLM", "mixtral"),
      Family<Qwen2Config, ParseQwen2Config, BuildQwen2Graph, Qwen2WeightList>("Qwen2ForCausalLM",
                                                                              "qwen2"),
      Family<Ernie4_5_MoeConfig, ParseErnie4_5_MoeConfig, BuildErnie4_5_MoeGraph,
             Ernie4_5_MoeWeightList>("Ernie4_5_MoeForCausalLM", "ernie4_5_moe"),
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
