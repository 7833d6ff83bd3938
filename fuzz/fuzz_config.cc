// Fuzz target: an untrusted config.json -> ParseJson -> ParseQwen3MoeConfig
// -> BuildQwen3MoeGraph, against the demo checkpoint and, for small configs,
// against a random-weight checkpoint of the config's own shapes, whose graph
// must then verify.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string_view>

#include "frontends/demo_model.h"
#include "frontends/qwen3_moe.h"
#include "fuzz/fuzz_common.h"
#include "fuzz/fuzz_targets.h"
#include "ir/verifier.h"

namespace moegraph::fuzz {
namespace {

// Weights of a checkpoint matching `config`, or -1 when any size is above the
// caps (so writing that checkpoint would take more than a few milliseconds).
int64_t SmallModelElements(const Qwen3MoeConfig& c) {
  if (c.vocab_size > 1024 || c.hidden_size > 256 || c.intermediate_size > 512 ||
      c.moe_intermediate_size > 256 || c.num_hidden_layers > 4 || c.num_attention_heads > 16 ||
      c.num_key_value_heads > 16 || c.head_dim > 64 || c.num_experts > 16) {
    return -1;
  }
  const int64_t attention =
      c.hidden_size * c.head_dim * (2 * c.num_attention_heads + 2 * c.num_key_value_heads);
  const int64_t mlp =
      3 * c.hidden_size * std::max(c.intermediate_size, c.num_experts * c.moe_intermediate_size);
  const int64_t total = 2 * c.vocab_size * c.hidden_size + c.num_hidden_layers * (attention + mlp);
  return total <= (2 << 20) ? total : -1;
}

const Checkpoint& DemoCheckpoint() {
  static const Checkpoint* checkpoint = [] {
    StatusOr<Checkpoint> opened = Checkpoint::Open(DemoModelDir());
    if (!opened.ok()) std::abort();
    return new Checkpoint(std::move(opened).value());
  }();
  return *checkpoint;
}

// A random-weight checkpoint of `config`'s shapes (nullptr if the writer
// refuses them). Rewritten only when the shapes change: most inputs differ from
// the last one in values that leave the weights as they are.
const Checkpoint* OwnCheckpoint(const Qwen3MoeConfig& config) {
  static std::string* last_shapes = new std::string;
  static Checkpoint* last = nullptr;
  Qwen3MoeConfig shapes;  // only the fields MakeRandomQwen3MoeWeights reads
  shapes.vocab_size = config.vocab_size;
  shapes.hidden_size = config.hidden_size;
  shapes.intermediate_size = config.intermediate_size;
  shapes.moe_intermediate_size = config.moe_intermediate_size;
  shapes.num_hidden_layers = config.num_hidden_layers;
  shapes.num_attention_heads = config.num_attention_heads;
  shapes.num_key_value_heads = config.num_key_value_heads;
  shapes.head_dim = config.head_dim;
  shapes.num_experts = config.num_experts;
  shapes.num_experts_per_tok = config.num_experts_per_tok;
  shapes.decoder_sparse_step = config.decoder_sparse_step;
  shapes.mlp_only_layers = config.mlp_only_layers;
  shapes.tie_word_embeddings = config.tie_word_embeddings;
  const std::string key = shapes.ToJson();
  if (last != nullptr && key == *last_shapes) return last;
  delete last;
  last = nullptr;
  const std::string dir = ScratchDir() + "/config-model";
  std::filesystem::create_directories(dir);
  Status written = WriteSafetensors(dir + "/" + kSafetensorsSingleFile,
                                    MakeRandomQwen3MoeWeights(config, /*seed=*/1, DType::kBF16));
  if (!written.ok()) return nullptr;
  StatusOr<Checkpoint> opened = Checkpoint::Open(dir);
  if (!opened.ok()) return nullptr;
  last = new Checkpoint(std::move(opened).value());
  *last_shapes = key;
  return last;
}

}  // namespace

Outcome FuzzConfig(const uint8_t* data, size_t size) {
  if (size > kMaxJsonBytes) return Outcome::kSkipped;
  const Checkpoint& demo = DemoCheckpoint();
  StatusOr<JsonValue> json =
      ParseJson(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
  if (!json.ok()) return Outcome::kRejected;
  StatusOr<Qwen3MoeConfig> config = ParseQwen3MoeConfig(*json, "config.json");
  if (!config.ok()) return Outcome::kRejected;
  // The config must survive its own JSON form.
  StatusOr<JsonValue> again = ParseJson(config->ToJson(), "ToJson");
  StatusOr<Qwen3MoeConfig> reparsed =
      again.ok() ? ParseQwen3MoeConfig(*again, "ToJson") : StatusOr<Qwen3MoeConfig>(again.status());
  if (!reparsed.ok() || !(*reparsed == *config)) {
    std::fprintf(stderr, "config does not round-trip through ToJson: %s\n",
                 reparsed.ok() ? "different config" : reparsed.status().ToString().c_str());
    std::abort();
  }
  if (config->num_hidden_layers <= 64) (void)BuildQwen3MoeGraph(*config, demo);

  if (SmallModelElements(*config) < 0) return Outcome::kSkipped;
  const Checkpoint* own = OwnCheckpoint(*config);
  if (own == nullptr) return Outcome::kRejected;
  StatusOr<Graph> graph = BuildQwen3MoeGraph(*config, *own);
  if (!graph.ok()) {
    std::fprintf(stderr, "a valid config's own weights do not build: %s\n",
                 graph.status().ToString().c_str());
    std::abort();
  }
  Status verified = Verify(*graph);
  if (!verified.ok()) {
    std::fprintf(stderr, "the built graph does not verify: %s\n", verified.ToString().c_str());
    std::abort();
  }
  return Outcome::kAccepted;
}

}  // namespace moegraph::fuzz
