// fuse: gate/up GEMMs + silu_mul, grouped gate/up + silu_mul, add + rms_norm.
#include "passes/fuse.h"

#include <gtest/gtest.h>

#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

std::string Fuse(const std::string& text, bool* changed = nullptr) {
  FusePass fuse;
  return RunPass(text, fuse, changed);
}

// Checks that `text` is a fixed point of the pass.
void ExpectNoChange(const std::string& text) {
  bool changed = true;
  EXPECT_EQ(Fuse(text, &changed), text);
  EXPECT_FALSE(changed);
}

// ---- a. linear gate/up + silu_mul --------------------------------------------

constexpr const char* kDenseMlp = R"(graph @mlp(%meta: !forward_meta, %x: tensor<5 x 8 x f32>) {
  %wg = weight() {name = "mlp.gate_proj.weight"} : tensor<6 x 8 x bf16>
  %wu = weight() {name = "mlp.up_proj.weight"} : tensor<6 x 8 x bf16>
  %wd = weight() {name = "mlp.down_proj.weight"} : tensor<8 x 6 x bf16>
  %g = linear(%x, %wg) : tensor<5 x 6 x f32>
  %u = linear(%x, %wu) : tensor<5 x 6 x f32>
  %h = silu_mul(%g, %u) : tensor<5 x 6 x f32>
  %y = linear(%h, %wd) : tensor<5 x 8 x f32>
  return %y
}
)";

TEST(FuseGateUp, LinearPairBecomesLinearSiluMul) {
  const std::string expected = R"(graph @mlp(%meta: !forward_meta, %x: tensor<5 x 8 x f32>) {
  %wg = weight() {name = "mlp.gate_proj.weight"} : tensor<6 x 8 x bf16>
  %wu = weight() {name = "mlp.up_proj.weight"} : tensor<6 x 8 x bf16>
  %wd = weight() {name = "mlp.down_proj.weight"} : tensor<8 x 6 x bf16>
  %h = linear_silu_mul(%x, %wg, %wu) : tensor<5 x 6 x f32>
  %y = linear(%h, %wd) : tensor<5 x 8 x f32>
  return %y
}
)";
  bool changed = false;
  EXPECT_EQ(Fuse(kDenseMlp, &changed), expected);
  EXPECT_TRUE(changed);
  ExpectNoChange(expected);
}

// silu applies to the first operand: silu_mul(%u, %g) gates with %wu.
TEST(FuseGateUp, KeepsWhichWeightIsTheGate) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<5 x 8 x f32>) {
  %wg = weight() {name = "gate"} : tensor<6 x 8 x f32>
  %wu = weight() {name = "up"} : tensor<6 x 8 x f32>
  %g = linear(%x, %wg) : tensor<5 x 6 x f32>
  %u = linear(%x, %wu) : tensor<5 x 6 x f32>
  %h = silu_mul(%u, %g) : tensor<5 x 6 x f32>
  return %h
}
)";
  const std::string expected = R"(graph @g(%meta: !forward_meta, %x: tensor<5 x 8 x f32>) {
  %wg = weight() {name = "gate"} : tensor<6 x 8 x f32>
  %wu = weight() {name = "up"} : tensor<6 x 8 x f32>
  %h = linear_silu_mul(%x, %wu, %wg) : tensor<5 x 6 x f32>
  return %h
}
)";
  EXPECT_EQ(Fuse(input), expected);
}

TEST(FuseGateUp, NoChangeWhenGateHasAnotherUse) {
  std::string text = kDenseMlp;
  text.replace(text.find("return %y"), 9, "return %y, %g");
  ExpectNoChange(text);
}

TEST(FuseGateUp, NoChangeWhenInputsDiffer) {
  ExpectNoChange(
      R"(graph @g(%meta: !forward_meta, %x: tensor<5 x 8 x f32>, %z: tensor<5 x 8 x f32>) {
  %wg = weight() {name = "gate"} : tensor<6 x 8 x f32>
  %wu = weight() {name = "up"} : tensor<6 x 8 x f32>
  %g = linear(%x, %wg) : tensor<5 x 6 x f32>
  %u = linear(%z, %wu) : tensor<5 x 6 x f32>
  %h = silu_mul(%g, %u) : tensor<5 x 6 x f32>
  return %h
}
)");
}

