// The block library: what each block emits, and every option that waits for an op refused with
// Unimplemented naming the option (never ignored).
#include "frontends/blocks.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "ir/printer.h"
#include "support/json.h"

namespace moegraph {
namespace {

Type F32(std::vector<int64_t> shape) {
  std::vector<Dim> dims;
  for (int64_t d : shape)
    dims.push_back(Dim::Static(d));
  return Type::Tensor(DType::kF32, dims);
}

Type Tokens(int64_t hidden) {
  return Type::Tensor(DType::kF32, {Dim::Symbol("T"), Dim::Static(hidden)});
}

AttentionOptions Gqa() {
  AttentionOptions o;
  o.layer = 0;
  o.num_heads = 4;
  o.num_kv_heads = 2;
  o.head_dim = 8;
  return o;
}

AttentionWeights AttentionWeightsFor(GraphBuilder& b, bool qk_norm) {
  AttentionWeights w;
  w.q = b.Weight("q", F32({32, 16}));
  w.k = b.Weight("k", F32({16, 16}));
  w.v = b.Weight("v", F32({16, 16}));
  w.o = b.Weight("o", F32({16, 32}));
  if (qk_norm) {
    w.q_norm = b.Weight("qn", F32({8}));
    w.k_norm = b.Weight("kn", F32({8}));
  }
  return w;
}

MoeOptions Moe() {
  MoeOptions o;
  o.num_experts = 4;
  o.top_k = 2;
  return o;
}

MoeWeights MoeWeightsFor(GraphBuilder& b) {
  MoeWeights w;
  w.router = b.Weight("router", F32({4, 16}));
  w.gate = b.Weight("g.{e}", F32({4, 8, 16}), {{"experts", int64_t{4}}});
  w.up = b.Weight("u.{e}", F32({4, 8, 16}), {{"experts", int64_t{4}}});
  w.down = b.Weight("d.{e}", F32({4, 16, 8}), {{"experts", int64_t{4}}});
  w.shared.gate = b.Weight("sg", F32({12, 16}));
  w.shared.up = b.Weight("su", F32({12, 16}));
  w.shared.down = b.Weight("sd", F32({16, 12}));
  return w;
}

// Counts the lines of `text` that contain `piece`.
int Count(const std::string& text, const std::string& piece) {
  int n = 0;
  for (size_t at = text.find(piece); at != std::string::npos; at = text.find(piece, at + 1))
    ++n;
  return n;
}

TEST(BlocksTest, AttentionWithAndWithoutQkNorm) {
  for (bool qk_norm : {true, false}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.qk_norm = qk_norm;
    o.rope.theta = 5e5;
    StatusOr<ValueId> y = BuildAttention(b, o, AttentionWeightsFor(b, qk_norm), x, "l0.");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    EXPECT_EQ(Count(text, "= rms_norm("), qk_norm ? 2 : 0) << text;
    EXPECT_EQ(Count(text, "= rope(%meta"), 2) << text;
    EXPECT_EQ(Count(text, "theta = 500000.0"), 2) << text;
    EXPECT_EQ(Count(text, "= attention(%meta"), 1) << text;
    EXPECT_EQ(Count(text, "scale = 0.35355339059327373"), 1) << text;  // 1 / sqrt(8)
  }
}

// qkv_bias adds one bias_add after each of q, k and v (before RoPE), o_bias one after o.
TEST(BlocksTest, AttentionBiasesAreBiasAddsAfterTheirProjections) {
  for (bool o_bias : {false, true}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.qkv_bias = true;
    o.o_bias = o_bias;
    AttentionWeights w = AttentionWeightsFor(b, false);
    w.q_bias = b.Weight("qb", F32({32}));
    w.k_bias = b.Weight("kb", F32({16}));
    w.v_bias = b.Weight("vb", F32({16}));
    if (o_bias) w.o_bias = b.Weight("ob", F32({16}));
    StatusOr<ValueId> y = BuildAttention(b, o, w, x, "l0.");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    EXPECT_EQ(Count(text, "= bias_add("), o_bias ? 4 : 3) << text;
    EXPECT_EQ(Count(text, "%l0.q_bias = bias_add(%l0.q, %qb)"), 1) << text;
    EXPECT_EQ(Count(text, "%l0.k_bias = bias_add(%l0.k, %kb)"), 1) << text;
    EXPECT_EQ(Count(text, "%l0.v_bias = bias_add(%l0.v, %vb)"), 1) << text;
    EXPECT_EQ(Count(text, "rope(%meta, %l0.q_bias)"), 1) << text;
    EXPECT_EQ(Count(text, "rope(%meta, %l0.k_bias)"), 1) << text;
    EXPECT_EQ(Count(text, "%l0.o_bias = bias_add(%l0.o, %ob)"), o_bias ? 1 : 0) << text;
  }
}

TEST(BlocksTest, AttentionBiasOptionsAndWeightsMustAgree) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  AttentionWeights w = AttentionWeightsFor(b, false);
  w.q_bias = b.Weight("qb", F32({32}));  // k and v biases missing
  AttentionOptions o = Gqa();
  o.qkv_bias = true;
  StatusOr<ValueId> partial = BuildAttention(b, o, w, x, "l0.");
  ASSERT_FALSE(partial.ok());
  EXPECT_EQ(partial.status().message(),
            "attention (layer 0): qkv_bias and the q/k/v bias weights disagree");
  o.qkv_bias = false;  // a bias weight without the option
  StatusOr<ValueId> unused = BuildAttention(b, o, w, x, "l1.");
  ASSERT_FALSE(unused.ok());
  EXPECT_EQ(unused.status().message(),
            "attention (layer 0): qkv_bias and the q/k/v bias weights disagree");
  AttentionOptions o_only = Gqa();
  o_only.o_bias = true;  // no o bias weight
  StatusOr<ValueId> missing = BuildAttention(b, o_only, AttentionWeightsFor(b, false), x, "l2.");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "attention (layer 0): o_bias and the o bias weight disagree");
}

