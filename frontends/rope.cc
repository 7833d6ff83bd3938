// RoPE parameter parsing and the inverse-frequency math of every scaling type. Each formula
// follows transformers' modeling_rope_utils (5.24), computed in double; tests hold it to
// transformers' float32 output (tests/data/rope/, tools/make_rope_goldens.py).
#include "frontends/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace moegraph {
namespace {

struct NumberKey {
  const char* key;
  double RopeParameters::*member;
};

constexpr NumberKey kNumberKeys[] = {
    {"rope_theta", &RopeParameters::theta},
    {"partial_rotary_factor", &RopeParameters::partial_rotary_factor},
    {"factor", &RopeParameters::factor},
    {"mscale", &RopeParameters::mscale},
    {"mscale_all_dim", &RopeParameters::mscale_all_dim},
    {"beta_fast", &RopeParameters::beta_fast},
    {"beta_slow", &RopeParameters::beta_slow},
    {"low_freq_factor", &RopeParameters::low_freq_factor},
    {"high_freq_factor", &RopeParameters::high_freq_factor},
};

StatusOr<RopeType> ParseType(const FieldReader& reader, std::string_view field,
                             const std::string& name) {
  if (name == "default") return RopeType::kDefault;
  if (name == "linear") return RopeType::kLinear;
  if (name == "dynamic") return RopeType::kDynamic;
  if (name == "yarn") return RopeType::kYarn;
  if (name == "llama3") return RopeType::kLlama3;
  return reader.Unsupported(
      field, "has rope_type \"" + name + "\"; supported: default, linear, dynamic, yarn, llama3");
}

// Applies the keys of the object `field` onto `rope`. `has_factor` records whether a factor
// was given (yarn derives it otherwise).
Status ApplyObject(const FieldReader& reader, std::string_view field, RopeParameters& rope,
                   bool& has_factor, std::string* type_field) {
  const JsonValue* object = reader.Get(field);
  if (object == nullptr) return Status::Ok();
  if (!object->is_object()) {
    return reader.Error(field,
                        std::string("must be null or an object, found ") + object->DescribeKind());
  }
  auto get = [&](const char* key) -> const JsonValue* {
    const JsonValue* value = object->Find(key);
    return value == nullptr || value->is_null() ? nullptr : value;
  };
  const JsonValue* type = get("rope_type");
  if (type == nullptr) type = get("type");
  if (type != nullptr) {
    if (!type->is_string()) {
      return reader.Error(field,
                          std::string("rope_type must be a string, found ") + type->DescribeKind());
    }
    MG_ASSIGN_OR_RETURN(rope.type, ParseType(reader, field, type->as_string()));
    if (type_field != nullptr && rope.type != RopeType::kDefault) *type_field = std::string(field);
  }
  for (const NumberKey& k : kNumberKeys) {
    const JsonValue* value = get(k.key);
    if (value == nullptr) continue;
    if (!value->is_number()) {
      return reader.Error(field,
                          std::string(k.key) + " must be a number, found " + value->DescribeKind());
    }
    rope.*k.member = value->as_double();
    if (std::string_view(k.key) == "factor") has_factor = true;
  }
  if (const JsonValue* value = get("attention_factor")) {
    if (!value->is_number()) {
      return reader.Error(
          field, std::string("attention_factor must be a number, found ") + value->DescribeKind());
    }
    rope.attention_factor = value->as_double();
  }
  if (const JsonValue* value = get("original_max_position_embeddings")) {
    if (!value->is_int()) {
      return reader.Error(
          field, std::string("original_max_position_embeddings must be an integer, found ") +
                     value->DescribeKind());
    }
    rope.original_max_position_embeddings = value->as_int();
  }
  if (const JsonValue* value = get("truncate")) {
    if (!value->is_bool()) {
      return reader.Error(
          field, std::string("truncate must be true or false, found ") + value->DescribeKind());
    }
    rope.truncate = value->as_bool();
  }
  return Status::Ok();
}

std::string Num(double value) {
  return JsonValue::Double(value).Dump();
}

// yarn's attention scaling: 0.1 * mscale * ln(scale) + 1 for scale > 1.
double YarnMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

const char* RopeTypeName(RopeType type) {
  switch (type) {
    case RopeType::kDefault:
      return "default";
    case RopeType::kLinear:
      return "linear";
    case RopeType::kDynamic:
      return "dynamic";
    case RopeType::kYarn:
      return "yarn";
    case RopeType::kLlama3:
      return "llama3";
  }
  return "?";
}

StatusOr<RopeParameters> ParseRopeParameters(const FieldReader& reader, double theta,
                                             int64_t max_position_embeddings,
                                             std::string* type_field) {
  RopeParameters rope;
  rope.theta = theta;
  if (type_field != nullptr) type_field->clear();
  MG_RETURN_IF_ERROR(reader.OptionalDouble("partial_rotary_factor", rope.partial_rotary_factor));
  bool has_factor = false;
  MG_RETURN_IF_ERROR(ApplyObject(reader, "rope_scaling", rope, has_factor, type_field));
  MG_RETURN_IF_ERROR(ApplyObject(reader, "rope_parameters", rope, has_factor, type_field));
  const char* field = reader.Get("rope_parameters") != nullptr ? "rope_parameters" : "rope_scaling";

  if (!(rope.partial_rotary_factor > 0 && rope.partial_rotary_factor <= 1)) {
    return reader.Error(
        field, "partial_rotary_factor must be in (0, 1], got " + Num(rope.partial_rotary_factor));
  }
  const bool uses_original = rope.type == RopeType::kYarn || rope.type == RopeType::kLlama3;
  if (uses_original) {
    if (rope.original_max_position_embeddings == 0) {
      rope.original_max_position_embeddings = max_position_embeddings;
    }
    if (rope.original_max_position_embeddings <= 0) {
      return reader.Error(field, "original_max_position_embeddings must be positive, got " +
                                     std::to_string(rope.original_max_position_embeddings));
    }
  }
  if (rope.type == RopeType::kYarn && !has_factor) {
    rope.factor = static_cast<double>(max_position_embeddings) /
                  static_cast<double>(rope.original_max_position_embeddings);
  }
  if (rope.type != RopeType::kDefault) {
    if (!has_factor && rope.type != RopeType::kYarn) {
      return reader.Error(
          field, std::string("rope_type \"") + RopeTypeName(rope.type) + "\" needs a factor");
    }
    if (!(rope.factor >= 1)) {
      return reader.Error(field, "factor must be >= 1, got " + Num(rope.factor));
    }
  }
  if (rope.type == RopeType::kLlama3 &&
      !(rope.low_freq_factor > 0 && rope.low_freq_factor < rope.high_freq_factor)) {
    return reader.Error(field, "llama3 needs 0 < low_freq_factor < high_freq_factor, got " +
                                   Num(rope.low_freq_factor) + " and " +
                                   Num(rope.high_freq_factor));
  }
  if (rope.type == RopeType::kYarn && !(rope.beta_slow > 0 && rope.beta_fast > 0)) {
    return reader.Error(field, "yarn needs positive beta_fast and beta_slow");
  }
  return rope;
}

StatusOr<RopeOpScaling> RopeScalingForOp(const RopeParameters& rope, int64_t rotary_dim) {
  const int64_t dim = rotary_dim;
  if (dim < 2 || dim % 2 != 0) {
    return InvalidArgument("RoPE: rotary dim " + std::to_string(dim) + " must be even and >= 2");
  }
  if (!(rope.theta > 0)) return InvalidArgument("RoPE: theta must be positive");
  RopeOpScaling out;
  switch (rope.type) {
    case RopeType::kDefault:
      break;
    case RopeType::kLinear:
      out.scaling = kRopeLinear;
      out.factor = rope.factor;
      break;
    case RopeType::kDynamic:
      return Unimplemented(
          "RoPE dynamic (NTK-aware) rescales theta with the sequence length; the rope op "
          "rotates by one fixed table");
    case RopeType::kYarn: {
      out.scaling = kRopeYarn;
      out.factor = rope.factor;
      if (rope.attention_factor.has_value()) {
        out.attention_factor = *rope.attention_factor;
      } else if (rope.mscale != 0 && rope.mscale_all_dim != 0) {
        out.attention_factor =
            YarnMscale(rope.factor, rope.mscale) / YarnMscale(rope.factor, rope.mscale_all_dim);
      } else {
        out.attention_factor = YarnMscale(rope.factor, 1.0);
      }
      const double base = rope.theta;
      const double original = static_cast<double>(rope.original_max_position_embeddings);
      // The dimension whose wavelength completes `rotations` turns over the original context.
      auto correction_dim = [&](double rotations) {
        return static_cast<double>(dim) * std::log(original / (rotations * 2 * std::numbers::pi)) /
               (2 * std::log(base));
      };
      double low = correction_dim(rope.beta_fast);
      double high = correction_dim(rope.beta_slow);
      if (rope.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;  // transformers: prevent a singular ramp
      out.ramp_low = low;
      out.ramp_high = high;
      break;
    }
    case RopeType::kLlama3: {
      // w_i = clamp((old_context / wavelen_i - low_freq_factor) / (high - low)), with
      // old_context / wavelen_i = old_context * b_i / (2 pi): a ramp over b_i.
      out.scaling = kRopeLlama3;
      out.factor = rope.factor;
      const double old_context = static_cast<double>(rope.original_max_position_embeddings);
      out.ramp_low = 2 * std::numbers::pi * rope.low_freq_factor / old_context;
      out.ramp_high = 2 * std::numbers::pi * rope.high_freq_factor / old_context;
      break;
    }
  }
  return out;
}

StatusOr<RopeFrequencies> ComputeRopeFrequencies(const RopeParameters& rope, int64_t head_dim,
                                                 int64_t max_position_embeddings, int64_t seq_len) {
  RopeFrequencies out;
  // transformers: dim = int(head_dim * partial_rotary_factor).
  out.rotary_dim = static_cast<int64_t>(static_cast<double>(head_dim) * rope.partial_rotary_factor);
  const int64_t dim = out.rotary_dim;
  if (dim < 2 || dim % 2 != 0) {
    return InvalidArgument("RoPE: rotary dim int(head_dim " + std::to_string(head_dim) + " * " +
                           Num(rope.partial_rotary_factor) + ") = " + std::to_string(dim) +
                           " must be even and >= 2");
  }
  if (!(rope.theta > 0)) return InvalidArgument("RoPE: theta must be positive");
  const int64_t half = dim / 2;
  out.inv_freq.resize(half);
  if (rope.type == RopeType::kDynamic) {
    if (dim <= 2) return InvalidArgument("RoPE dynamic: rotary dim must be > 2");
    const double max_pos = static_cast<double>(max_position_embeddings);
    const double len = std::max(static_cast<double>(seq_len), max_pos);
    const double base =
        rope.theta * std::pow(rope.factor * len / max_pos - (rope.factor - 1),
                              static_cast<double>(dim) / static_cast<double>(dim - 2));
    for (int64_t i = 0; i < half; ++i)
      out.inv_freq[i] = RopeInvFreq(base, dim, i, kRopeUnscaled, 1, 0, 0);
    return out;
  }
  // Every other type is the rope op's own formula (ir/rope_freq.h), so these
  // frequencies, which the rope goldens check against transformers, are the kernels'.
  MG_ASSIGN_OR_RETURN(const RopeOpScaling scaling, RopeScalingForOp(rope, dim));
  out.attention_factor = scaling.attention_factor;
  for (int64_t i = 0; i < half; ++i) {
    out.inv_freq[i] = RopeInvFreq(rope.theta, dim, i, scaling.scaling, scaling.factor,
                                  scaling.ramp_low, scaling.ramp_high);
  }
  return out;
}

}  // namespace moegraph
