// HF model directory loading.
#include "frontends/hf_model.h"

#include <algorithm>
#include <filesystem>

#include "frontends/demo_model.h"
#include "frontends/family.h"
#include "ir/op_registry.h"
#include "support/json.h"
#include "support/mapped_file.h"
#include "support/strings.h"

namespace moegraph {

PlanModelInfo HfModel::Info() const {
  PlanModelInfo info;
  info.family = family;
  info.config_json = config_text;
  const DecoderConfig& d = decoder();
  info.vocab_size = static_cast<int32_t>(d.vocab_size);
  info.num_layers = static_cast<int32_t>(d.num_hidden_layers);
  info.num_kv_heads = static_cast<int32_t>(d.num_key_value_heads);
  info.head_dim = static_cast<int32_t>(d.head_dim);
  info.max_position_embeddings = static_cast<int32_t>(d.max_position_embeddings);
  return info;
}

std::set<std::string> TensorsRead(const Graph& graph) {
  std::set<std::string> read;
  for (const Op& op : graph.ops()) {
    if (op.def->name != "weight") continue;
    const int64_t experts = op.IntAttr("experts", 0);
    for (const char* attr : {"name", "scale"}) {
      if (!op.HasAttr(attr)) continue;
      const std::string name = op.StringAttr(attr);
      if (experts == 0) {
        read.insert(name);
      } else {
        for (int64_t e = 0; e < experts; ++e)
          read.insert(ExpandExpertName(name, e));
      }
    }
  }
  return read;
}

std::vector<std::string> UnreadTensors(const HfModel& model) {
  const std::set<std::string> read = TensorsRead(model.graph);
  std::vector<std::string> unread;
  for (const std::string& name : model.checkpoint.TensorNames()) {
    if (read.count(name) == 0) unread.push_back(name);
  }
  std::sort(unread.begin(), unread.end());
  return unread;
}

StatusOr<HfModel> LoadHfModel(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  if (!std::filesystem::is_directory(dir)) {
    return NotFound(dir +
                    ": not a directory (expected a Hugging Face model directory with "
                    "config.json and model.safetensors)");
  }
  MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  MG_ASSIGN_OR_RETURN(JsonValue json, ParseJson(text, config_path));
  MG_ASSIGN_OR_RETURN(const ModelFamily* family, FamilyForConfig(json, config_path));
  MG_ASSIGN_OR_RETURN(ModelConfig config, family->parse_config(json, config_path));
  MG_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(dir));
  MG_ASSIGN_OR_RETURN(Graph graph, family->build_graph(config, checkpoint));
  return HfModel{dir,
                 std::string(family->name),
                 std::move(text),
                 std::move(config),
                 std::move(checkpoint),
                 std::move(graph)};
}

StatusOr<std::string> ResolveModelArgument(const std::string& model, const std::string& demo_dir,
                                           const std::string& family) {
  if (model != "demo") {
    if (!family.empty()) {
      return InvalidArgument("--family " + family + " applies to MODEL 'demo' only, got '" + model +
                             "'");
    }
    return model;
  }
  if (!family.empty()) MG_RETURN_IF_ERROR(FindModelFamilyByName(family).status());
  const std::string config_path = demo_dir + "/config.json";
  if (!std::filesystem::exists(config_path) ||
      !std::filesystem::exists(demo_dir + "/model.safetensors") ||
      !std::filesystem::exists(demo_dir + "/tokenizer.json")) {
    MG_RETURN_IF_ERROR(WriteDemoModel(demo_dir, {.family = family}));
  } else if (!family.empty()) {
    // A demo written before: it must be this family's, not another one's.
    MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
    MG_ASSIGN_OR_RETURN(JsonValue json, ParseJson(text, config_path));
    MG_ASSIGN_OR_RETURN(const ModelFamily* found, FamilyForConfig(json, config_path));
    if (found->name != family) {
      return FailedPrecondition(demo_dir + " holds a " + std::string(found->name) +
                                " model, not the " + family +
                                " demo; choose another --demo-dir or remove it");
    }
  }
  return demo_dir;
}

}  // namespace moegraph