TEST(FuseGateUp, NoChangeWhenOperandsAreNotGemms) {
  ExpectNoChange(R"(graph @g(%meta: !forward_meta, %x: tensor<5 x 6 x f32>) {
  %wg = weight() {name = "gate"} : tensor<6 x 6 x f32>
  %g = linear(%x, %wg) : tensor<5 x 6 x f32>
  %u = add(%x, %x) : tensor<5 x 6 x f32>
  %h = silu_mul(%g, %u) : tensor<5 x 6 x f32>
  %h2 = silu_mul(%x, %x) : tensor<5 x 6 x f32>
  return %h, %h2
}
)");
}

// A biased MLP's lowering: the silu_mul reads the bias_adds, so there is no gate/up pair to fuse.
TEST(FuseGateUp, NoChangeWhenTheGemmsHaveBiases) {
  ExpectNoChange(R"(graph @g(%meta: !forward_meta, %x: tensor<5 x 8 x f32>) {
  %wg = weight() {name = "gate"} : tensor<6 x 8 x f32>
  %wu = weight() {name = "up"} : tensor<6 x 8 x f32>
  %bg = weight() {name = "gate_bias"} : tensor<6 x f32>
  %bu = weight() {name = "up_bias"} : tensor<6 x f32>
  %g = linear(%x, %wg) : tensor<5 x 6 x f32>
  %gb = bias_add(%g, %bg) : tensor<5 x 6 x f32>
  %u = linear(%x, %wu) : tensor<5 x 6 x f32>
  %ub = bias_add(%u, %bu) : tensor<5 x 6 x f32>
  %h = silu_mul(%gb, %ub) : tensor<5 x 6 x f32>
  return %h
}
)");
}

// ---- b. grouped gate/up + silu_mul -------------------------------------------

constexpr const char* kGroupedExperts =
    R"(graph @experts(%meta: !forward_meta, %xp: tensor<10 x 8 x f32>, %off: tensor<5 x i32>, %off2: tensor<5 x i32>) {
  %wg = weight() {experts = 4, name = "experts.{e}.gate_proj.weight"} : tensor<4 x 6 x 8 x bf16>
  %wu = weight() {experts = 4, name = "experts.{e}.up_proj.weight"} : tensor<4 x 6 x 8 x bf16>
  %g = grouped_matmul(%xp, %off, %wg) : tensor<10 x 6 x f32>
  %u = grouped_matmul(%xp, %off, %wu) : tensor<10 x 6 x f32>
  %h = silu_mul(%g, %u) : tensor<10 x 6 x f32>
  return %h
}
)";

TEST(FuseGateUp, GroupedPairBecomesGroupedMatmulSiluMul) {
  const std::string expected =
      R"(graph @experts(%meta: !forward_meta, %xp: tensor<10 x 8 x f32>, %off: tensor<5 x i32>, %off2: tensor<5 x i32>) {
  %wg = weight() {experts = 4, name = "experts.{e}.gate_proj.weight"} : tensor<4 x 6 x 8 x bf16>
  %wu = weight() {experts = 4, name = "experts.{e}.up_proj.weight"} : tensor<4 x 6 x 8 x bf16>
  %h = grouped_matmul_silu_mul(%xp, %off, %wg, %wu) : tensor<10 x 6 x f32>
  return %h
}
)";
  bool changed = false;
  EXPECT_EQ(Fuse(kGroupedExperts, &changed), expected);
  EXPECT_TRUE(changed);
}

TEST(FuseGateUp, NoChangeWhenExpertOffsetsDiffer) {
  std::string text = kGroupedExperts;
  text.replace(text.find("grouped_matmul(%xp, %off, %wu)"), 30, "grouped_matmul(%xp, %off2, %wu)");
  ExpectNoChange(text);
}

// grouped_matmul_silu_mul has no biases: a biased grouped_matmul pair stays as it is.
TEST(FuseGateUp, NoChangeWhenTheGroupedMatmulsHaveBiases) {
  std::string text = kGroupedExperts;
  text.replace(text.find("  %g = grouped_matmul"), 0,
               "  %b = weight() {name = \"experts.bias\"} : tensor<4 x 6 x bf16>\n");
  text.replace(text.find("grouped_matmul(%xp, %off, %wg)"), 30,
               "grouped_matmul(%xp, %off, %wg, %b)");
  text.replace(text.find("grouped_matmul(%xp, %off, %wu)"), 30,
               "grouped_matmul(%xp, %off, %wu, %b)");
  ExpectNoChange(text);
}