// sinks: the weight is the attention op's fifth operand; without the option the op keeps four.
TEST(BlocksTest, SinksAreTheAttentionOpsLastOperand) {
  for (const bool sinks : {false, true}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.sinks = sinks;
    AttentionWeights w = AttentionWeightsFor(b, false);
    if (sinks) w.sinks = b.Weight("sinks", F32({4}));
    StatusOr<ValueId> y = BuildAttention(b, o, w, x, "l0.");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    EXPECT_EQ(Count(text, "attention(%meta, %l0.q_rope, %l0.k_rope, %l0.v, %sinks)"), sinks ? 1 : 0)
        << text;
    EXPECT_EQ(Count(text, "attention(%meta, %l0.q_rope, %l0.k_rope, %l0.v)"), sinks ? 0 : 1)
        << text;
  }
}

TEST(BlocksTest, SinksOptionAndWeightMustAgree) {
  for (const bool option : {false, true}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.sinks = option;
    AttentionWeights w = AttentionWeightsFor(b, false);
    if (!option) w.sinks = b.Weight("sinks", F32({4}));
    StatusOr<ValueId> y = BuildAttention(b, o, w, x, "l0.");
    ASSERT_FALSE(y.ok());
    EXPECT_EQ(y.status().message(), "attention (layer 0): sinks and the sinks weight disagree");
  }
}

// sliding_window is the attention op's window attribute; 0 prints no attribute.
TEST(BlocksTest, SlidingWindowIsTheAttentionOpsWindow) {
  for (const int64_t window : {int64_t{0}, int64_t{128}}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.sliding_window = window;
    StatusOr<ValueId> y = BuildAttention(b, o, AttentionWeightsFor(b, false), x, "l0.");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    EXPECT_EQ(Count(text, "window = 128}"), window > 0 ? 1 : 0) << text;
    EXPECT_EQ(Count(text, "window"), window > 0 ? 1 : 0) << text;
  }
  AttentionOptions negative = Gqa();
  negative.sliding_window = -1;
  const Status status = CheckAttentionOptions(negative);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "attention (layer 0): sliding_window (-1) must be in [0, 1073741824] (0: full "
            "attention)");
}

