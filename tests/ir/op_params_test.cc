// Each op's params struct against its registry entry: the attribute specs
// derive from the struct's one field list, attributes round-trip through the
// struct, the wire packing decodes back to the same struct, and bad
// attributes are errors that name the op and the field.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "frontends/builder.h"
#include "ir/op_params.h"
#include "ir/op_params_attrs.h"
#include "ir/op_registry.h"

namespace moegraph {
namespace {

template <typename... P>
struct TypeList {};

// Every params struct. An op whose struct is missing here fails
// EveryOpsParamsStructIsListed.
using AllParams = TypeList<RmsNormParams, RopeParams, AttentionParams, MlaAttentionParams,
                           TopkRouteParams, MoeParams, ClampedSwigluParams, NumExpertsParams,
                           TopKParams, SliceRowsParams, SplitColsParams, AllGatherParams, EpParams>;

template <typename... P>
std::set<const ParamsInfo*> Infos(TypeList<P...>) {
  return {&kParamsInfo<P>...};
}

// A distinct in-range value per field; floats exact in f32 (they travel as f32).
AttrMap SampleAttrs(const ParamsInfo& info) {
  AttrMap attrs;
  int i = 0;
  for (const ParamFieldInfo& f : info) {
    ++i;
    if (f.kind == AttrKind::kFloat) {
      attrs[f.name] = 0.25 * i;
    } else {
      const int64_t want = f.min > 0 ? f.min + i : i;
      attrs[f.name] = std::min(want, f.max);
    }
  }
  return attrs;
}

Op OpOf(const OpDef* def, AttrMap attrs) {
  Op op;
  op.def = def;
  op.attrs = std::move(attrs);
  return op;
}

TEST(OpParamsTest, EveryOpsParamsStructIsListed) {
  const std::set<const ParamsInfo*> listed = Infos(AllParams{});
  std::set<const ParamsInfo*> used;
  for (const OpDef* def : AllOps()) {
    if (def->params == nullptr) continue;
    EXPECT_TRUE(listed.count(def->params)) << def->name << " takes " << def->params->type_name;
    used.insert(def->params);
  }
  EXPECT_EQ(used, listed) << "a listed params struct no op takes";
}

// The registry's attribute specs are the struct's fields, then the op's other
// attributes; only weight has attributes that are not kernel parameters.
TEST(OpParamsTest, AttrSpecsDeriveFromTheFieldList) {
  for (const OpDef* def : AllOps()) {
    SCOPED_TRACE(def->name);
    size_t i = 0;
    if (def->params) {
      ASSERT_GE(def->attrs.size(), static_cast<size_t>(def->params->num_fields));
      int ints = 0, floats = 0;
      for (const ParamFieldInfo& f : *def->params) {
        const AttrSpec& spec = def->attrs[i++];
        EXPECT_EQ(spec.name, f.name);
        EXPECT_EQ(spec.kind, f.kind);
        EXPECT_EQ(spec.required, f.required);
        EXPECT_EQ(spec.min, f.min);
        EXPECT_EQ(spec.max, f.max);
        EXPECT_EQ(f.wire_index, f.kind == AttrKind::kInt ? ints++ : floats++);
      }
      EXPECT_EQ(ints, def->params->num_ints);
      EXPECT_EQ(floats, def->params->num_floats);
    }
    ASSERT_EQ(def->attrs.size() - i, def->other_attrs.size());
    for (const AttrSpec& other : def->other_attrs)
      EXPECT_EQ(def->attrs[i++].name, other.name);
    EXPECT_TRUE(def->other_attrs.empty() || def->Has(kWeight)) << "kernel attributes belong in a "
                                                                  "params struct";
  }
}

TEST(OpParamsTest, AttentionFieldsAreDescribedOnce) {
  const OpDef* def = LookupOp("attention");
  ASSERT_NE(def, nullptr);
  EXPECT_EQ(def->params, &kParamsInfo<AttentionParams>);
  std::vector<std::string> names;
  for (const AttrSpec& spec : def->attrs)
    names.push_back(spec.name);
  EXPECT_EQ(names, (std::vector<std::string>{"layer", "num_heads", "num_kv_heads", "head_dim",
                                             "scale", "window"}));
  EXPECT_EQ(kParamsInfo<AttentionParams>.num_ints, 5);
  EXPECT_EQ(kParamsInfo<AttentionParams>.num_floats, 1);
  EXPECT_EQ(def->attrs[1].min, 1);
  EXPECT_EQ(def->attrs[1].max, 4096);
}

// attrs -> struct -> attrs, and attrs -> wire -> struct, for every op.
template <typename P>
void ExpectRoundTrips() {
  int ops = 0;
  for (const OpDef* def : AllOps()) {
    if (def->params != &kParamsInfo<P>) continue;
    ++ops;
    SCOPED_TRACE(def->name);
    const AttrMap attrs = SampleAttrs(kParamsInfo<P>);
    const Op op = OpOf(def, attrs);
    StatusOr<P> typed = OpParams<P>(op);
    ASSERT_TRUE(typed.ok()) << typed.status().ToString();
    EXPECT_EQ(ParamsToAttrs(*typed), attrs);

    const KernelParams wire = PackKernelParams(op);
    EXPECT_EQ(wire.ints.size(), static_cast<size_t>(kParamsInfo<P>.num_ints));
    EXPECT_EQ(wire.floats.size(), static_cast<size_t>(kParamsInfo<P>.num_floats));
    P decoded;
    ASSERT_TRUE(DecodeParams(wire.ints, wire.floats, decoded));
    EXPECT_EQ(ParamsToAttrs(decoded), attrs);
    std::vector<int64_t> ints;
    std::vector<float> floats;
    EncodeParams(*typed, ints, floats);
    EXPECT_EQ(ints, wire.ints);
    EXPECT_EQ(floats, wire.floats);

    // The type-erased decoder the runtime binds with gives the same struct.
    alignas(P) unsigned char blob[sizeof(P)];
    kParamsInfo<P>.decode(wire.ints.data(), wire.floats.data(), blob);
    EXPECT_EQ(ParamsToAttrs(*std::launder(reinterpret_cast<const P*>(blob))), attrs);
  }
  EXPECT_GT(ops, 0) << P::kName << " is no op's params struct";
}

template <typename... P>
void ExpectAllRoundTrip(TypeList<P...>) {
  (ExpectRoundTrips<P>(), ...);
}

TEST(OpParamsTest, AttributesRoundTripThroughTheStructAndTheWire) {
  ExpectAllRoundTrip(AllParams{});
}

TEST(OpParamsTest, WireOrderIsIntsThenFloatsInFieldOrder) {
  const AttentionParams p{
      .layer = 3, .num_heads = 8, .num_kv_heads = 2, .head_dim = 64, .scale = 0.125, .window = 7};
  std::vector<int64_t> ints;
  std::vector<float> floats;
  EncodeParams(p, ints, floats);
  EXPECT_EQ(ints, (std::vector<int64_t>{3, 8, 2, 64, 7}));
  EXPECT_EQ(floats, (std::vector<float>{0.125f}));
  const AttentionParams back = DecodeParams<AttentionParams>(ints.data(), floats.data());
  EXPECT_EQ(back.layer, 3);
  EXPECT_EQ(back.num_heads, 8);
  EXPECT_EQ(back.num_kv_heads, 2);
  EXPECT_EQ(back.head_dim, 64);
  EXPECT_EQ(back.scale, 0.125);
  EXPECT_EQ(back.window, 7);
}

TEST(OpParamsTest, WrongWireLengthsAreRefused) {
  AttentionParams p;
  EXPECT_FALSE(DecodeParams({0, 4, 2, 8}, {0.5f}, p));
  EXPECT_FALSE(DecodeParams({0, 4, 2, 8, 0}, {}, p));
  EXPECT_TRUE(DecodeParams({0, 4, 2, 8, 0}, {0.5f}, p));
  EXPECT_EQ(p.head_dim, 8);
}

TEST(OpParamsTest, AnAbsentOptionalFieldReadsAsZero) {
  const Op op =
      OpOf(LookupOp("topk_route"), {{"top_k", int64_t{2}}, {"norm_topk_prob", int64_t{1}}});
  StatusOr<TopkRouteParams> p = OpParams<TopkRouteParams>(op);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->top_k, 2);
  EXPECT_EQ(p->norm_topk_prob, 1);
  EXPECT_EQ(p->row_offset, 0);
}

// rope's optional fields (default 0) are no attribute at 0, so graphs that do not use it print as
// before its field existed; other optional fields are written at 0 too.
TEST(OpParamsTest, RopeOptionalFieldsAreLeftOutAtZero) {
  EXPECT_EQ(ParamsToAttrs(RopeParams{.head_dim = 4, .theta = 1e4}),
            (AttrMap{{"head_dim", int64_t{4}}, {"theta", 1e4}}));
  EXPECT_EQ(ParamsToAttrs(RopeParams{.head_dim = 4, .theta = 1e4, .rotary_dim = 2}),
            (AttrMap{{"head_dim", int64_t{4}}, {"rotary_dim", int64_t{2}}, {"theta", 1e4}}));
  EXPECT_EQ(ParamsToAttrs(RopeParams{.head_dim = 4, .theta = 1e4, .interleaved = 1}),
            (AttrMap{{"head_dim", int64_t{4}}, {"interleaved", int64_t{1}}, {"theta", 1e4}}));
  EXPECT_EQ(
      ParamsToAttrs(TopkRouteParams{.top_k = 2, .norm_topk_prob = 1}),
      (AttrMap{{"norm_topk_prob", int64_t{1}}, {"row_offset", int64_t{0}}, {"top_k", int64_t{2}}}));
  // Absent, they read as 0 and travel as 0.
  const Op op = OpOf(LookupOp("rope"), {{"head_dim", int64_t{4}}, {"theta", 1e4}});
  const KernelParams wire = PackKernelParams(op);
  // ints: head_dim, rotary_dim, interleaved, scaling; floats: theta, factor, ramp_low,
  // ramp_high, attention_factor (the unscaled defaults).
  EXPECT_EQ(wire.ints, (std::vector<int64_t>{4, 0, 0, 0}));
  EXPECT_EQ(wire.floats, (std::vector<float>{1e4f, 1.0f, 0.0f, 0.0f, 1.0f}));
  StatusOr<RopeParams> p = OpParams<RopeParams>(op);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->RotaryDim(), 4);
  EXPECT_EQ(p->interleaved, 0);
  EXPECT_EQ(p->scaling, 0);
  EXPECT_EQ(p->factor, 1.0);
  EXPECT_EQ(p->attention_factor, 1.0);
  // A scaled rope prints exactly its scaling fields.
  EXPECT_EQ(ParamsToAttrs(RopeParams{.head_dim = 4,
                                     .theta = 1e4,
                                     .scaling = 2,
                                     .factor = 4,
                                     .ramp_low = 0,
                                     .ramp_high = 3,
                                     .attention_factor = 1.5}),
            (AttrMap{{"attention_factor", 1.5},
                     {"factor", 4.0},
                     {"head_dim", int64_t{4}},
                     {"ramp_high", 3.0},
                     {"scaling", int64_t{2}},
                     {"theta", 1e4}}));
}

