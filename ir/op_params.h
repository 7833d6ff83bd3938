// Each kernel op's parameters as a named struct, with its fields described
// once (attribute name, kind, range, member). The registry's attribute specs,
// the packing into a plan step's ints/floats, the op-set hash and the kernels'
// decode all walk that one description. Kernels include this header (through
// kernels/kernel_abi.h), so it depends on nothing but the standard library.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <vector>

namespace moegraph {

enum class AttrKind : uint8_t { kInt, kFloat, kString, kInts };

// Member pointer types behind aliases: nvcc's host pass would otherwise print
// the declarations as `int64_t (P::*int_member)`, which g++ flags (-Wparentheses).
template <typename P>
using IntMember = int64_t P::*;
template <typename P>
using FloatMember = double P::*;

// One field of params struct P: an integer (int64_t) or a float (double)
// member. Floats travel as f32 in a plan step; the struct keeps them as double
// so an attribute read from the IR keeps its exact value.
template <typename P>
struct ParamField {
  const char* name = nullptr;
  IntMember<P> int_member = nullptr;
  FloatMember<P> float_member = nullptr;
  int64_t min = INT64_MIN;  // inclusive range of an integer field
  int64_t max = INT64_MAX;
  bool required = true;  // an optional field reads as 0 when its attribute is absent
  // An optional field with a default (OptionalIntField / OptionalFloatField):
  // absent reads as the default, and ParamsToAttrs leaves the field out while it
  // holds the default, so IR that does not use the option prints as before
  // (rope's rotary_dim and interleaved at 0, the router's options).
  // (`row_offset` has none: its presence marks a chunked moe op.)
  bool has_default = false;
  int64_t int_default = 0;
  double float_default = 0;
};

template <typename P>
constexpr ParamField<P> IntField(const char* name, IntMember<P> member, int64_t min = INT64_MIN,
                                 int64_t max = INT64_MAX, bool required = true) {
  return ParamField<P>{name, member, nullptr, min, max, required};
}
template <typename P>
constexpr ParamField<P> FloatField(const char* name, FloatMember<P> member) {
  return ParamField<P>{name, nullptr, member};
}
template <typename P>
constexpr ParamField<P> OptionalIntField(const char* name, IntMember<P> member, int64_t min,
                                         int64_t max, int64_t default_value) {
  return ParamField<P>{
      name,          member, nullptr, min, max, /*required=*/false, /*has_default=*/true,
      default_value, 0.0};
}
template <typename P>
constexpr ParamField<P> OptionalFloatField(const char* name, FloatMember<P> member,
                                           double default_value) {
  return ParamField<P>{name,
                       nullptr,
                       member,
                       INT64_MIN,
                       INT64_MAX,
                       /*required=*/false,
                       /*has_default=*/true,
                       0,
                       default_value};
}

// ---- the params structs ------------------------------------------------------
// Each lists its fields in `Fields()` in attribute order; integer fields
// travel in KernelStep::ints and float fields in KernelStep::floats, each in
// that order.

// rms_norm, add_rms_norm.
struct RmsNormParams {
  static constexpr const char* kName = "RmsNormParams";
  double eps = 0;
  static constexpr auto Fields() { return std::array{FloatField("eps", &RmsNormParams::eps)}; }
};

// rope: rotates the first rotary_dim values of each head_dim-wide head by
// inv_freq_i (ir/rope_freq.h: theta^(-2i / rotary_dim), i < rotary_dim / 2,
// blended by `scaling`: linear, YaRN or Llama 3 with `factor` and the ramp
// bounds) and passes the rest through; cos and sin are scaled by
// attention_factor (YaRN's). interleaved 0: NeoX rotate-half over the rotary
// part, pair (i, i + rotary_dim / 2); 1: GPT-J pairs (2i, 2i + 1). rotary_dim
// absent or 0 means head_dim; a set one is even, in [2, head_dim] (the verifier
// checks). Every option is absent in unscaled, whole-head rotate-half IR.
struct RopeParams {
  static constexpr const char* kName = "RopeParams";
  int64_t head_dim = 0;
  double theta = 0;
  int64_t rotary_dim = 0;
  int64_t interleaved = 0;
  int64_t scaling = 0;  // RopeScaling
  double factor = 1;
  double ramp_low = 0;
  double ramp_high = 0;
  double attention_factor = 1;
  static constexpr auto Fields() {
    return std::array{
        IntField("head_dim", &RopeParams::head_dim, 2, 4096),
        FloatField("theta", &RopeParams::theta),
        OptionalIntField("rotary_dim", &RopeParams::rotary_dim, 0, 4096, /*default_value=*/0),
        OptionalIntField("interleaved", &RopeParams::interleaved, 0, 1, /*default_value=*/0),
        OptionalIntField("scaling", &RopeParams::scaling, 0, 3, /*default_value=*/0),
        OptionalFloatField("factor", &RopeParams::factor, /*default_value=*/1.0),
        OptionalFloatField("ramp_low", &RopeParams::ramp_low, /*default_value=*/0.0),
        OptionalFloatField("ramp_high", &RopeParams::ramp_high, /*default_value=*/0.0),
        OptionalFloatField("attention_factor", &RopeParams::attention_factor,
                           /*default_value=*/1.0)};
  }
  // The rotated width: rotary_dim, or head_dim when it is 0.
  constexpr int64_t RotaryDim() const { return rotary_dim != 0 ? rotary_dim : head_dim; }
};

// attention: `layer` picks the KV cache layer it writes and reads.
// The largest sliding window (a plan's kv_layers window is int32).
inline constexpr int64_t kMaxAttentionWindow = int64_t{1} << 30;

// attention: `window` 0 attends to every earlier position; > 0 (a sliding-window
// layer), the token at position p attends to positions (p - window, p] only.
struct AttentionParams {
  static constexpr const char* kName = "AttentionParams";
  int64_t layer = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double scale = 0;
  int64_t window = 0;
  static constexpr auto Fields() {
    return std::array{IntField("layer", &AttentionParams::layer, 0, 100000),
                      IntField("num_heads", &AttentionParams::num_heads, 1, 4096),
                      IntField("num_kv_heads", &AttentionParams::num_kv_heads, 1, 4096),
                      IntField("head_dim", &AttentionParams::head_dim, 1, 4096),
                      FloatField("scale", &AttentionParams::scale),
                      OptionalIntField("window", &AttentionParams::window, 0, kMaxAttentionWindow,
                                       /*default_value=*/0)};
  }
  // The first cache position a token at `position` attends to.
  constexpr int64_t FirstPosition(int64_t position) const {
    return window > 0 && position >= window ? position - window + 1 : 0;
  }
};

// mla_attention (multi-head latent attention, DeepSeek-V2/V3): `layer` picks the
// KV cache layer (kind kLatent, one row of kv_lora_rank + qk_rope_head_dim per
// token) it writes and reads; kv_b is kv_b_proj.weight [num_heads *
// (qk_nope_head_dim + v_head_dim), kv_lora_rank].
struct MlaAttentionParams {
  static constexpr const char* kName = "MlaAttentionParams";
  int64_t layer = 0;
  int64_t num_heads = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  double scale = 0;
  static constexpr auto Fields() {
    return std::array{IntField("layer", &MlaAttentionParams::layer, 0, 100000),
                      IntField("num_heads", &MlaAttentionParams::num_heads, 1, 4096),
                      IntField("kv_lora_rank", &MlaAttentionParams::kv_lora_rank, 1, 4096),
                      IntField("qk_nope_head_dim", &MlaAttentionParams::qk_nope_head_dim, 1, 4096),
                      IntField("qk_rope_head_dim", &MlaAttentionParams::qk_rope_head_dim, 2, 4096),
                      IntField("v_head_dim", &MlaAttentionParams::v_head_dim, 1, 4096),
                      FloatField("scale", &MlaAttentionParams::scale)};
  }
  // The KV cache row of one token: the latent, then the rope key.
  constexpr int64_t CacheRow() const { return kv_lora_rank + qk_rope_head_dim; }
};

// Most expert groups a route may have (its kernels keep one flag per group on
// the stack).
inline constexpr int64_t kMaxRouteGroups = 256;

// How topk_route / moe score the experts from a row of router logits.
enum class RouteScoring : int64_t {
  kSoftmax = 0,  // softmax over all experts
  kSigmoid = 1,  // sigmoid of each logit
};

// moe, topk_route: top-k routing. Per token row of router logits:
//   1. scores s = softmax(logits) or sigmoid(logits) (`scoring`);
//   2. choice scores c = s + bias when the op has the optional %bias operand
//      (f32 [E], the score-correction bias), else s;
//   3. group-limited choice when num_groups > 1: the experts split into
//      num_groups contiguous groups, each scored by the sum of its two largest
//      c; the top_k_groups best groups are kept (ties: lower group id) and the
//      other groups' experts are excluded;
//   4. the top_k experts by c (ties: lower expert id); their weights are their
//      s (the bias changes the choice, never the weights);
//   5. norm_topk_prob: weights / max(sum of the chosen s, norm_min) (Ernie's
//      clamp(min = moe_norm_min); GLM / DeepSeek's sum + 1e-20 is
//      max(sum, 1e-20) to f32 precision for the positive sums sigmoid gives);
//   6. weights * routed_scaling_factor.
// Absent optional attributes are today's softmax top-k: scoring 0, one group,
// no bias, norm_min 0, scaling 1. `row_offset` is the first token row of a MoE
// chunk (absent: 0, an unchunked op).
struct TopkRouteParams {
  static constexpr const char* kName = "TopkRouteParams";
  int64_t top_k = 0;
  int64_t norm_topk_prob = 0;  // 0 or 1
  int64_t row_offset = 0;
  int64_t scoring = 0;       // RouteScoring
  int64_t num_groups = 1;    // divides E; each group >= 2 experts when > 1
  int64_t top_k_groups = 0;  // groups kept; 0 (absent): all num_groups
  double routed_scaling_factor = 1.0;
  double norm_min = 0.0;
  static constexpr auto Fields() {
    return std::array{
        IntField("top_k", &TopkRouteParams::top_k, 1, 1024),
        IntField("norm_topk_prob", &TopkRouteParams::norm_topk_prob, 0, 1),
        IntField("row_offset", &TopkRouteParams::row_offset, 0, INT64_MAX,
                 /*required=*/false),
        OptionalIntField("scoring", &TopkRouteParams::scoring, 0, 1, /*default_value=*/0),
        OptionalIntField("num_groups", &TopkRouteParams::num_groups, 1, kMaxRouteGroups,
                         /*default_value=*/1),
        OptionalIntField("top_k_groups", &TopkRouteParams::top_k_groups, 0, kMaxRouteGroups,
                         /*default_value=*/0),
        OptionalFloatField("routed_scaling_factor", &TopkRouteParams::routed_scaling_factor,
                           /*default_value=*/1.0),
        OptionalFloatField("norm_min", &TopkRouteParams::norm_min, /*default_value=*/0.0)};
  }
  // The groups kept (top_k_groups, or every group when it is 0).
  constexpr int64_t KeptGroups() const { return top_k_groups > 0 ? top_k_groups : num_groups; }
};

// The experts' activation of a moe op (MoeParams::activation).
enum class ExpertActivation : int64_t {
  kSilu = 0,           // SwiGLU: silu(gate x) * (up x); gate/up [E, I, H], down [E, H, I]
  kClampedSwiglu = 1,  // GPT-OSS: ClampedSwigluParams' rule on transformers' [in, out] experts
};

// Converts a base struct's fields to P's (P derives from the base), so a
// derived struct lists its base's fields without writing them twice.
template <typename P, typename Base, size_t N>
constexpr std::array<ParamField<P>, N> DerivedFields(const std::array<ParamField<Base>, N>& base) {
  std::array<ParamField<P>, N> out{};
  for (size_t i = 0; i < N; ++i) {
    out[i] = ParamField<P>{
        base[i].name,
        base[i].int_member ? static_cast<IntMember<P>>(base[i].int_member) : nullptr,
        base[i].float_member ? static_cast<FloatMember<P>>(base[i].float_member) : nullptr,
        base[i].min,
        base[i].max,
        base[i].required,
        base[i].has_default,
        base[i].int_default,
        base[i].float_default};
  }
  return out;
}

// moe: the route (TopkRouteParams, which moe-lower hands to topk_route
// unchanged) and the experts' activation. activation 0 (absent) is SwiGLU over
// gate/up [E, I, H] and down [E, H, I]; 1 is GPT-OSS's clamped SwiGLU
// (ClampedSwigluParams with swiglu_alpha / swiglu_limit) over transformers'
// [in, out] experts: gate_up [E, H, 2I] with interleaved gate (even) / up (odd)
// columns and down [E, I, H]; with out_major = 1 the same experts stored [out, in], as
// GPT-OSS's MXFP4 checkpoints do: gate_up [E, 2I, H] with interleaved gate (even) / up (odd)
// rows and down [E, H, I].
struct MoeParams : TopkRouteParams {
  static constexpr const char* kName = "MoeParams";
  int64_t activation = 0;  // ExpertActivation
  double swiglu_alpha = 1.702;
  double swiglu_limit = 7.0;
  int64_t out_major = 0;  // activation 1 only: the expert weights' layout (see above)
  static constexpr auto Fields() {
    const auto route = DerivedFields<MoeParams>(TopkRouteParams::Fields());
    std::array<ParamField<MoeParams>, route.size() + 4> out{};
    for (size_t i = 0; i < route.size(); ++i)
      out[i] = route[i];
    out[route.size()] =
        OptionalIntField("activation", &MoeParams::activation, 0, 1, /*default_value=*/0);
    out[route.size() + 1] =
        OptionalFloatField("swiglu_alpha", &MoeParams::swiglu_alpha, /*default_value=*/1.702);
    out[route.size() + 2] =
        OptionalFloatField("swiglu_limit", &MoeParams::swiglu_limit, /*default_value=*/7.0);
    out[route.size() + 3] =
        OptionalIntField("out_major", &MoeParams::out_major, 0, 1, /*default_value=*/0);
    return out;
  }
};

// clamped_swiglu: x [R, 2I] holds interleaved (gate, up) pairs; per pair i,
// g = min(x[2i], limit), u = clamp(x[2i + 1], -limit, limit),
// out[i] = (u + 1) * g * sigmoid(alpha * g) (transformers' GptOssExperts).
struct ClampedSwigluParams {
  static constexpr const char* kName = "ClampedSwigluParams";
  double alpha = 0;
  double limit = 0;
  static constexpr auto Fields() {
    return std::array{FloatField("alpha", &ClampedSwigluParams::alpha),
                      FloatField("limit", &ClampedSwigluParams::limit)};
  }
};

// moe_align, moe_expert_batch.
struct NumExpertsParams {
  static constexpr const char* kName = "NumExpertsParams";
  int64_t num_experts = 0;
  static constexpr auto Fields() {
    return std::array{IntField("num_experts", &NumExpertsParams::num_experts, 1, 65536)};
  }
};

// moe_permute, moe_unpermute_reduce, expert_batched_gate_up_silu: pair p is
// (token p / top_k, its (p % top_k)-th expert). expert_batched_matmul_kn: pair
// p reads x row p / top_k (top_k 1 when x already holds one row per pair).
struct TopKParams {
  static constexpr const char* kName = "TopKParams";
  int64_t top_k = 0;
  static constexpr auto Fields() {
    return std::array{IntField("top_k", &TopKParams::top_k, 1, 1024)};
  }
};

// slice_rows: rows [begin, begin + rows).
struct SliceRowsParams {
  static constexpr const char* kName = "SliceRowsParams";
  int64_t begin = 0;
  int64_t rows = 0;
  static constexpr auto Fields() {
    return std::array{IntField("begin", &SliceRowsParams::begin, 0),
                      IntField("rows", &SliceRowsParams::rows, 0)};
  }
};

// split_cols: each row's columns in groups of `group`; the first `first` of
// every group go to the first result, the rest to the second.
struct SplitColsParams {
  static constexpr const char* kName = "SplitColsParams";
  int64_t group = 0;
  int64_t first = 0;
  static constexpr auto Fields() {
    return std::array{IntField("group", &SplitColsParams::group, 2, int64_t{1} << 20),
                      IntField("first", &SplitColsParams::first, 1, int64_t{1} << 20)};
  }
};

// all_gather.
struct AllGatherParams {
  static constexpr const char* kName = "AllGatherParams";
  int64_t world_size = 0;
  static constexpr auto Fields() {
    return std::array{IntField("world_size", &AllGatherParams::world_size, 1, int64_t{1} << 20)};
  }
};

// Expert parallelism: rank `rank` of `ranks` owns the contiguous experts
// [first, first + count) of `num_experts`; the first num_experts % ranks
// ranks own one more than the others (an uneven split when E does not divide).
struct ExpertRange {
  int64_t first = 0;
  int64_t count = 0;
};
constexpr ExpertRange ExpertRangeOf(int64_t num_experts, int64_t ranks, int64_t rank) {
  const int64_t base = num_experts / ranks, extra = num_experts % ranks;
  return {rank * base + (rank < extra ? rank : extra), base + (rank < extra ? 1 : 0)};
}
// The rank that owns expert e.
constexpr int64_t ExpertOwner(int64_t num_experts, int64_t ranks, int64_t e) {
  const int64_t base = num_experts / ranks, extra = num_experts % ranks;
  return e < extra * (base + 1) ? e / (base + 1) : extra + (e - extra * (base + 1)) / base;
}

// ep_dispatch and ep_combine: one expert-parallel MoE layer's all-to-all.
// The group is every rank of the plan's expert-parallel layout; `capacity` is
// the receive buffer's static row count (the worst case over what every
// rank's key may send to this one).
struct EpParams {
  static constexpr const char* kName = "EpParams";
  int64_t num_experts = 0;  // global E (the ids' range)
  int64_t ep_size = 0;
  int64_t ep_rank = 0;
  int64_t capacity = 0;
  static constexpr auto Fields() {
    return std::array{IntField("num_experts", &EpParams::num_experts, 1, 65536),
                      IntField("ep_size", &EpParams::ep_size, 2, 4096),
                      IntField("ep_rank", &EpParams::ep_rank, 0, 4095),
                      IntField("capacity", &EpParams::capacity, 1, int64_t{1} << 30)};
  }
  ExpertRange local() const { return ExpertRangeOf(num_experts, ep_size, ep_rank); }
};

// ---- the type-erased description the registry and the runtime use ---------

struct ParamFieldInfo {
  const char* name = nullptr;
  AttrKind kind = AttrKind::kInt;  // kInt or kFloat
  bool required = true;
  int64_t min = INT64_MIN;
  int64_t max = INT64_MAX;
  int wire_index = 0;        // index into the step's ints (kInt) or floats (kFloat)
  bool has_default = false;  // absent reads as the default (else as 0)
  int64_t int_default = 0;
  double float_default = 0;
};

struct ParamsInfo {
  const char* type_name = nullptr;
  const ParamFieldInfo* fields = nullptr;
  int num_fields = 0;
  int num_ints = 0;
  int num_floats = 0;
  size_t size = 0;  // sizeof the struct
  size_t align = 0;
  // Constructs the struct in `out` (size bytes, align-aligned) from a step's
  // ints / floats, which hold num_ints / num_floats entries.
  void (*decode)(const int64_t* ints, const float* floats, void* out) = nullptr;

