// The shared decoder config fields: one reader of sizes, RoPE and the refused features.
#include "frontends/decoder_config.h"

#include <algorithm>
#include <vector>

#include "frontends/rope.h"
#include "support/format.h"
#include "support/strings.h"

namespace moegraph {
namespace {

// Plans store sizes as int32 (PlanModelInfo), and the runtime does arithmetic on them.
constexpr int64_t kMaxSize = INT32_MAX;

}  // namespace

Status CheckSize(const FieldReader& reader, const char* field, int64_t value) {
  if (value <= 0) return reader.Error(field, Format("must be positive, got {}", value));
  if (value > kMaxSize) {
    return reader.Error(field, Format("is {}, expected at most {}", value, kMaxSize));
  }
  return Status::Ok();
}

Status CheckWeightBytes(const FieldReader& reader, const char* field,
                        std::initializer_list<int64_t> dims, const DecoderConfig& config) {
  int64_t bytes = 4;
  for (int64_t d : dims) {
    if (__builtin_mul_overflow(bytes, d, &bytes)) {
      return reader.Error(field, Format("makes a weight whose byte size overflows int64 (with "
                                        "hidden_size = {})",
                                        config.hidden_size));
    }
  }
  return Status::Ok();
}

Status ParseDecoderConfig(const FieldReader& reader, const std::string& architecture,
                          DecoderConfig& config, const DecoderConfigOptions& options) {
  // Architecture first: a config of another model fails here rather than on its fields.
  MG_ASSIGN_OR_RETURN(const std::vector<std::string> architectures, reader.Architectures());
  if (std::find(architectures.begin(), architectures.end(), architecture) == architectures.end()) {
    return reader.UnsupportedArchitecture(Format("\"{}\"", architecture));
  }
  config.architecture = architecture;

  MG_RETURN_IF_ERROR(reader.RequiredInt("vocab_size", config.vocab_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("hidden_size", config.hidden_size));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_hidden_layers", config.num_hidden_layers));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_attention_heads", config.num_attention_heads));
  MG_RETURN_IF_ERROR(reader.RequiredInt("num_key_value_heads", config.num_key_value_heads));
  MG_RETURN_IF_ERROR(reader.OptionalInt("max_position_embeddings", config.max_position_embeddings));
  MG_RETURN_IF_ERROR(reader.OptionalBool("tie_word_embeddings", config.tie_word_embeddings));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("rms_norm_eps", config.rms_norm_eps));
  MG_RETURN_IF_ERROR(reader.OptionalDouble("rope_theta", config.rope_theta));
  MG_RETURN_IF_ERROR(reader.OptionalString("torch_dtype", config.torch_dtype));
  if (config.torch_dtype.empty()) {
    MG_RETURN_IF_ERROR(reader.OptionalString("dtype", config.torch_dtype));  // transformers 5
  }

  MG_ASSIGN_OR_RETURN(config.quantization, ParseQuantizationConfig(reader));
  const QuantScheme scheme = config.quantization.scheme;
  if ((scheme == QuantScheme::kFp8Block && !options.fp8) ||
      (scheme == QuantScheme::kMxfp4 && !options.mxfp4)) {
    return reader.Unsupported(
        "quantization_config",
        Format("has quant_method \"{}\", which {} checkpoints do not use; supported: {}",
               scheme == QuantScheme::kMxfp4 ? "mxfp4" : "fp8", architecture,
               options.mxfp4 ? "\"mxfp4\" (experts)" : "\"fp8\" (block-scaled e4m3)"));
  }

  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"max_position_embeddings", config.max_position_embeddings},
  };
  for (const auto& [field, value] : sizes) {
    MG_RETURN_IF_ERROR(CheckSize(reader, field, value));
  }
  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    return reader.Error("num_key_value_heads",
                        Format("must divide num_attention_heads ({}), got {}",
                               config.num_attention_heads, config.num_key_value_heads));
  }

  if (reader.Get("head_dim") != nullptr) {
    MG_RETURN_IF_ERROR(reader.OptionalInt("head_dim", config.head_dim));
    if (config.head_dim <= 0) {
      return reader.Error("head_dim", Format("must be positive, got {}", config.head_dim));
    }
  } else {
    if (config.hidden_size % config.num_attention_heads != 0) {
      return reader.Error("head_dim", Format("is absent and hidden_size ({}) is not a multiple of "
                                             "num_attention_heads ({}); give head_dim explicitly",
                                             config.hidden_size, config.num_attention_heads));
    }
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }
  if (config.head_dim > kMaxSize) {
    return reader.Error("head_dim",
                        Format("is {}, expected at most {}", config.head_dim, kMaxSize));
  }
  // The largest weights' byte sizes (f32 at most) must fit in int64.
  MG_RETURN_IF_ERROR(
      CheckWeightBytes(reader, "vocab_size", {config.vocab_size, config.hidden_size}, config));
  MG_RETURN_IF_ERROR(
      CheckWeightBytes(reader, "num_attention_heads",
                       {config.num_attention_heads, config.head_dim, config.hidden_size}, config));
  if (config.head_dim % 2 != 0) {
    return reader.Error("head_dim",
                        Format("must be even (RoPE rotates pairs), got {}", config.head_dim));
  }

  if (!(config.rms_norm_eps > 0)) {
    return reader.Error("rms_norm_eps", Format("must be positive, got {}",
                                               JsonValue::Double(config.rms_norm_eps).Dump()));
  }
  // The rope op runs default, linear, yarn and llama3 RoPE (ir/rope_freq.h); dynamic NTK,
  // whose table grows with the sequence, is parsed (so its fields are checked) and refused
  // rather than run unscaled. A partial RoPE runs where the family opts in.
  std::string rope_field;
  MG_ASSIGN_OR_RETURN(
      RopeParameters rope,
      ParseRopeParameters(reader, config.rope_theta, config.max_position_embeddings, &rope_field));
  if (rope.type == RopeType::kDynamic) {
    return reader.Unsupported(
        rope_field, Format("has rope_type \"dynamic\" ({}); NTK-aware RoPE rescales theta with "
                           "the sequence length, and the rope op rotates by one fixed table "
                           "(default, linear, yarn and llama3 run)",
                           reader.Get(rope_field)->Dump()));
  }
  if (rope.partial_rotary_factor != 1.0) {
    if (!options.partial_rotary) {
      return reader.Unsupported(
          "partial_rotary_factor",
          Format("is {}; {} rotates the whole head (partial rotary is not "
                 "supported for this architecture)",
                 JsonValue::Double(rope.partial_rotary_factor).Dump(), architecture));
    }
    // transformers: dim = int(head_dim * partial_rotary_factor).
    const auto rotary_dim =
        static_cast<int64_t>(static_cast<double>(config.head_dim) * rope.partial_rotary_factor);
    if (rotary_dim < 2 || rotary_dim % 2 != 0) {
      return reader.Error("partial_rotary_factor",
                          Format("is {}: int(head_dim {} * factor) = {} rotated values, expected "
                                 "an even count >= 2",
                                 JsonValue::Double(rope.partial_rotary_factor).Dump(),
                                 config.head_dim, rotary_dim));
    }
    config.partial_rotary_factor = rope.partial_rotary_factor;
  }
  config.rope_theta = rope.theta;
  config.rope = rope;
  if (!(config.rope_theta > 0)) {
    return reader.Error("rope_theta", Format("must be positive, got {}",
                                             JsonValue::Double(config.rope_theta).Dump()));
  }

  // Features the engine does not implement.
  std::string hidden_act = "silu";
  MG_RETURN_IF_ERROR(reader.OptionalString("hidden_act", hidden_act));
  if (hidden_act != "silu") {
    return reader.Unsupported(
        "hidden_act", Format("is \"{}\"; only \"silu\" is supported", EscapeBytes(hidden_act)));
  }
  bool attention_bias = false;
  MG_RETURN_IF_ERROR(reader.OptionalBool("attention_bias", attention_bias));
  if (attention_bias && !options.attention_bias_field) {
    return reader.Unsupported("attention_bias", "is true; attention projections without bias only");
  }
  bool use_sliding_window = false;
  MG_RETURN_IF_ERROR(reader.OptionalBool("use_sliding_window", use_sliding_window));
  if (use_sliding_window) {
    return reader.Unsupported("use_sliding_window",
                              "is true; sliding-window attention is not supported");
  }
  // Families whose attention is windowed whenever sliding_window is set (Mixtral) have no
  // use_sliding_window switch.
  if (options.sliding_window_field && reader.Get("sliding_window") != nullptr) {
    return reader.Unsupported("sliding_window",
                              Format("is {}; sliding-window attention is not supported (null only)",
                                     reader.Get("sliding_window")->Dump()));
  }
  return Status::Ok();
}

}  // namespace moegraph
