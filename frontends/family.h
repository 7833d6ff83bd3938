// The model-family registry: config.json's `architectures` entry -> the family's config parser,
// graph builder and checkpoint weight list. LoadHfModel dispatches through it, and the demo and
// bench checkpoint writers take their tensor lists from it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/model_config.h"
#include "frontends/weights.h"
#include "ir/graph.h"
#include "support/json.h"
#include "support/status.h"

namespace moegraph {

// A family's functions take its own config type (an alternative of ModelConfig); family.cc
// adapts them, so build_graph and weight_list only ever see configs their parse_config made.
struct ModelFamily {
  std::string_view architecture;  // as in config.json "architectures"
  std::string_view name;          // PlanModelInfo::family
  StatusOr<ModelConfig> (*parse_config)(const JsonValue& json, std::string_view source);
  StatusOr<Graph> (*build_graph)(const ModelConfig& config, const Checkpoint& checkpoint);
  std::vector<WeightSpec> (*weight_list)(const ModelConfig& config);
  // A small config.json of the family (no torch_dtype) for `compile-model demo --family NAME`:
  // the demo tokenizer's vocab (512), hidden 128, 4 layers. WriteDemoModel parses it with
  // parse_config and writes MakeRandomWeights(weight_list(config)) beside it.
  std::string_view demo_config;
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

// The family called `name` (ModelFamily::name: "qwen3_moe", "mixtral", ...); NotFound listing
// the names.
StatusOr<const ModelFamily*> FindModelFamilyByName(std::string_view name);

// "qwen3_moe, qwen3, mixtral, qwen2": the registered names, in registration order.
std::string ModelFamilyNames();

}  // namespace moegraph
