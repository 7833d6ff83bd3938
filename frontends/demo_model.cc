// Demo model config, deterministic random weights and the checkpoint writer.
#include "frontends/demo_model.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "frontends/family.h"
#include "support/half.h"
#include "support/mapped_file.h"

namespace moegraph {

// cmake/embed_file.cmake's output for frontends/data/demo_tokenizer.json.
extern const char kDemoTokenizerJson[];
extern const size_t kDemoTokenizerJson_size;

namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; the writer copies host floats as they are");

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// FNV-1a, to give each tensor name its own stream.
uint64_t HashName(const std::string& name) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (char c : name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ull;
  }
  return hash;
}

// Approximately standard normal samples: the sum of four uniform 32-bit integers (Irwin-Hall,
// bounded to +-3.46 standard deviations), centered and scaled. Only integer arithmetic and one
// correctly rounded multiply, so the output is identical on every platform and compiler, which
// std::normal_distribution and libm-based Box-Muller do not promise.
class NormalStream {
 public:
  NormalStream(uint64_t seed, const std::string& name) : state_(seed ^ HashName(name)) {
    SplitMix64(state_);
  }

  double Next() {
    int64_t sum = 0;
    for (int i = 0; i < 2; ++i) {
      uint64_t bits = SplitMix64(state_);
      sum += static_cast<int64_t>(bits & 0xFFFFFFFFu) + static_cast<int64_t>(bits >> 32);
    }
    // Four uniforms on [0, 2^32 - 1] have mean 2 (2^32 - 1) and standard deviation
    // 2^32 / sqrt(3) (to within 2^-32 relative).
    int64_t centered = 2 * sum - 4 * static_cast<int64_t>(0xFFFFFFFFu);  // exact, odd-symmetric
    return static_cast<double>(centered) * kScale;
  }

  // 64 uniformly random bits (the MXFP4 writers' code bytes and scale jitter).
  uint64_t NextBits() { return SplitMix64(state_); }

 private:
  static constexpr double kScale = 1.7320508075688772 / 8589934592.0;  // sqrt(3) / 2^33
  uint64_t state_;
};

TensorToWrite MakeTensor(const std::string& name, std::vector<int64_t> shape, WeightInit init,
                         uint64_t seed, DType dtype) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) dtype = DType::kF32;
  int64_t numel = 1;
  for (int64_t dim : shape)
    numel *= dim;
  if (init == WeightInit::kMxfp4Blocks || init == WeightInit::kMxfp4Scales) {
    // Bytes from the tensor's stream: code bytes uniform over 0..255, scales one of three
    // around the centre for K = 32 x the last dim.
    TensorToWrite tensor{name, DType::kU8, shape, {}};
    tensor.bytes.resize(static_cast<size_t>(numel));
    NormalStream stream(seed, name);
    const int64_t k = 32 * shape.back();
    for (int64_t i = 0; i < numel; ++i) {
      const uint64_t bits = stream.NextBits();
      tensor.bytes[static_cast<size_t>(i)] = static_cast<char>(
          init == WeightInit::kMxfp4Blocks ? bits & 0xff
                                           : Mxfp4ScaleByte(k, static_cast<int>(bits % 3) - 1));
    }
    return tensor;
  }
  // Linear weights are [out_features, in_features]; fan_in is the last dimension.
  const double stddev = init == WeightInit::kLinear
                            ? 1.0 / std::sqrt(static_cast<double>(shape.back()))
                        : init == WeightInit::kNorm || init == WeightInit::kBias ? 0.1
                                                                                 : 1.0;
  const double mean = init == WeightInit::kNorm ? 1.0 : 0.0;

  TensorToWrite tensor{name, dtype, std::move(shape), {}};
  tensor.bytes.resize(static_cast<size_t>(numel) * DTypeBytes(dtype));
  char* out = tensor.bytes.data();
  NormalStream stream(seed, name);
  for (int64_t i = 0; i < numel; ++i) {
    double scaled = stream.Next() * stddev;
    float value = static_cast<float>(mean + scaled);
    if (dtype == DType::kF32) {
      std::memcpy(out + 4 * i, &value, 4);
    } else {
      uint16_t half = dtype == DType::kBF16 ? F32ToBf16(value) : F32ToF16(value);
      std::memcpy(out + 2 * i, &half, 2);
    }
  }
  return tensor;
}

const char* TorchDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return "bfloat16";
    case DType::kF16:
      return "float16";
    default:
      return "float32";
  }
}

}  // namespace

std::string_view DemoTokenizerJson() {
  return std::string_view(kDemoTokenizerJson, kDemoTokenizerJson_size);
}