// A sinks weight that is not [num_heads] is refused by the op's shape rule.
TEST(BlocksTest, SinksOfTheWrongSizeAreRefused) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  AttentionOptions o = Gqa();
  o.sinks = true;
  AttentionWeights w = AttentionWeightsFor(b, false);
  w.sinks = b.Weight("sinks", F32({3}));
  StatusOr<ValueId> y = BuildAttention(b, o, w, x, "l0.");
  if (y.ok()) {
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_FALSE(g.ok());
    EXPECT_NE(g.status().message().find("sinks [num_heads]"), std::string::npos)
        << g.status().ToString();
  } else {
    EXPECT_NE(y.status().message().find("sinks [num_heads]"), std::string::npos)
        << y.status().ToString();
  }
}

// The rope ops' attributes for each RoPE variant: a whole-head rotate-half rope carries neither
// rotary_dim nor interleaved (so existing graphs print as before).
TEST(BlocksTest, PartialAndInterleavedRopeAreRopeAttributes) {
  struct Case {
    double factor;
    bool interleaved;
    std::string attrs;
  };
  const Case cases[] = {
      {1.0, false, "{head_dim = 8, theta = 10000.0}"},
      {0.5, false, "{head_dim = 8, rotary_dim = 4, theta = 10000.0}"},
      {1.0, true, "{head_dim = 8, interleaved = 1, theta = 10000.0}"},
      {0.75, true, "{head_dim = 8, interleaved = 1, rotary_dim = 6, theta = 10000.0}"},
      {0.3, false, "{head_dim = 8, rotary_dim = 2, theta = 10000.0}"},  // int(2.4) = 2
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.attrs);
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.rope.partial_rotary_factor = c.factor;
    o.rope_interleaved = c.interleaved;
    StatusOr<ValueId> y = BuildAttention(b, o, AttentionWeightsFor(b, false), x, "l0.");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    EXPECT_EQ(Count(text, "= rope(%meta, %l0.q) " + c.attrs), 1) << text;
    EXPECT_EQ(Count(text, "= rope(%meta, %l0.k) " + c.attrs), 1) << text;
  }
}

// Scaled RoPE is the rope op's scaling attributes: YaRN's ramp over pairs [floor(low),
// ceil(high)] of its correction dims and its attention factor 0.1 ln(factor) + 1; linear's
// factor alone. head_dim 8, theta 1e4, original context 64: correction dims
// 8 ln(64 / (2 pi r)) / (2 ln 1e4) = -0.50 (r = 32) and 1.01 (r = 1), so the ramp is [0, 2].
TEST(BlocksTest, ScaledRopeIsRopeScalingAttributes) {
  struct Case {
    RopeType type;
    std::string attrs;
  };
  const Case cases[] = {
      {RopeType::kYarn,
       "{attention_factor = 1.138629436111989, factor = 4.0, head_dim = 8, ramp_high = 2.0, "
       "scaling = 2, theta = 10000.0}"},
      {RopeType::kLinear, "{factor = 4.0, head_dim = 8, scaling = 1, theta = 10000.0}"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.attrs);
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.rope.type = c.type;
    o.rope.factor = 4;
    o.rope.original_max_position_embeddings = 64;
    StatusOr<ValueId> y = BuildAttention(b, o, AttentionWeightsFor(b, false), x, "l0.");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    EXPECT_EQ(Count(text, "= rope(%meta, %l0.q) " + c.attrs), 1) << text;
    EXPECT_EQ(Count(text, "= rope(%meta, %l0.k) " + c.attrs), 1) << text;
  }
}

// MLA without q_lora_rank (hidden 16, 2 heads, nope 4, rope 4, v 6, kv_lora_rank 8).
MlaOptions Mla() {
  MlaOptions o;
  o.num_heads = 2;
  o.kv_lora_rank = 8;
  o.qk_nope_head_dim = 4;
  o.qk_rope_head_dim = 4;
  o.v_head_dim = 6;
  return o;
}