  const ParamFieldInfo* begin() const { return fields; }
  const ParamFieldInfo* end() const { return fields + num_fields; }
};

// Whether P is a params struct: trivially copyable, with kName and Fields().
template <typename P>
concept OpParamsStruct = std::is_trivially_copyable_v<P> && requires {
  { P::kName } -> std::convertible_to<const char*>;
  P::Fields();
};

namespace params_internal {

template <typename P>
constexpr auto MakeFieldInfos() {
  constexpr auto fields = P::Fields();
  std::array<ParamFieldInfo, fields.size()> out{};
  int ints = 0, floats = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    const bool is_int = fields[i].int_member != nullptr;
    out[i] = ParamFieldInfo{fields[i].name,         is_int ? AttrKind::kInt : AttrKind::kFloat,
                            fields[i].required,     fields[i].min,
                            fields[i].max,          is_int ? ints++ : floats++,
                            fields[i].has_default,  fields[i].int_default,
                            fields[i].float_default};
  }
  return out;
}

template <typename P>
inline constexpr auto kFieldInfos = MakeFieldInfos<P>();

template <typename P>
constexpr int CountKind(AttrKind kind) {
  int n = 0;
  for (const ParamFieldInfo& f : kFieldInfos<P>)
    n += f.kind == kind ? 1 : 0;
  return n;
}

}  // namespace params_internal

