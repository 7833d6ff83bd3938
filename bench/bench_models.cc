// Benchmark model configs and the fast checkpoint writer.
#include "bench/bench_models.h"

#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "frontends/family.h"
#include "ir/dtype.h"
#include "support/half.h"

#ifndef MOEGRAPH_BENCH_CONFIG_DIR
#define MOEGRAPH_BENCH_CONFIG_DIR "bench/configs"
#endif

namespace moegraph::bench {
namespace {

// Every tensor of the checkpoint, in Hugging Face names and file order: the family's weight
// list (frontends/family.h), the same one the demo model is written from.
std::vector<WeightSpec> ListTensors(const Qwen3MoeConfig& c) {
  StatusOr<const ModelFamily*> family = FindModelFamily(c.architecture);
  return family.ok() ? (*family)->weight_list(c) : std::vector<WeightSpec>{};
}

DType CheckpointDType(const Qwen3MoeConfig& c) {
  if (c.torch_dtype == "float32") return DType::kF32;
  if (c.torch_dtype == "float16") return DType::kF16;
  return DType::kBF16;
}

uint64_t HashName(const std::string& name, uint64_t seed) {
  uint64_t hash = 0xCBF29CE484222325ull ^ seed;
  for (char ch : name) {
    hash ^= static_cast<unsigned char>(ch);
    hash *= 0x100000001B3ull;
  }
  return hash;
}

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Elements per independently seeded chunk.
constexpr int64_t kChunk = 1 << 16;

// Elements [begin, begin + count) of a tensor (count <= kChunk, begin a
// multiple of kChunk), as f32: offset + scale * uniform[-1, 1).
void FillChunk(uint64_t tensor_seed, int64_t begin, int64_t count, float offset, float scale,
               float* out) {
  uint64_t state = Mix(tensor_seed + static_cast<uint64_t>(begin / kChunk) * 0x9E3779B97F4A7C15ull);
  const float unit = scale / 32768.0f;
  for (int64_t i = 0; i < count; i += 4) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const uint64_t bits = state;
    for (int64_t j = 0; j < 4 && i + j < count; ++j) {
      const int16_t v = static_cast<int16_t>(bits >> (16 * j));
      out[i + j] = offset + static_cast<float>(v) * unit;
    }
  }
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status WriteCheckpoint(const Qwen3MoeConfig& config, const std::string& path, uint64_t seed) {
  const DType dtype = CheckpointDType(config);
  const size_t elem_bytes = DTypeBytes(dtype);
  MG_ASSIGN_OR_RETURN(const ModelFamily* family, FindModelFamily(config.architecture));
  const std::vector<WeightSpec> tensors = family->weight_list(config);
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (const WeightSpec& t : tensors) {
    std::string shape;
    for (int64_t d : t.shape)
      shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const uint64_t bytes = t.numel() * elem_bytes;
    header += ",\"" + t.name + "\":{\"dtype\":\"" + DTypeSafetensorsName(dtype) + "\",\"shape\":[" +
              shape + "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8 != 0)
    header += ' ';
  const std::string tmp = path + ".tmp";
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(tmp.c_str(), "wb"), std::fclose);
  if (!file) return FailedPrecondition(tmp + ": cannot create");
  const uint64_t header_size = header.size();
  bool ok = std::fwrite(&header_size, 8, 1, file.get()) == 1 &&
            std::fwrite(header.data(), 1, header.size(), file.get()) == header.size();
  // Generated and written in blocks of many chunks, chunks in parallel.
  constexpr int64_t kBlockChunks = 512;
  std::vector<float> values(kBlockChunks * kChunk);
  std::vector<uint16_t> halves(kBlockChunks * kChunk);
  for (const WeightSpec& t : tensors) {
    if (!ok) break;
    const int64_t fan_in = t.shape.back();
    const float offset_value = t.init == WeightInit::kNorm ? 1.0f : 0.0f;
    // Uniform[-a, a) has standard deviation a / sqrt(3).
    const float scale =
        t.init == WeightInit::kNorm || t.init == WeightInit::kBias ? 0.1f * std::sqrt(3.0f)
        : t.init == WeightInit::kLinear ? std::sqrt(3.0f / static_cast<float>(fan_in))
                                        : std::sqrt(3.0f);
    const uint64_t tensor_seed = HashName(t.name, seed);
    const int64_t numel = t.numel();
    for (int64_t block = 0; block < numel && ok; block += kBlockChunks * kChunk) {
      const int64_t block_elems = std::min<int64_t>(kBlockChunks * kChunk, numel - block);
      const int64_t num_chunks = (block_elems + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < num_chunks; ++c) {
        const int64_t begin = c * kChunk;
        const int64_t count = std::min<int64_t>(kChunk, block_elems - begin);
        float* v = values.data() + begin;
        FillChunk(tensor_seed, block + begin, count, offset_value, scale, v);
        if (dtype == DType::kBF16) {
          for (int64_t i = 0; i < count; ++i)
            halves[begin + i] = F32ToBf16(v[i]);
        } else if (dtype == DType::kF16) {
          for (int64_t i = 0; i < count; ++i)
            halves[begin + i] = F32ToF16(v[i]);
        }
      }
      const void* data = dtype == DType::kF32 ? static_cast<const void*>(values.data())
                                              : static_cast<const void*>(halves.data());
      ok = std::fwrite(data, elem_bytes, block_elems, file.get()) ==
           static_cast<size_t>(block_elems);
    }
  }
  if (!ok || std::fflush(file.get()) != 0) return DataLoss(tmp + ": write failed");
  file.reset();
  std::error_code error;
  std::filesystem::rename(tmp, path, error);
  if (error) return DataLoss(path + ": cannot rename: " + error.message());
  return Status::Ok();
}

}  // namespace

StatusOr<Qwen3MoeConfig> LoadBenchConfig(const std::string& name) {
  return LoadQwen3MoeConfig(std::string(MOEGRAPH_BENCH_CONFIG_DIR) + "/" + name + ".json");
}

uint64_t CheckpointBytes(const Qwen3MoeConfig& config) {
  uint64_t elems = 0;
  for (const WeightSpec& t : ListTensors(config))
    elems += t.numel();
  return elems * DTypeBytes(CheckpointDType(config));
}

uint64_t DecodeWeightBytesPerToken(const Qwen3MoeConfig& c) {
  const uint64_t hidden = c.hidden_size;
  const uint64_t q_dim = c.num_attention_heads * c.head_dim;
  const uint64_t kv_dim = c.num_key_value_heads * c.head_dim;
  uint64_t elems = hidden;  // one embedding row
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    elems += 2 * hidden + 2 * c.head_dim;                     // layer norms, q/k norms
    elems += (q_dim + 2 * kv_dim) * hidden + hidden * q_dim;  // q, k, v, o
    if (c.IsMoeLayer(layer)) {
      elems +=
          c.num_experts * hidden + c.num_experts_per_tok * 3 * c.moe_intermediate_size * hidden;
    } else {
      elems += 3 * c.intermediate_size * hidden;
    }
  }
  elems += hidden + c.vocab_size * hidden;  // final norm, LM head
  return elems * DTypeBytes(CheckpointDType(c));
}

Status EnsureBenchModel(const Qwen3MoeConfig& config, const std::string& dir, uint64_t seed,
                        bool* generated) {
  *generated = false;
  const std::string config_path = dir + "/config.json";
  const std::string weights_path = dir + "/model.safetensors";
  const std::string stamp_path = dir + "/bench-seed";
  const std::string config_json = config.ToJson();
  std::error_code error;
  if (ReadText(config_path) == config_json && ReadText(stamp_path) == std::to_string(seed) &&
      std::filesystem::exists(weights_path, error) &&
      std::filesystem::file_size(weights_path, error) > CheckpointBytes(config)) {
    return Status::Ok();
  }
  std::filesystem::create_directories(dir, error);
  if (error) return FailedPrecondition(dir + ": cannot create directory: " + error.message());
  std::filesystem::remove(stamp_path, error);
  MG_RETURN_IF_ERROR(WriteCheckpoint(config, weights_path, seed));
  std::ofstream(config_path, std::ios::binary) << config_json;
  std::ofstream(stamp_path, std::ios::binary) << seed;
  *generated = true;
  return Status::Ok();
}

}  // namespace moegraph::bench
