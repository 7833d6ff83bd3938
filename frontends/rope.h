// RoPE parameters as Hugging Face configs write them (`rope_scaling` in transformers 4,
// `rope_parameters` in 5), and the one place their math lives: the inverse frequencies and the
// attention factor of each scaling type, as transformers' ROPE_INIT_FUNCTIONS compute them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "frontends/config_reader.h"
#include "ir/rope_freq.h"
#include "support/status.h"

namespace moegraph {

enum class RopeType {
  kDefault,  // theta^(-2i/d)
  kLinear,   // position interpolation: default / factor
  kDynamic,  // NTK-aware: theta grown with the sequence length past max_position_embeddings
  kYarn,     // NTK-by-parts ramp between interpolation and extrapolation, plus an attention factor
  kLlama3,   // Llama 3.1: low frequencies / factor, high kept, a smooth ramp between
};
const char* RopeTypeName(RopeType type);

struct RopeParameters {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;  // rotate the first int(head_dim * factor) dims only
  double factor = 1.0;                 // linear, dynamic, yarn, llama3
  // yarn, llama3: the pre-training context; 0 means max_position_embeddings.
  int64_t original_max_position_embeddings = 0;
  // yarn
  std::optional<double> attention_factor;  // given, or derived from factor and mscale terms
  double mscale = 0;                       // 0: absent
  double mscale_all_dim = 0;               // 0: absent
  double beta_fast = 32;
  double beta_slow = 1;
  bool truncate = true;
  // llama3
  double low_freq_factor = 1;
  double high_freq_factor = 4;

  bool operator==(const RopeParameters&) const = default;
};

// Reads `rope_scaling` then `rope_parameters` (either may be absent or null; a key of the
// second overrides the first) over the top-level `rope_theta` (given as `theta`, already read
// by the family's parser) and `partial_rotary_factor`, the way transformers'
// standardize_rope_params does: original_max_position_embeddings defaults to
// `max_position_embeddings`, and yarn's factor to their ratio. `type_field`, when not null,
// receives the field that set a non-default type ("" for none). InvalidArgument naming the
// field for a mistyped or out-of-range value, Unimplemented for a rope type RopeType lacks
// (longrope, ...).
StatusOr<RopeParameters> ParseRopeParameters(const FieldReader& reader, double theta,
                                             int64_t max_position_embeddings,
                                             std::string* type_field = nullptr);

// The rope op's scaling attributes (RopeParams' scaling, factor, ramp_low/high,
// attention_factor; ir/rope_freq.h) for `rope` rotating `rotary_dim` values: YaRN's
// correction-dim ramp and attention factor, Llama 3's wavelength ramp, linear's factor.
// Unimplemented for dynamic NTK (its table depends on the sequence length).
struct RopeOpScaling {
  int64_t scaling = kRopeUnscaled;
  double factor = 1;
  double ramp_low = 0;
  double ramp_high = 0;
  double attention_factor = 1;
};
StatusOr<RopeOpScaling> RopeScalingForOp(const RopeParameters& rope, int64_t rotary_dim);

// What RoPE rotates by: `inv_freq` [rotary_dim / 2] and the factor cos/sin are scaled by.
struct RopeFrequencies {
  int64_t rotary_dim = 0;  // int(head_dim * partial_rotary_factor)
  std::vector<double> inv_freq;
  double attention_factor = 1.0;
};

// The frequencies for a head of `head_dim` in a model of `max_position_embeddings`; for
// dynamic NTK, at sequence length `seq_len` (0: max_position_embeddings, the initial value).
StatusOr<RopeFrequencies> ComputeRopeFrequencies(const RopeParameters& rope, int64_t head_dim,
                                                 int64_t max_position_embeddings,
                                                 int64_t seq_len = 0);

}  // namespace moegraph