// P from a step's wire arrays (num_ints / num_floats entries, field order).
template <OpParamsStruct P>
P DecodeParams(const int64_t* ints, const float* floats) {
  P p{};
  int i = 0, f = 0;
  for (const ParamField<P>& field : P::Fields()) {
    if (field.int_member) {
      p.*field.int_member = ints[i++];
    } else {
      p.*field.float_member = static_cast<double>(floats[f++]);
    }
  }
  return p;
}

// P from a KernelStep's ints/floats vectors; false when their lengths are not P's.
template <OpParamsStruct P>
bool DecodeParams(const std::vector<int64_t>& ints, const std::vector<float>& floats, P& out) {
  constexpr int num_ints = params_internal::CountKind<P>(AttrKind::kInt);
  constexpr int num_floats = params_internal::CountKind<P>(AttrKind::kFloat);
  if (ints.size() != static_cast<size_t>(num_ints) ||
      floats.size() != static_cast<size_t>(num_floats)) {
    return false;
  }
  out = DecodeParams<P>(ints.data(), floats.data());
  return true;
}

// P's wire arrays, the inverse of DecodeParams (floats rounded to f32).
template <OpParamsStruct P>
void EncodeParams(const P& p, std::vector<int64_t>& ints, std::vector<float>& floats) {
  ints.clear();
  floats.clear();
  for (const ParamField<P>& field : P::Fields()) {
    if (field.int_member) {
      ints.push_back(p.*field.int_member);
    } else {
      floats.push_back(static_cast<float>(p.*field.float_member));
    }
  }
}

namespace params_internal {
template <typename P>
void DecodeInto(const int64_t* ints, const float* floats, void* out) {
  ::new (out) P(DecodeParams<P>(ints, floats));
}
}  // namespace params_internal

// P's description; its address identifies P (an op's OpDef::params, a
// KernelArgs' params_info).
template <OpParamsStruct P>
inline constexpr ParamsInfo kParamsInfo{P::kName,
                                        params_internal::kFieldInfos<P>.data(),
                                        static_cast<int>(params_internal::kFieldInfos<P>.size()),
                                        params_internal::CountKind<P>(AttrKind::kInt),
                                        params_internal::CountKind<P>(AttrKind::kFloat),
                                        sizeof(P),
                                        alignof(P),
                                        &params_internal::DecodeInto<P>};

}  // namespace moegraph