MlaWeights MlaWeightsFor(GraphBuilder& b, bool kv_a_bias) {
  MlaWeights w;
  w.q = b.Weight("q", F32({16, 16}));
  w.kv_a = b.Weight("kv_a", F32({12, 16}));
  w.kv_a_norm = b.Weight("kv_a_norm", F32({8}));
  w.kv_b = b.Weight("kv_b", F32({20, 8}));
  w.o = b.Weight("o", F32({16, 12}));
  if (kv_a_bias) w.kv_a_bias = b.Weight("kv_a_bias", F32({12}));
  return w;
}

// YaRN reaches q_pe and k_pe as the rope op's scaling attributes over qk_rope_head_dim
// (4: correction dims 4 ln(64 / (2 pi r)) / (2 ln 1e4) = -0.25 and 0.50, so the ramp is [0, 1]),
// with mscale / mscale_all_dim's attention factor; dynamic NTK is refused naming the option.
TEST(BlocksTest, MlaRopeTakesTheScaling) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MlaOptions o = Mla();
  o.rope.type = RopeType::kYarn;
  o.rope.factor = 4;
  o.rope.original_max_position_embeddings = 64;
  o.rope.mscale = 0.707;
  o.rope.mscale_all_dim = 1.0;
  StatusOr<ValueId> y = BuildMlaAttention(b, o, MlaWeightsFor(b, false), x, "l0.");
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  const std::string attrs =
      "{attention_factor = " +
      JsonValue::Double((0.0707 * std::log(4.0) + 1.0) / (0.1 * std::log(4.0) + 1.0)).Dump() +
      ", factor = 4.0, head_dim = 4, ramp_high = 1.0, scaling = 2, "
      "theta = 10000.0}";
  EXPECT_EQ(Count(text, "= rope(%meta, %l0.q_parts.1) " + attrs), 1) << text;
  EXPECT_EQ(Count(text, "= rope(%meta, %l0.kv_parts.1) " + attrs), 1) << text;

  GraphBuilder b2("t");
  ValueId x2 = b2.Input("x", Tokens(16));
  o.rope.type = RopeType::kDynamic;
  StatusOr<ValueId> dynamic = BuildMlaAttention(b2, o, MlaWeightsFor(b2, false), x2, "l0.");
  EXPECT_EQ(dynamic.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(dynamic.status().message().find("option rope.type = dynamic"), std::string::npos)
      << dynamic.status().ToString();
}

// qkv_bias without q_lora_rank is kv_a_proj_with_mqa's bias alone (transformers' q_proj has
// none): a q bias weight disagrees with the options.
TEST(BlocksTest, MlaQkvBiasWithoutLoraIsKvABiasOnly) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MlaOptions o = Mla();
  o.qkv_bias = true;
  StatusOr<ValueId> y = BuildMlaAttention(b, o, MlaWeightsFor(b, true), x, "l0.");
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  EXPECT_EQ(Count(text, "bias_add("), 1) << text;
  EXPECT_EQ(Count(text, "= bias_add(%l0.kv_a, %kv_a_bias)"), 1) << text;

  GraphBuilder b2("t");
  ValueId x2 = b2.Input("x", Tokens(16));
  MlaWeights w = MlaWeightsFor(b2, true);
  w.q_bias = b2.Weight("q_bias", F32({16}));
  StatusOr<ValueId> bad = BuildMlaAttention(b2, o, w, x2, "l0.");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
}

// int(head_dim * partial_rotary_factor) must be an even count >= 2.
TEST(BlocksTest, PartialRotaryFactorMustRotateAnEvenCount) {
  for (double factor : {0.4, 0.1}) {  // int(3.2) = 3, int(0.8) = 0
    AttentionOptions o = Gqa();
    o.rope.partial_rotary_factor = factor;
    const Status status = CheckAttentionOptions(o);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_NE(
        status.message().find("attention (layer 0): rope.partial_rotary_factor = " +
                              std::string(factor == 0.4 ? "0.4" : "0.1") +
                              " rotates int(head_dim 8 * factor) = " + (factor == 0.4 ? "3" : "0") +
                              " values, expected an even count in [2, head_dim]"),
        std::string::npos)
        << status.ToString();
  }
}

