// The model-family registry: config.json's `architectures` entry -> the family's config parser,
// graph builder and checkpoint weight list. LoadHfModel dispatches through it, and the demo and
// bench checkpoint writers take their tensor lists from it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/qwen3_moe_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// Every family parses into Qwen3MoeConfig today (the only family); a family with fields of its
// own gives HfModel its config type when it lands.
struct ModelFamily {
  std::string_view architecture;  // as in config.json "architectures"
  std::string_view name;          // PlanModelInfo::family, the graph's name
  StatusOr<Qwen3MoeConfig> (*parse_config)(const JsonValue& json, std::string_view source);
  StatusOr<Graph> (*build_graph)(const Qwen3MoeConfig& config, const Checkpoint& checkpoint);
  std::vector<WeightSpec> (*weight_list)(const Qwen3MoeConfig& config);
};

// All registered families, in registration order.
const std::vector<ModelFamily>& ModelFamilies();

// The family of `architecture`; NotFound listing the supported architectures.
StatusOr<const ModelFamily*> FindModelFamily(std::string_view architecture);

// The family a config.json names: the first `architectures` entry with a registered family.
// Unimplemented naming `source` and listing the supported architectures when none matches (or
// the field is missing); InvalidArgument when it is not an array of strings.
StatusOr<const ModelFamily*> FamilyForConfig(const JsonValue& json, std::string_view source);

// "\"Qwen3MoeForCausalLM\"" (comma-separated when there are several).
std::string SupportedArchitectures();

}  // namespace moegraph
