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
#include <variant>
#include <vector>

#include "frontends/family.h"
#include "frontends/quantization.h"
#include "ir/dtype.h"
#include "support/half.h"
#include "support/json.h"
#include "support/mapped_file.h"

#ifndef MOEGRAPH_BENCH_CONFIG_DIR
#define MOEGRAPH_BENCH_CONFIG_DIR "bench/configs"
#endif

namespace moegraph::bench {
namespace {

// Every tensor of the checkpoint, in Hugging Face names and file order: the family's weight
// list (frontends/family.h), the same one the demo model is written from.
std::vector<WeightSpec> ListTensors(const BenchConfig& c) {
  StatusOr<const ModelFamily*> family = FindModelFamily(c.decoder().architecture);
  return family.ok() ? (*family)->weight_list(c.config) : std::vector<WeightSpec>{};
}

DType CheckpointDType(const BenchConfig& c) {
  if (c.decoder().torch_dtype == "float32") return DType::kF32;
  if (c.decoder().torch_dtype == "float16") return DType::kF16;
  return DType::kBF16;
}

// Whether tensor `t` is stored FP8 block-quantized, as the published DeepSeek-V3 FP8
// checkpoints store every linear: the config has an fp8 quantization_config and `t` is a 2-D
// linear weight outside modules_to_not_convert, other than lm_head and the router gates
// (kept f32 / bf16).
bool Fp8Tensor(const BenchConfig& c, const WeightSpec& t) {
  const QuantizationConfig& q = c.decoder().quantization;
  return q.scheme == QuantScheme::kFp8Block && t.init == WeightInit::kLinear && !t.keep_f32 &&
         t.shape.size() == 2 && t.name != "lm_head.weight" &&
         !t.name.ends_with(".mlp.gate.weight") && !q.NotConverted(t.name);
}

DType TensorDType(const BenchConfig& c, const WeightSpec& t) {
  if (Fp8Tensor(c, t)) return DType::kFp8E4M3;
  return WeightInitDType(t.init, t.keep_f32 ? DType::kF32 : CheckpointDType(c));
}

// The [ceil(N / block_rows), ceil(K / block_cols)] f32 scale_inv shape of an FP8 tensor.
std::vector<int64_t> Fp8ScaleShape(const BenchConfig& c, const WeightSpec& t) {
  const QuantizationConfig& q = c.decoder().quantization;
  return {(t.shape[0] + q.block_rows - 1) / q.block_rows,
          (t.shape[1] + q.block_cols - 1) / q.block_cols};
}

// Bytes of tensor `t` in the checkpoint, its FP8 scales included.
uint64_t TensorBytes(const BenchConfig& c, const WeightSpec& t) {
  uint64_t bytes = t.numel() * DTypeBytes(TensorDType(c, t));
  if (Fp8Tensor(c, t)) {
    const std::vector<int64_t> s = Fp8ScaleShape(c, t);
    bytes += static_cast<uint64_t>(s[0] * s[1]) * sizeof(float);
  }
  return bytes;
}

// The expert index e of a per-expert tensor name ("...mlp.experts.{e}.gate_proj.weight"), or -1.
int64_t ExpertIndex(const std::string& name) {
  const size_t at = name.find(".experts.");
  if (at == std::string::npos) return -1;
  size_t i = at + 9;
  int64_t e = 0;
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9')
    e = e * 10 + (name[i++] - '0');
  return e;
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

// Random bytes for tensor `t` (one per element), each passed through `byte`, written in
// blocks of buffer.size(), chunks in parallel.
template <typename ByteFn>
bool WriteRandomBytes(const WeightSpec& t, uint64_t tensor_seed, std::vector<uint8_t>& buffer,
                      FILE* file, ByteFn byte) {
  const int64_t numel = t.numel(), block_elems_max = static_cast<int64_t>(buffer.size());
  for (int64_t block = 0; block < numel; block += block_elems_max) {
    const int64_t block_elems = std::min<int64_t>(block_elems_max, numel - block);
    const int64_t num_chunks = (block_elems + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < num_chunks; ++c) {
      const int64_t begin = c * kChunk;
      const int64_t count = std::min<int64_t>(kChunk, block_elems - begin);
      uint64_t state = Mix(tensor_seed +
                           static_cast<uint64_t>((block + begin) / kChunk) * 0x9E3779B97F4A7C15ull);
      for (int64_t i = 0; i < count; i += 8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for (int64_t j = 0; j < 8 && i + j < count; ++j)
          buffer[begin + i + j] = byte(static_cast<uint8_t>(state >> (8 * j)));
      }
    }
    if (std::fwrite(buffer.data(), 1, block_elems, file) != static_cast<size_t>(block_elems))
      return false;
  }
  return true;
}

// An MXFP4 tensor (WeightInit::kMxfp4Blocks / kMxfp4Scales): random code bytes, or scales one
// of three around the centre for K = 32 x the last dim.
bool WriteMxfp4Tensor(const WeightSpec& t, uint64_t tensor_seed, std::vector<uint8_t>& buffer,
                      FILE* file) {
  if (t.init == WeightInit::kMxfp4Blocks) {
    return WriteRandomBytes(t, tensor_seed, buffer, file, [](uint8_t b) { return b; });
  }
  const int64_t k = 32 * t.shape.back();
  return WriteRandomBytes(t, tensor_seed, buffer, file,
                          [k](uint8_t b) { return Mxfp4ScaleByte(k, b % 3 - 1); });
}

// An FP8 tensor's data and then its weight_scale_inv: random e4m3 codes (every code but NaN)
// with one scale per block, amax / 448 for the linear init's bound
// sqrt(3 / in_features), so the dequantized weights lie in the bf16 tensor's range.
bool WriteFp8Tensor(const BenchConfig& config, const WeightSpec& t, uint64_t tensor_seed,
                    std::vector<uint8_t>& buffer, FILE* file) {
  // NaN -> +-448.
  if (!WriteRandomBytes(t, tensor_seed, buffer, file,
                        [](uint8_t b) { return (b & 0x7f) == 0x7f ? uint8_t(b ^ 0x01) : b; }))
    return false;
  const std::vector<int64_t> s = Fp8ScaleShape(config, t);
  const float bound = std::sqrt(3.0f / static_cast<float>(t.shape.back()));
  const std::vector<float> scales(static_cast<size_t>(s[0] * s[1]), bound / 448.0f);
  return std::fwrite(scales.data(), sizeof(float), scales.size(), file) == scales.size();
}

Status WriteCheckpoint(const BenchConfig& config, const std::string& path, uint64_t seed) {
  MG_ASSIGN_OR_RETURN(const ModelFamily* family, FindModelFamily(config.decoder().architecture));
  const std::vector<WeightSpec> tensors = family->weight_list(config.config);
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (const WeightSpec& t : tensors) {
    std::string shape;
    for (int64_t d : t.shape)
      shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const DType dtype = TensorDType(config, t);
    const uint64_t bytes = t.numel() * DTypeBytes(dtype);
    header += ",\"" + t.name + "\":{\"dtype\":\"" + DTypeSafetensorsName(dtype) + "\",\"shape\":[" +
              shape + "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
    if (Fp8Tensor(config, t)) {  // its weight_scale_inv right after it
      const std::vector<int64_t> s = Fp8ScaleShape(config, t);
      const uint64_t scale_bytes = static_cast<uint64_t>(s[0] * s[1]) * sizeof(float);
      header += ",\"" + t.name + "_scale_inv\":{\"dtype\":\"F32\",\"shape\":[" +
                std::to_string(s[0]) + "," + std::to_string(s[1]) + "],\"data_offsets\":[" +
                std::to_string(offset) + "," + std::to_string(offset + scale_bytes) + "]}";
      offset += scale_bytes;
    }
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
  std::vector<uint8_t> bytes8(kBlockChunks * kChunk);
  for (const WeightSpec& t : tensors) {
    if (!ok) break;
    if (Fp8Tensor(config, t)) {
      ok = WriteFp8Tensor(config, t, HashName(t.name, seed), bytes8, file.get());
      continue;
    }
    if (TensorDType(config, t) == DType::kU8) {
      ok = WriteMxfp4Tensor(t, HashName(t.name, seed), bytes8, file.get());
      continue;
    }
    const DType dtype = TensorDType(config, t);
    const size_t elem_bytes = DTypeBytes(dtype);
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

int64_t TopK(const ModelConfig& config) {
  return std::visit(
      [](const auto& c) -> int64_t {
        if constexpr (requires { c.num_experts_per_tok; }) {
          return c.num_experts_per_tok;
        } else if constexpr (requires { c.moe_k; }) {
          return c.moe_k;
        } else {
          return 0;
        }
      },
      config);
}

StatusOr<BenchConfig> LoadBenchConfig(const std::string& name) {
  const std::string path = std::string(MOEGRAPH_BENCH_CONFIG_DIR) + "/" + name + ".json";
  BenchConfig bench;
  MG_ASSIGN_OR_RETURN(bench.json, ReadFileToString(path));
  MG_ASSIGN_OR_RETURN(const JsonValue json, ParseJson(bench.json, path));
  MG_ASSIGN_OR_RETURN(const ModelFamily* family, FamilyForConfig(json, path));
  MG_ASSIGN_OR_RETURN(bench.config, family->parse_config(json, path));
  return bench;
}

uint64_t CheckpointBytes(const BenchConfig& config) {
  uint64_t bytes = 0;
  for (const WeightSpec& t : ListTensors(config))
    bytes += TensorBytes(config, t);
  return bytes;
}

KvElementsPerToken KvElementsPerTokenPerLayer(const BenchConfig& c) {
  if (const auto* d = std::get_if<DeepseekV3Config>(&c.config)) {
    return {d->kv_lora_rank + d->qk_rope_head_dim,
            d->num_attention_heads * (d->qk_head_dim() + d->v_head_dim)};
  }
  const DecoderConfig& d = c.decoder();
  return {2 * d.num_key_value_heads * d.head_dim, 2 * d.num_attention_heads * d.head_dim};
}

uint64_t DecodeWeightBytesPerToken(const BenchConfig& c) {
  const DecoderConfig& d = c.decoder();
  const int64_t top_k = TopK(c.config);
  uint64_t bytes = 0;
  for (const WeightSpec& t : ListTensors(c)) {
    const uint64_t elem_bytes = DTypeBytes(TensorDType(c, t));
    if (t.name == "model.embed_tokens.weight") {
      const uint64_t rows = d.tie_word_embeddings ? 1 + d.vocab_size : 1;  // + the tied LM head
      bytes += rows * d.hidden_size * elem_bytes;
      continue;
    }
    const int64_t expert = ExpertIndex(t.name);
    if (expert >= 0 && expert >= top_k) continue;  // a token reads top_k experts per layer
    if (expert < 0 && top_k > 0 && t.name.find(".experts.") != std::string::npos &&
        !t.shape.empty()) {
      // A fused [E, ...] stack (GPT-OSS's gate_up_proj, down_proj and their biases): top_k of
      // its E experts.
      bytes += TensorBytes(c, t) / static_cast<uint64_t>(t.shape[0]) * top_k;
      continue;
    }
    bytes += TensorBytes(c, t);
  }
  return bytes;
}

Status EnsureBenchModel(const BenchConfig& config, const std::string& dir, uint64_t seed,
                        bool* generated) {
  *generated = false;
  const std::string config_path = dir + "/config.json";
  const std::string weights_path = dir + "/model.safetensors";
  const std::string stamp_path = dir + "/bench-seed";
  const std::string& config_json = config.json;
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