TEST(BlocksTest, MqaAndMhaAreKvHeadCounts) {
  for (int64_t kv_heads : {int64_t{1}, int64_t{4}}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    o.num_kv_heads = kv_heads;
    AttentionWeights w = AttentionWeightsFor(b, false);
    w.k = b.Weight("k" + std::to_string(kv_heads), F32({kv_heads * 8, 16}));
    w.v = b.Weight("v" + std::to_string(kv_heads), F32({kv_heads * 8, 16}));
    StatusOr<ValueId> y = BuildAttention(b, o, w, x, "l0.");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    EXPECT_TRUE(std::move(b).Finish().ok());
  }
}

TEST(BlocksTest, MoeWithSharedExpertPassesMetaToBoth) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MoeOptions o = Moe();
  o.shared_expert = true;
  o.norm_topk_prob = true;
  StatusOr<ValueId> y = BuildMoe(b, o, MoeWeightsFor(b), x, "l0.moe");
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  EXPECT_NE(text.find("%l0.moe = moe(%meta, %x, %router"), std::string::npos) << text;
  EXPECT_NE(text.find("{norm_topk_prob = 1, top_k = 2}"), std::string::npos) << text;
  EXPECT_NE(text.find("%l0.moe.shared = mlp(%meta, %x, %sg, %su, %sd)"), std::string::npos) << text;
  EXPECT_NE(text.find("%l0.moe.sum = add(%l0.moe, %l0.moe.shared)"), std::string::npos) << text;
}

// Qwen2-MoE: the shared expert (still with %meta) scaled per token by sigmoid(x @ gate^T), then
// added to the routed output.
TEST(BlocksTest, SharedExpertGateIsSigmoidGateMulOnTheSharedExpert) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MoeOptions o = Moe();
  o.shared_expert = true;
  o.shared_expert_gate = true;
  MoeWeights w = MoeWeightsFor(b);
  w.shared_gate = b.Weight("sgate", F32({1, 16}));
  StatusOr<ValueId> y = BuildMoe(b, o, w, x, "l0.moe");
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  EXPECT_EQ(Count(text, "%l0.moe.shared = mlp(%meta, %x, %sg, %su, %sd)"), 1) << text;
  EXPECT_EQ(Count(text, "%l0.moe.shared_gated = sigmoid_gate_mul(%x, %sgate, %l0.moe.shared)"), 1)
      << text;
  EXPECT_EQ(Count(text, "%l0.moe.sum = add(%l0.moe, %l0.moe.shared_gated)"), 1) << text;
  EXPECT_EQ(Count(text, "= sigmoid_gate_mul("), 1) << text;
}

// The option and the weight must agree: a gate weight without the option (or the option without
// the weight) is refused, not silently dropped.
TEST(BlocksTest, SharedExpertGateAndItsWeightMustAgree) {
  for (const bool option : {false, true}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    MoeOptions o = Moe();
    o.shared_expert = true;
    o.shared_expert_gate = option;
    MoeWeights w = MoeWeightsFor(b);
    if (!option) w.shared_gate = b.Weight("sgate", F32({1, 16}));
    StatusOr<ValueId> y = BuildMoe(b, o, w, x, "l0.moe");
    ASSERT_FALSE(y.ok()) << option;
    EXPECT_EQ(y.status().code(), StatusCode::kInvalidArgument) << y.status().ToString();
    EXPECT_NE(y.status().message().find("shared_expert_gate"), std::string::npos)
        << y.status().ToString();
  }
}

