// The part of a Hugging Face config.json every decoder-only family shares (sizes, norm
// epsilon, RoPE, embeddings), parsed once with the same field names and messages for all.
#pragma once

#include <cstdint>
#include <string>

#include "frontends/config_reader.h"
#include "frontends/quantization.h"
#include "frontends/rope.h"
#include "support/status.h"

namespace moegraph {

struct DecoderConfig {
  std::string architecture;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // from config.json, or hidden_size / num_attention_heads
  int64_t max_position_embeddings = 32768;
  bool tie_word_embeddings = false;  // lm_head shares model.embed_tokens.weight
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  // The RoPE scaling (rope_scaling / rope_parameters: linear, yarn, llama3); its theta and
  // partial_rotary_factor are the two fields beside it, which take precedence.
  RopeParameters rope;
  // RoPE rotates the first int(head_dim * factor) values of each head; 1 unless the family
  // opts in (DecoderConfigOptions::partial_rotary).
  double partial_rotary_factor = 1.0;
  std::string torch_dtype;          // informational ("float32", "bfloat16"); may be empty
  QuantizationConfig quantization;  // quantization_config; scheme kNone without one

  bool operator==(const DecoderConfig&) const = default;
};

// What a family's config may carry beyond the shared fields.
struct DecoderConfigOptions {
  // A non-null `sliding_window` means windowed attention (Mixtral: no use_sliding_window
  // switch), refused like use_sliding_window.
  bool sliding_window_field = false;
  // partial_rotary_factor (top level or in rope_parameters / rope_scaling) is read into
  // DecoderConfig::partial_rotary_factor; otherwise a factor != 1 is Unimplemented.
  bool partial_rotary = false;
  // attention_bias (q/k/v projection biases) is the family's to read (GLM4-MoE); otherwise
  // true is Unimplemented.
  bool attention_bias_field = false;
  // The quantization_config quant_methods the family loads: fp8 everywhere but GPT-OSS,
  // mxfp4 (experts only) for GPT-OSS. Any other is Unimplemented naming the architecture.
  bool fp8 = true;
  bool mxfp4 = false;
};

// Checks that `architectures` lists `architecture` (Unimplemented listing it otherwise) and
// reads the shared fields into `config`, whose members hold the family's defaults. Sizes must
// be positive and fit int32 (plans store them so); num_key_value_heads divides
// num_attention_heads; head_dim is even (RoPE rotates pairs); with `partial_rotary`,
// int(head_dim * partial_rotary_factor) is even and >= 2. Features no family runs yet are
// Unimplemented naming the field: dynamic NTK RoPE, partial RoPE unless the family opts in, a
// hidden_act other than silu, attention_bias, sliding-window attention (use_sliding_window, or
// a non-null sliding_window with `sliding_window_field`). quantization_config is read by
// ParseQuantizationConfig (its errors name the field).
Status ParseDecoderConfig(const FieldReader& reader, const std::string& architecture,
                          DecoderConfig& config, const DecoderConfigOptions& options = {});

// Fails naming `field` unless `value` is in [1, INT32_MAX].
Status CheckSize(const FieldReader& reader, const char* field, int64_t value);

// Fails naming `field` when a [dims...] weight of 4-byte elements overflows int64 bytes.
Status CheckWeightBytes(const FieldReader& reader, const char* field,
                        std::initializer_list<int64_t> dims, const DecoderConfig& config);

}  // namespace moegraph