// The routing options have defaults: absent, they read and pack as the default (num_groups 1,
// scaling 1.0), and ParamsToAttrs leaves them out while they hold it, so IR without them prints
// as before; row_offset (no default: its presence marks a chunk) is always written.
TEST(OpParamsTest, AnAbsentFieldWithADefaultReadsAsItAndIsNotWritten) {
  const AttrMap plain = {{"top_k", int64_t{2}}, {"norm_topk_prob", int64_t{1}}};
  const Op op = OpOf(LookupOp("topk_route"), plain);
  StatusOr<TopkRouteParams> p = OpParams<TopkRouteParams>(op);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->scoring, 0);
  EXPECT_EQ(p->num_groups, 1);
  EXPECT_EQ(p->top_k_groups, 0);
  EXPECT_EQ(p->routed_scaling_factor, 1.0);
  EXPECT_EQ(p->norm_min, 0.0);
  AttrMap written = plain;
  written["row_offset"] = int64_t{0};
  EXPECT_EQ(ParamsToAttrs(*p), written);

  const KernelParams wire = PackKernelParams(op);
  const TopkRouteParams decoded =
      DecodeParams<TopkRouteParams>(wire.ints.data(), wire.floats.data());
  EXPECT_EQ(decoded.num_groups, 1);
  EXPECT_EQ(decoded.routed_scaling_factor, 1.0);

  TopkRouteParams set = *p;
  set.num_groups = 4;
  set.routed_scaling_factor = 2.5;
  written["num_groups"] = int64_t{4};
  written["routed_scaling_factor"] = 2.5;
  EXPECT_EQ(ParamsToAttrs(set), written);
}