TEST(BlocksTest, MoeWithoutSharedExpertIsOneOp) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  StatusOr<ValueId> y = BuildMoe(b, Moe(), MoeWeightsFor(b), x, "m");
  ASSERT_TRUE(y.ok());
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok());
  const std::string text = PrintGraph(*g);
  EXPECT_EQ(Count(text, "= moe("), 1);
  EXPECT_EQ(Count(text, "= mlp("), 0);
  EXPECT_EQ(Count(text, "= add("), 0);
}

// A GLM / DeepSeek-style router: every option is an attribute of the one moe op and the
// correction bias its last operand; the graph verifies (the shape rule checks the bias).
TEST(BlocksTest, MoeRouterOptionsAreMoeAttributesAndTheBiasOperand) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MoeOptions o = Moe();
  o.scoring = RouteScoring::kSigmoid;
  o.num_groups = 2;
  o.top_k_groups = 1;
  o.norm_topk_prob = true;
  o.norm_min = 1e-20;
  o.routed_scaling_factor = 2.5;
  o.score_correction_bias = true;
  MoeWeights w = MoeWeightsFor(b);
  w.correction_bias = b.Weight("bias", F32({4}));
  StatusOr<ValueId> y = BuildMoe(b, o, w, x, "m");
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  EXPECT_NE(text.find("%m = moe(%meta, %x, %router, %g, %u, %d, %bias) "
                      "{norm_min = 1e-20, norm_topk_prob = 1, num_groups = 2, "
                      "routed_scaling_factor = 2.5, scoring = 1, top_k = 2, top_k_groups = 1}"),
            std::string::npos)
      << text;
}

// Softmax with a correction bias and norm_min (Ernie): only the options that differ from the
// defaults are printed.
TEST(BlocksTest, MoeSoftmaxWithBiasPrintsOnlyItsOptions) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MoeOptions o = Moe();
  o.norm_topk_prob = true;
  o.norm_min = 1e-12;
  o.score_correction_bias = true;
  MoeWeights w = MoeWeightsFor(b);
  w.correction_bias = b.Weight("bias", F32({4}));
  StatusOr<ValueId> y = BuildMoe(b, o, w, x, "m");
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  EXPECT_NE(text.find("%d, %bias) {norm_min = 1e-12, norm_topk_prob = 1, top_k = 2} :"),
            std::string::npos)
      << text;
}

TEST(BlocksTest, MoeCorrectionBiasOptionAndWeightMustAgree) {
  for (const bool option : {false, true}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    MoeOptions o = Moe();
    o.score_correction_bias = option;
    MoeWeights w = MoeWeightsFor(b);
    if (!option) w.correction_bias = b.Weight("bias", F32({4}));
    StatusOr<ValueId> y = BuildMoe(b, o, w, x, "m");
    ASSERT_FALSE(y.ok());
    EXPECT_EQ(y.status().message(),
              "MoE 'm': score_correction_bias and the correction bias weight disagree");
  }
}

TEST(BlocksTest, BadRouterOptionsAreInvalidArgumentNamingTheField) {
  struct Case {
    void (*set)(MoeOptions&);
    std::string message;
  };
  const Case cases[] = {
      {[](MoeOptions& o) { o.num_groups = 3; },
       "MoE: num_groups (3) must divide num_experts (4) and be at most 256"},
      {[](MoeOptions& o) { o.num_groups = 4; },
       "MoE: num_groups (4) leaves one expert per group; a group is scored by its top two"},
      {[](MoeOptions& o) {
         o.num_groups = 2;
         o.top_k_groups = 3;
       },
       "MoE: top_k_groups (3) must be in [1, num_groups = 2] (0: all groups)"},
      {[](MoeOptions& o) {
         o.num_groups = 2;
         o.top_k_groups = 1;
         o.top_k = 3;
       },
       "MoE: top_k (3) exceeds the 2 experts of the kept groups (top_k_groups = 1 of 2 experts)"},
      {[](MoeOptions& o) { o.routed_scaling_factor = 0; },
       "MoE: routed_scaling_factor (0.000000) must be finite and > 0"},
      {[](MoeOptions& o) { o.norm_min = -1; }, "MoE: norm_min (-1.000000) must be finite and >= 0"},
      {[](MoeOptions& o) { o.norm_min = 0.5; }, "MoE: norm_min (0.500000) needs norm_topk_prob"},
  };
  for (const Case& c : cases) {
    MoeOptions o = Moe();
    c.set(o);
    const Status status = CheckMoeOptions(o);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(status.message(), c.message);
  }
}