Qwen3MoeConfig DemoModelConfig() {
  Qwen3MoeConfig config;
  config.vocab_size = 512;
  config.hidden_size = 128;
  config.intermediate_size = 256;
  config.moe_intermediate_size = 64;
  config.num_hidden_layers = 4;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 32;
  config.num_experts = 8;
  config.num_experts_per_tok = 2;
  config.norm_topk_prob = true;
  config.mlp_only_layers = {2};
  config.decoder_sparse_step = 1;
  config.rope_theta = 10000.0;
  config.rms_norm_eps = 1e-6;
  config.tie_word_embeddings = false;
  config.max_position_embeddings = 2048;
  return config;
}

std::vector<TensorToWrite> MakeRandomWeights(const std::vector<WeightSpec>& weights, uint64_t seed,
                                             DType dtype) {
  std::vector<TensorToWrite> tensors;
  tensors.reserve(weights.size());
  for (const WeightSpec& w : weights)
    tensors.push_back(MakeTensor(w.name, w.shape, w.init, seed, w.keep_f32 ? DType::kF32 : dtype));
  return tensors;
}

std::vector<TensorToWrite> MakeRandomQwen3MoeWeights(const Qwen3MoeConfig& config, uint64_t seed,
                                                     DType dtype) {
  StatusOr<const ModelFamily*> family = FindModelFamily(config.architecture);
  if (!family.ok()) return {};
  return MakeRandomWeights((*family)->weight_list(config), seed, dtype);
}

std::string DemoDirName(const std::string& family) {
  return family.empty() ? "demo-model" : "demo-model-" + family;
}

namespace {

// A family's demo: its demo_config with torch_dtype, and its weight list's random tensors.
struct FamilyDemo {
  std::string config_json;
  std::vector<TensorToWrite> tensors;
};

StatusOr<FamilyDemo> MakeFamilyDemo(const std::string& name, const DemoModelOptions& options) {
  MG_ASSIGN_OR_RETURN(const ModelFamily* family, FindModelFamilyByName(name));
  if (family->demo_config.empty()) {
    return Unimplemented("model family \"" + name + "\" has no demo config");
  }
  const std::string source = "the " + name + " demo config";
  MG_ASSIGN_OR_RETURN(JsonValue json, ParseJson(family->demo_config, source));
  json.Set("torch_dtype", JsonValue::String(TorchDTypeName(options.dtype)));
  MG_ASSIGN_OR_RETURN(ModelConfig config, family->parse_config(json, source));
  return FamilyDemo{json.Dump(/*indent=*/2) + "\n",
                    MakeRandomWeights(family->weight_list(config), options.seed, options.dtype)};
}

}  // namespace

Status WriteDemoModel(const std::string& dir, const DemoModelOptions& options) {
  if (options.dtype != DType::kF32 && options.dtype != DType::kF16 &&
      options.dtype != DType::kBF16) {
    return InvalidArgument(std::string("demo model dtype must be f32, f16 or bf16, got ") +
                           DTypeName(options.dtype));
  }
  FamilyDemo demo;
  if (options.family.empty()) {
    Qwen3MoeConfig config = DemoModelConfig();
    config.torch_dtype = TorchDTypeName(options.dtype);
    demo.config_json = config.ToJson();
    demo.tensors = MakeRandomQwen3MoeWeights(config, options.seed, options.dtype);
  } else {
    MG_ASSIGN_OR_RETURN(demo, MakeFamilyDemo(options.family, options));
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return FailedPrecondition(dir + ": cannot create directory: " + error.message());

  MG_RETURN_IF_ERROR(WriteFileAtomically(dir + "/config.json", demo.config_json));
  MG_RETURN_IF_ERROR(WriteFileAtomically(dir + "/tokenizer.json", DemoTokenizerJson()));
  // Qwen-style: no BOS token; <|endoftext|> ends generation.
  MG_RETURN_IF_ERROR(WriteFileAtomically(dir + "/tokenizer_config.json",
                                         "{\n  \"add_bos_token\": false,\n  \"bos_token\": null,\n "
                                         " \"eos_token\": \"<|endoftext|>\"\n}\n"));
  MG_RETURN_IF_ERROR(
      WriteFileAtomically(dir + "/generation_config.json",
                          "{\n  \"eos_token_id\": " + std::to_string(kDemoEosTokenId) + "\n}\n"));
  return WriteSafetensors(dir + "/" + kSafetensorsSingleFile, demo.tensors, {{"format", "pt"}});
}

}  // namespace moegraph
