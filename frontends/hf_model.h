// Loading a Hugging Face model directory: config.json + safetensors, the
// architecture's definition, and the generic graph.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/model_config.h"
#include "ir/graph.h"
#include "plan/plan.h"
#include "support/status.h"

namespace moegraph {

struct HfModel {
  std::string dir;
  std::string family;       // ModelFamily::name ("qwen3_moe")
  std::string config_text;  // config.json verbatim
  ModelConfig config;       // the family's own config type
  Checkpoint checkpoint;
  Graph graph;  // the generic graph, verified

  // The fields every family's config has.
  const DecoderConfig& decoder() const { return Decoder(config); }

  // The plan's view of the model (family, sizes the runtime needs).
  PlanModelInfo Info() const;
};

// The checkpoint tensors the generic graph's weight ops read (a stacked weight's {e}
// expanded; a quantized weight's scale tensor included).
std::set<std::string> TensorsRead(const Graph& graph);

// The checkpoint's tensors that `model`'s graph does not read, sorted: what compile-model
// reports (DeepSeek-V3 / GLM4-MoE MTP layers are the expected ones; anything else usually
// means a layout the family does not know).
std::vector<std::string> UnreadTensors(const HfModel& model);

// Reads `dir`/config.json, dispatches on `architectures` through the family registry
// (frontends/family.h; an unknown architecture is Unimplemented listing the supported ones),
// opens the checkpoint and builds the generic graph.
StatusOr<HfModel> LoadHfModel(const std::string& dir);

// Resolves a MODEL argument of the tools: a directory, or the word "demo",
// which writes the built-in demo model (or, with `family`, that registered
// family's demo: DemoModelOptions::family) into `demo_dir` if not already there
// and returns that directory. A `family` with a MODEL other than "demo", an
// unknown family, or a `demo_dir` holding another family's demo is an error.
StatusOr<std::string> ResolveModelArgument(const std::string& model, const std::string& demo_dir,
                                           const std::string& family = "");

}  // namespace moegraph
