// Shared fixtures of the libFuzzer targets (see fuzz_common.h).
#include "fuzz/fuzz_common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "checkpoint/safetensors.h"
#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "support/mapped_file.h"

namespace moegraph::fuzz {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fuzz fixture: %s\n", what.c_str());
  std::abort();
}

// The demo's smallest tensors: RMSNorm weights of 128 and 32 elements.
std::vector<TensorToWrite> SmallDemoTensors() {
  std::vector<TensorToWrite> small;
  for (TensorToWrite& t : MakeRandomQwen3MoeWeights(DemoModelConfig(), /*seed=*/7, DType::kBF16)) {
    if (t.bytes.size() <= 256 && small.size() < 6) small.push_back(std::move(t));
  }
  return small;
}

}  // namespace

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    std::string root = "/dev/shm";
    if (::access(root.c_str(), W_OK) != 0) {
      const char* tmp = std::getenv("TMPDIR");
      root = tmp != nullptr ? tmp : "/tmp";
    }
    std::string pattern = root + "/moegraph-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) Die("cannot create a directory in " + root);
    auto* path = new std::string(pattern);
    std::atexit([] {
      std::error_code ignored;
      fs::remove_all(ScratchDir(), ignored);
    });
    return path;
  }();
  return *dir;
}

void WriteFileOrDie(const std::string& path, std::string_view bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) Die("cannot write " + path);
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok) Die("cannot write " + path);
}

const std::string& DemoModelDir() {
  static const std::string* dir = [] {
    auto* path = new std::string(ScratchDir() + "/demo-model");
    Status written = WriteDemoModel(*path);
    if (!written.ok()) Die(written.ToString());
    return path;
  }();
  return *dir;
}

KeySetOptions SmallDemoKeys() {
  KeySetOptions keys;
  keys.chunk_size = 16;
  keys.max_chunks = 1;
  keys.prefill_buckets = {4};
  keys.decode_buckets = {1};
  keys.max_prefill_seqs = 1;
  return keys;
}

const Plan& SmallDemoPlan() {
  static const Plan* plan = [] {
    StatusOr<HfModel> model = LoadHfModel(DemoModelDir());
    if (!model.ok()) Die(model.status().ToString());
    CompileModelOptions options;
    options.keys = SmallDemoKeys();
    options.pipeline.chunk_size = options.keys.chunk_size;
    StatusOr<Plan> compiled = CompileModel(*model, options);
    if (!compiled.ok()) Die(compiled.status().ToString());
    return new Plan(std::move(compiled).value());
  }();
  return *plan;
}

const Plan& SmallDemoInt8Plan() {
  static const Plan* plan = [] {
    StatusOr<HfModel> model = LoadHfModel(DemoModelDir());
    if (!model.ok()) Die(model.status().ToString());
    CompileModelOptions options;
    options.keys = SmallDemoKeys();
    options.pipeline.chunk_size = options.keys.chunk_size;
    options.weights = WeightFormat::kInt8;
    options.packed_weights_path = ScratchDir() + "/demo.int8.safetensors";
    StatusOr<Plan> compiled = CompileModel(*model, options);
    if (!compiled.ok()) Die(compiled.status().ToString());
    return new Plan(std::move(compiled).value());
  }();
  return *plan;
}

const std::string& ShardedCheckpointDir() {
  static const std::string* dir = [] {
    auto* path = new std::string(ScratchDir() + "/sharded");
    fs::create_directories(*path);
    std::vector<TensorToWrite> tensors = SmallDemoTensors();
    const size_t half = tensors.size() / 2;
    std::vector<TensorToWrite> first(tensors.begin(), tensors.begin() + half);
    std::vector<TensorToWrite> second(tensors.begin() + half, tensors.end());
    Status a = WriteSafetensors(*path + "/model-00001-of-00002.safetensors", first);
    Status b = WriteSafetensors(*path + "/model-00002-of-00002.safetensors", second);
    if (!a.ok()) Die(a.ToString());
    if (!b.ok()) Die(b.ToString());
    return path;
  }();
  return *dir;
}

std::string ShardedCheckpointIndex() {
  std::vector<TensorToWrite> tensors = SmallDemoTensors();
  const size_t half = tensors.size() / 2;
  std::string json = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  for (size_t i = 0; i < tensors.size(); ++i) {
    json += (i ? ", \"" : "\"") + tensors[i].name + "\": \"model-0000" + (i < half ? "1" : "2") +
            "-of-00002.safetensors\"";
  }
  return json + "}}";
}

std::string SmallSafetensorsFile() {
  const std::string path = ScratchDir() + "/small.safetensors";
  Status written = WriteSafetensors(path, SmallDemoTensors(), {{"format", "pt"}});
  if (!written.ok()) Die(written.ToString());
  StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) Die(bytes.status().ToString());
  return *bytes;
}

SpecKey IrKey(uint8_t selector) {
  SpecKey key;
  switch (selector % kNumIrKeys) {
    case 0:  // decode, one token
      key.phase = MoePhase::kDecode;
      key.token_bucket = key.seq_bucket = 1;
      break;
    case 1:  // prefill, 4 tokens of 1 sequence
      key.phase = MoePhase::kPrefill;
      key.token_bucket = 4;
      key.seq_bucket = 1;
      break;
    default:  // prefill over two MoE chunks of 16 rows
      key.phase = MoePhase::kPrefill;
      key.moe_num_chunk = key.max_moe_num_chunk = 2;
      key.token_bucket = 32;
      key.seq_bucket = 4;
      break;
  }
  return key;
}

}  // namespace moegraph::fuzz