// Each option that needs an op the registry lacks: Unimplemented naming the option.
TEST(BlocksTest, AttentionOptionsWithoutAnOpAreUnimplemented) {
  struct Case {
    void (*set)(AttentionOptions&);
    std::string names;
  };
  const Case cases[] = {
      {[](AttentionOptions& o) { o.mla = true; }, "option mla"},
      {[](AttentionOptions& o) { o.rope.type = RopeType::kDynamic; }, "option rope.type = dynamic"},
  };
  for (const Case& c : cases) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    AttentionOptions o = Gqa();
    c.set(o);
    StatusOr<ValueId> y = BuildAttention(b, o, AttentionWeightsFor(b, false), x, "l0.");
    ASSERT_FALSE(y.ok()) << c.names;
    EXPECT_EQ(y.status().code(), StatusCode::kUnimplemented) << y.status().ToString();
    EXPECT_NE(y.status().message().find(c.names), std::string::npos) << y.status().ToString();
  }
  const Status mla = CheckAttentionOptions([] {
    AttentionOptions o = Gqa();
    o.mla = true;
    return o;
  }());
  EXPECT_EQ(mla.message(),
            "attention (layer 0): option mla is not supported yet: multi-head latent attention "
            "is BuildMlaAttention's (MlaOptions, the mla_attention op), not this GQA block's");
}

TEST(BlocksTest, MlpOptionsWithoutAnOpAreUnimplemented) {
  struct Case {
    MlpOptions options;
    std::string names;
  };
  MlpOptions gelu, clamped, ungated;
  gelu.activation = Activation::kGeluTanh;
  clamped.activation = Activation::kClampedSwiglu;
  ungated.gated = false;
  const Case cases[] = {{gelu, "option activation = gelu_pytorch_tanh"},
                        {clamped, "option activation = clamped_swiglu"},
                        {ungated, "option gated = false"}};
  for (const Case& c : cases) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    MlpWeights w = MoeWeightsFor(b).shared;
    StatusOr<ValueId> y = BuildMlp(b, c.options, w, x, "mlp");
    ASSERT_FALSE(y.ok()) << c.names;
    EXPECT_EQ(y.status().code(), StatusCode::kUnimplemented) << y.status().ToString();
    EXPECT_NE(y.status().message().find(c.names), std::string::npos) << y.status().ToString();
  }
}

// bias puts the three biases on the one mlp op, after its weights, and keeps %meta first.
TEST(BlocksTest, MlpBiasesAreOperandsOfTheMlpOp) {
  for (bool bias : {false, true}) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    MlpWeights w = MoeWeightsFor(b).shared;
    if (bias) {
      w.gate_bias = b.Weight("sgb", F32({12}));
      w.up_bias = b.Weight("sub", F32({12}));
      w.down_bias = b.Weight("sdb", F32({16}));
    }
    StatusOr<ValueId> y = BuildMlp(b, MlpOptions{.bias = bias}, w, x, "mlp");
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    b.Output(*y);
    StatusOr<Graph> g = std::move(b).Finish();
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const std::string text = PrintGraph(*g);
    EXPECT_EQ(Count(text, bias ? "%mlp = mlp(%meta, %x, %sg, %su, %sd, %sgb, %sub, %sdb)"
                               : "%mlp = mlp(%meta, %x, %sg, %su, %sd) "),
              1)
        << text;
  }
}