void ExpectError(const Status& status, const std::string& part) {
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.ToString().find(part), std::string::npos) << status.ToString();
}

TEST(OpParamsTest, BadAttributesNameTheOpAndTheField) {
  const OpDef* rope = LookupOp("rope");
  ExpectError(OpParams<RopeParams>(OpOf(rope, {{"theta", 1e6}})).status(),
              "'rope' (RopeParams): missing attribute 'head_dim'");
  ExpectError(OpParams<RopeParams>(OpOf(rope, {{"head_dim", int64_t{1}}, {"theta", 1e6}})).status(),
              "attribute 'head_dim' = 1 is outside [2, 4096]");
  ExpectError(OpParams<RopeParams>(OpOf(rope, {{"head_dim", 64.0}, {"theta", 1e6}})).status(),
              "attribute 'head_dim' must be an integer");
  ExpectError(
      OpParams<RopeParams>(OpOf(rope, {{"head_dim", int64_t{64}}, {"theta", int64_t{7}}})).status(),
      "attribute 'theta' must be a float");
  // Another op's struct, or a struct for an op without parameters.
  ExpectError(OpParams<AttentionParams>(OpOf(rope, {})).status(),
              "'rope' does not take AttentionParams");
  ExpectError(OpParams<TopKParams>(OpOf(LookupOp("add"), {})).status(),
              "'add' does not take TopKParams");
}

