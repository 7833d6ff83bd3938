// dce: dead pure ops (and the weights only they read) go; effects stay.
#include "passes/dce.h"

#include <gtest/gtest.h>

#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

TEST(Dce, RemovesDeadChainAndItsWeights) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %norm_w = weight() {name = "norm.weight"} : tensor<8 x bf16>
  %proj_w = weight() {name = "proj.weight"} : tensor<6 x 8 x bf16>
  %n = rms_norm(%x, %norm_w) {eps = 1e-05} : tensor<4 x 8 x f32>
  %p = linear(%n, %proj_w) : tensor<4 x 6 x f32>
  %q = add(%p, %p) : tensor<4 x 6 x f32>
  %y = add(%x, %x) : tensor<4 x 8 x f32>
  return %y
}
)";
  const std::string expected = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %y = add(%x, %x) : tensor<4 x 8 x f32>
  return %y
}
)";
  DcePass dce;
  bool changed = false;
  EXPECT_EQ(RunPass(input, dce, &changed), expected);
  EXPECT_TRUE(changed);
}

TEST(Dce, KeepsUsedOpsAndUnusedResultsOfLiveOps) {
  // %rw is never read, but topk_route stays for %ids.
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %router = weight() {name = "mlp.gate.weight"} : tensor<4 x 8 x bf16>
  %dead_w = weight() {name = "unused.weight"} : tensor<8 x bf16>
  %logits = linear(%x, %router) : tensor<4 x 4 x f32>
  %ids, %rw = topk_route(%meta, %logits) {norm_topk_prob = 1, top_k = 2} : tensor<4 x 2 x i32>, tensor<4 x 2 x f32>
  %dead = add(%logits, %logits) : tensor<4 x 4 x f32>
  return %ids
}
)";
  const std::string expected = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %router = weight() {name = "mlp.gate.weight"} : tensor<4 x 8 x bf16>
  %logits = linear(%x, %router) : tensor<4 x 4 x f32>
  %ids, %rw = topk_route(%meta, %logits) {norm_topk_prob = 1, top_k = 2} : tensor<4 x 2 x i32>, tensor<4 x 2 x f32>
  return %ids
}
)";
  DcePass dce;
  bool changed = false;
  EXPECT_EQ(RunPass(input, dce, &changed), expected);
  EXPECT_TRUE(changed);
}

// attention writes the KV cache and all_gather must line up across ranks:
// unread results do not make them dead, nor what they read.
TEST(Dce, KeepsOpsWithEffectsAndTheirInputs) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %wk = weight() {name = "k_proj.weight"} : tensor<4 x 8 x bf16>
  %k = linear(%x, %wk) : tensor<4 x 4 x f32>
  %o = attention(%meta, %x, %k, %k) {head_dim = 4, layer = 0, num_heads = 2, num_kv_heads = 1, scale = 0.5} : tensor<4 x 8 x f32>
  %gathered = all_gather(%meta, %x) {world_size = 1} : tensor<4 x 8 x f32>
  %y = add(%x, %x) : tensor<4 x 8 x f32>
  return %y
}
)";
  DcePass dce;
  bool changed = true;
  EXPECT_EQ(RunPass(input, dce, &changed), input);
  EXPECT_FALSE(changed);
}

TEST(Dce, NoChangeWhenEverythingIsUsed) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %w = weight() {name = "norm.weight"} : tensor<8 x f32>
  %n = rms_norm(%x, %w) {eps = 1e-05} : tensor<4 x 8 x f32>
  %y = add(%n, %x) : tensor<4 x 8 x f32>
  return %n, %y
}
)";
  DcePass dce;
  bool changed = true;
  EXPECT_EQ(RunPass(input, dce, &changed), input);
  EXPECT_FALSE(changed);
}

// One backward walk reaches the fixed point: a second run finds nothing.
TEST(Dce, OneRunReachesTheFixedPoint) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %a = add(%x, %x) : tensor<4 x 8 x f32>
  %b = add(%a, %x) : tensor<4 x 8 x f32>
  %c = add(%b, %a) : tensor<4 x 8 x f32>
  %d = add(%c, %c) : tensor<4 x 8 x f32>
  %y = add(%a, %a) : tensor<4 x 8 x f32>
  return %y
}
)";
  const std::string expected = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %a = add(%x, %x) : tensor<4 x 8 x f32>
  %y = add(%a, %a) : tensor<4 x 8 x f32>
  return %y
}
)";
  DcePass dce;
  const std::string once = RunPass(input, dce);
  EXPECT_EQ(once, expected);
  bool changed = true;
  EXPECT_EQ(RunPass(once, dce, &changed), expected);
  EXPECT_FALSE(changed);
}

}  // namespace
}  // namespace moegraph