TEST(BlocksTest, MlpBiasOptionAndWeightsMustAgree) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MlpWeights w = MoeWeightsFor(b).shared;
  w.gate_bias = b.Weight("sgb", F32({12}));  // up and down biases missing
  for (bool bias : {true, false}) {
    StatusOr<ValueId> y = BuildMlp(b, MlpOptions{.bias = bias}, w, x, "mlp");
    ASSERT_FALSE(y.ok());
    EXPECT_EQ(y.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(y.status().message(), "MLP 'mlp': bias and the gate/up/down bias weights disagree");
  }
}

// GPT-OSS: clamped SwiGLU experts are the moe op's activation = 1 over the [in, out] gate_up
// and down weights, with the router and expert biases as its last operands.
TEST(BlocksTest, ClampedSwigluExpertsAreTheMoeOpsActivationWithBiasOperands) {
  GraphBuilder b("t");
  ValueId x = b.Input("x", Tokens(16));
  MoeOptions o = Moe();
  o.norm_topk_prob = true;
  o.expert_mlp.activation = Activation::kClampedSwiglu;
  o.router_bias = o.expert_bias = true;
  o.swiglu_limit = 5.0;
  MoeWeights w;
  w.router = b.Weight("router", F32({4, 16}));
  w.gate_up = b.Weight("gu", F32({4, 16, 16}), {{"experts", int64_t{4}}});
  w.down = b.Weight("d", F32({4, 8, 16}), {{"experts", int64_t{4}}});
  w.router_bias = b.Weight("rb", F32({4}));
  w.gate_up_bias = b.Weight("gub", F32({4, 16}));
  w.down_bias = b.Weight("db", F32({4, 16}));
  StatusOr<ValueId> y = BuildMoe(b, o, w, x, "m");
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  b.Output(*y);
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string text = PrintGraph(*g);
  EXPECT_NE(text.find("%m = moe(%meta, %x, %router, %gu, %d, %rb, %gub, %db) {activation = 1, "
                      "norm_topk_prob = 1, swiglu_limit = 5.0, top_k = 2}"),
            std::string::npos)
      << text;

  // Biases go with clamped experts, both or neither.
  o.expert_bias = false;
  GraphBuilder b2("t");
  ValueId x2 = b2.Input("x", Tokens(16));
  EXPECT_EQ(BuildMoe(b2, o, w, x2, "m").status().code(), StatusCode::kInvalidArgument);
}

TEST(BlocksTest, MoeOptionsWithoutAnOpAreUnimplemented) {
  struct Case {
    void (*set)(MoeOptions&);
    std::string names;
  };
  const Case cases[] = {
      {[](MoeOptions& o) { o.router_bias = true; }, "option router_bias"},
      {[](MoeOptions& o) { o.expert_bias = true; }, "option expert_bias"},
      {[](MoeOptions& o) { o.expert_mlp.bias = true; }, "option expert_mlp.bias"},
      {[](MoeOptions& o) {
         o.shared_expert = true;
         o.shared_mlp.activation = Activation::kGeluTanh;
       },
       "MoE shared expert: option activation = gelu_pytorch_tanh"},
  };
  for (const Case& c : cases) {
    GraphBuilder b("t");
    ValueId x = b.Input("x", Tokens(16));
    MoeOptions o = Moe();
    c.set(o);
    StatusOr<ValueId> y = BuildMoe(b, o, MoeWeightsFor(b), x, "m");
    ASSERT_FALSE(y.ok()) << c.names;
    EXPECT_EQ(y.status().code(), StatusCode::kUnimplemented) << y.status().ToString();
    EXPECT_NE(y.status().message().find(c.names), std::string::npos) << y.status().ToString();
  }
}

TEST(BlocksTest, BadSizesAreInvalidArgument) {
  AttentionOptions a = Gqa();
  a.num_kv_heads = 3;
  EXPECT_EQ(CheckAttentionOptions(a).code(), StatusCode::kInvalidArgument);
  MoeOptions m = Moe();
  m.top_k = 5;
  EXPECT_EQ(CheckMoeOptions(m).code(), StatusCode::kInvalidArgument);
  m = Moe();
  m.shared_expert_gate = true;  // without a shared expert
  EXPECT_EQ(CheckMoeOptions(m).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moegraph