TEST(OpParamsTest, OpsWithoutKernelParametersHaveNone) {
  for (const char* name : {"zeros", "embedding", "add", "linear", "silu_mul", "linear_silu_mul",
                           "gather_last", "mlp", "grouped_matmul", "moe_combine", "concat_rows"}) {
    const OpDef* def = LookupOp(name);
    ASSERT_NE(def, nullptr) << name;
    EXPECT_EQ(def->params, nullptr) << name;
    EXPECT_TRUE(PackKernelParams(OpOf(def, {})).ints.empty()) << name;
  }
}

// The typed builder writes the struct's attributes, and refuses a struct that
// is not the op's.
TEST(OpParamsTest, TypedBuilderWritesTheStructsAttributes) {
  GraphBuilder b("typed");
  const ValueId x = b.Input("x", Type::Tensor(DType::kF32, {Dim::Static(3), Dim::Static(8)}));
  const ValueId y = b.Add1("rope", {b.meta(), x}, RopeParams{.head_dim = 4, .theta = 10000.0});
  b.Output(y);
  StatusOr<Graph> graph = std::move(b).Finish();
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();
  const Op& op = graph->ops().back();
  EXPECT_EQ(op.name(), "rope");
  EXPECT_EQ(op.IntAttr("head_dim"), 4);
  EXPECT_EQ(op.FloatAttr("theta"), 10000.0);

  GraphBuilder wrong("wrong");
  const ValueId x2 = wrong.Input("x", Type::Tensor(DType::kF32, {Dim::Static(3), Dim::Static(8)}));
  EXPECT_EQ(wrong.Add1("rope", {wrong.meta(), x2}, TopKParams{.top_k = 2}), kNoValue);
  ExpectError(std::move(wrong).Finish().status(), "its parameters are RopeParams, not TopKParams");
}

// moe's MoeParams lists TopkRouteParams' fields first (DerivedFields), then the activation's,
// which have defaults: a SiLU moe op's attributes are the route's alone, as before the
// activation existed, and the GPT-OSS variant's travel after them on the wire.
TEST(OpParamsTest, MoeParamsAreTheRouteThenTheActivation) {
  const AttrMap route = {{"top_k", int64_t{2}}, {"norm_topk_prob", int64_t{1}}};
  StatusOr<MoeParams> silu = OpParams<MoeParams>(OpOf(LookupOp("moe"), route));
  ASSERT_TRUE(silu.ok()) << silu.status().ToString();
  EXPECT_EQ(silu->activation, 0);
  EXPECT_EQ(silu->swiglu_alpha, 1.702);
  EXPECT_EQ(silu->swiglu_limit, 7.0);
  AttrMap written = route;
  written["row_offset"] = int64_t{0};
  EXPECT_EQ(ParamsToAttrs(*silu), written);
  const TopkRouteParams& as_route = *silu;
  EXPECT_EQ(ParamsToAttrs(as_route), written);

  AttrMap clamped = route;
  clamped["activation"] = int64_t{1};
  clamped["swiglu_limit"] = 5.5;
  const Op op = OpOf(LookupOp("moe"), clamped);
  const KernelParams wire = PackKernelParams(op);
  // ints: top_k, norm_topk_prob, row_offset, scoring, num_groups, top_k_groups, activation;
  // floats: routed_scaling_factor, norm_min, swiglu_alpha, swiglu_limit.
  // ints: ..., activation, out_major.
  EXPECT_EQ(wire.ints, (std::vector<int64_t>{2, 1, 0, 0, 1, 0, 1, 0}));
  EXPECT_EQ(wire.floats, (std::vector<float>{1.0f, 0.0f, 1.702f, 5.5f}));
  const MoeParams decoded = DecodeParams<MoeParams>(wire.ints.data(), wire.floats.data());
  EXPECT_EQ(decoded.activation, 1);
  EXPECT_EQ(decoded.top_k, 2);
  EXPECT_FLOAT_EQ(static_cast<float>(decoded.swiglu_limit), 5.5f);
}

}  // namespace
}  // namespace moegraph