TEST(FuseGateUp, NoChangeWhenGemmKindsDiffer) {
  ExpectNoChange(
      R"(graph @g(%meta: !forward_meta, %xp: tensor<10 x 8 x f32>, %off: tensor<5 x i32>) {
  %wg = weight() {experts = 4, name = "experts.{e}.gate_proj.weight"} : tensor<4 x 6 x 8 x bf16>
  %wu = weight() {name = "up"} : tensor<6 x 8 x bf16>
  %g = grouped_matmul(%xp, %off, %wg) : tensor<10 x 6 x f32>
  %u = linear(%xp, %wu) : tensor<10 x 6 x f32>
  %h = silu_mul(%g, %u) : tensor<10 x 6 x f32>
  return %h
}
)");
}

// ---- c. add + rms_norm ---------------------------------------------------------

// Nothing reads %s between the add and the norm: the fused op takes the
// norm's place, after %w.
TEST(FuseAddNorm, AtTheNormsPlace) {
  const std::string input =
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %s = add(%a, %b) : tensor<3 x 8 x f32>
  %w = weight() {name = "post_attention_layernorm.weight"} : tensor<8 x bf16>
  %n = rms_norm(%s, %w) {eps = 1e-05} : tensor<3 x 8 x f32>
  %y = add(%n, %s) : tensor<3 x 8 x f32>
  return %y, %s
}
)";
  const std::string expected =
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %w = weight() {name = "post_attention_layernorm.weight"} : tensor<8 x bf16>
  %s, %n = add_rms_norm(%a, %b, %w) {eps = 1e-05} : tensor<3 x 8 x f32>, tensor<3 x 8 x f32>
  %y = add(%n, %s) : tensor<3 x 8 x f32>
  return %y, %s
}
)";
  bool changed = false;
  EXPECT_EQ(Fuse(input, &changed), expected);
  EXPECT_TRUE(changed);
  ExpectNoChange(expected);
}

// %t reads %s before the norm: the fused op takes the add's place, which
// is legal because %w is defined before the add.
TEST(FuseAddNorm, AtTheAddsPlaceWhenSumIsReadInBetween) {
  const std::string input =
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %w = weight() {name = "norm.weight"} : tensor<8 x f32>
  %s = add(%a, %b) : tensor<3 x 8 x f32>
  %t = add(%s, %a) : tensor<3 x 8 x f32>
  %n = rms_norm(%s, %w) {eps = 0.5} : tensor<3 x 8 x f32>
  %y = add(%t, %n) : tensor<3 x 8 x f32>
  return %y
}
)";
  const std::string expected =
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %w = weight() {name = "norm.weight"} : tensor<8 x f32>
  %s, %n = add_rms_norm(%a, %b, %w) {eps = 0.5} : tensor<3 x 8 x f32>, tensor<3 x 8 x f32>
  %t = add(%s, %a) : tensor<3 x 8 x f32>
  %y = add(%t, %n) : tensor<3 x 8 x f32>
  return %y
}
)";
  EXPECT_EQ(Fuse(input), expected);
}

// %s is read in between and %w only exists after the add: no legal place.
TEST(FuseAddNorm, NoChangeWithoutALegalPlace) {
  ExpectNoChange(
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %s = add(%a, %b) : tensor<3 x 8 x f32>
  %t = add(%s, %a) : tensor<3 x 8 x f32>
  %w = weight() {name = "norm.weight"} : tensor<8 x f32>
  %n = rms_norm(%s, %w) {eps = 0.5} : tensor<3 x 8 x f32>
  %y = add(%t, %n) : tensor<3 x 8 x f32>
  return %y
}
)");
}

TEST(FuseAddNorm, NoChangeWhenNormInputIsNotAnAdd) {
  ExpectNoChange(
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %w = weight() {name = "norm.weight"} : tensor<8 x f32>
  %n1 = rms_norm(%a, %w) {eps = 0.5} : tensor<3 x 8 x f32>
  %m = silu_mul(%a, %b) : tensor<3 x 8 x f32>
  %n2 = rms_norm(%m, %w) {eps = 0.5} : tensor<3 x 8 x f32>
  %y = add(%n1, %n2) : tensor<3 x 8 x f32>
  return %y
}
)");
}

// One add feeding two norms fuses with the first; the second reads the
// fused op's sum.
TEST(FuseAddNorm, OneAddFusesOnce) {
  const std::string input =
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %w1 = weight() {name = "norm1.weight"} : tensor<8 x f32>
  %w2 = weight() {name = "norm2.weight"} : tensor<4 x f32>
  %s = add(%a, %b) : tensor<3 x 8 x f32>
  %n1 = rms_norm(%s, %w1) {eps = 0.5} : tensor<3 x 8 x f32>
  %n2 = rms_norm(%s, %w2) {eps = 0.25} : tensor<3 x 8 x f32>
  %y = add(%n1, %n2) : tensor<3 x 8 x f32>
  return %y
}
)";
  const std::string expected =
      R"(graph @g(%meta: !forward_meta, %a: tensor<3 x 8 x f32>, %b: tensor<3 x 8 x f32>) {
  %w1 = weight() {name = "norm1.weight"} : tensor<8 x f32>
  %w2 = weight() {name = "norm2.weight"} : tensor<4 x f32>
  %s, %n1 = add_rms_norm(%a, %b, %w1) {eps = 0.5} : tensor<3 x 8 x f32>, tensor<3 x 8 x f32>
  %n2 = rms_norm(%s, %w2) {eps = 0.25} : tensor<3 x 8 x f32>
  %y = add(%n1, %n2) : tensor<3 x 8 x f32>
  return %y
}
)";
  EXPECT_EQ(Fuse(input), expected);
}

// A decoder layer's tail after moe-lower: residual add + norm, then the
// dense MLP's gate/up, then the next residual add + norm.
TEST(Fuse, LayerTailFusesEveryPattern) {
  const std::string input =
      R"(graph @layer(%meta: !forward_meta, %h: tensor<4 x 8 x f32>, %attn: tensor<4 x 8 x f32>) {
  %ln = weight() {name = "layers.0.post_attention_layernorm.weight"} : tensor<8 x bf16>
  %wg = weight() {name = "layers.0.mlp.gate_proj.weight"} : tensor<12 x 8 x bf16>
  %wu = weight() {name = "layers.0.mlp.up_proj.weight"} : tensor<12 x 8 x bf16>
  %wd = weight() {name = "layers.0.mlp.down_proj.weight"} : tensor<8 x 12 x bf16>
  %next_ln = weight() {name = "layers.1.input_layernorm.weight"} : tensor<8 x bf16>
  %resid = add(%h, %attn) : tensor<4 x 8 x f32>
  %x = rms_norm(%resid, %ln) {eps = 1e-05} : tensor<4 x 8 x f32>
  %mlp.gate = linear(%x, %wg) : tensor<4 x 12 x f32>
  %mlp.up = linear(%x, %wu) : tensor<4 x 12 x f32>
  %mlp.act = silu_mul(%mlp.gate, %mlp.up) : tensor<4 x 12 x f32>
  %mlp.down = linear(%mlp.act, %wd) : tensor<4 x 8 x f32>
  %resid2 = add(%resid, %mlp.down) : tensor<4 x 8 x f32>
  %x2 = rms_norm(%resid2, %next_ln) {eps = 1e-05} : tensor<4 x 8 x f32>
  return %x2, %resid2
}
)";
  const std::string expected =
      R"(graph @layer(%meta: !forward_meta, %h: tensor<4 x 8 x f32>, %attn: tensor<4 x 8 x f32>) {
  %ln = weight() {name = "layers.0.post_attention_layernorm.weight"} : tensor<8 x bf16>
  %wg = weight() {name = "layers.0.mlp.gate_proj.weight"} : tensor<12 x 8 x bf16>
  %wu = weight() {name = "layers.0.mlp.up_proj.weight"} : tensor<12 x 8 x bf16>
  %wd = weight() {name = "layers.0.mlp.down_proj.weight"} : tensor<8 x 12 x bf16>
  %next_ln = weight() {name = "layers.1.input_layernorm.weight"} : tensor<8 x bf16>
  %resid, %x = add_rms_norm(%h, %attn, %ln) {eps = 1e-05} : tensor<4 x 8 x f32>, tensor<4 x 8 x f32>
  %mlp.act = linear_silu_mul(%x, %wg, %wu) : tensor<4 x 12 x f32>
  %mlp.down = linear(%mlp.act, %wd) : tensor<4 x 8 x f32>
  %resid2, %x2 = add_rms_norm(%resid, %mlp.down, %next_ln) {eps = 1e-05} : tensor<4 x 8 x f32>, tensor<4 x 8 x f32>
  return %x2, %resid2
}
)";
  bool changed = false;
  EXPECT_EQ(Fuse(input, &changed), expected);
  EXPECT_TRUE(changed);
  ExpectNoChange(expected);
}

}  // namespace
}  // namespace moegraph
