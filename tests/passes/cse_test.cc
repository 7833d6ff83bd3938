// cse: pure ops with the same kind, operands, attributes and types merge.
#include "passes/cse.h"

#include <gtest/gtest.h>

#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

// Duplicate weights merge first, which makes the two linears equal, which
// makes the two adds equal: one walk sees the whole cascade.
TEST(Cse, MergesCascadeOfDuplicates) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %w = weight() {name = "proj.weight"} : tensor<6 x 8 x bf16>
  %w.again = weight() {name = "proj.weight"} : tensor<6 x 8 x bf16>
  %a = linear(%x, %w) : tensor<4 x 6 x f32>
  %b = linear(%x, %w.again) : tensor<4 x 6 x f32>
  %c = add(%a, %b) : tensor<4 x 6 x f32>
  %d = add(%b, %a) : tensor<4 x 6 x f32>
  %e = add(%c, %d) : tensor<4 x 6 x f32>
  return %e, %d
}
)";
  const std::string expected = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %w = weight() {name = "proj.weight"} : tensor<6 x 8 x bf16>
  %a = linear(%x, %w) : tensor<4 x 6 x f32>
  %c = add(%a, %a) : tensor<4 x 6 x f32>
  %e = add(%c, %c) : tensor<4 x 6 x f32>
  return %e, %c
}
)";
  CsePass cse;
  bool changed = false;
  EXPECT_EQ(RunPass(input, cse, &changed), expected);
  EXPECT_TRUE(changed);
}

TEST(Cse, MergesEveryResultOfMultiResultOps) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %logits: tensor<4 x 4 x f32>) {
  %ids, %rw = topk_route(%meta, %logits) {norm_topk_prob = 1, top_k = 2} : tensor<4 x 2 x i32>, tensor<4 x 2 x f32>
  %ids2, %rw2 = topk_route(%meta, %logits) {norm_topk_prob = 1, top_k = 2} : tensor<4 x 2 x i32>, tensor<4 x 2 x f32>
  %s = add(%rw, %rw2) : tensor<4 x 2 x f32>
  return %ids2, %s
}
)";
  const std::string expected = R"(graph @g(%meta: !forward_meta, %logits: tensor<4 x 4 x f32>) {
  %ids, %rw = topk_route(%meta, %logits) {norm_topk_prob = 1, top_k = 2} : tensor<4 x 2 x i32>, tensor<4 x 2 x f32>
  %s = add(%rw, %rw) : tensor<4 x 2 x f32>
  return %ids, %s
}
)";
  CsePass cse;
  EXPECT_EQ(RunPass(input, cse), expected);
}

// Different attributes, operand order, weight names or types, and ops with
// effects (each attention writes the KV cache) do not merge.
TEST(Cse, NoChangeWhenNothingIsEqual) {
  const std::string input =
      R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>, %y: tensor<4 x 8 x f32>) {
  %w1 = weight() {name = "a.weight"} : tensor<8 x f32>
  %w2 = weight() {name = "b.weight"} : tensor<8 x f32>
  %w3 = weight() {name = "b.weight"} : tensor<8 x bf16>
  %n1 = rms_norm(%x, %w1) {eps = 1e-05} : tensor<4 x 8 x f32>
  %n2 = rms_norm(%x, %w1) {eps = 1e-06} : tensor<4 x 8 x f32>
  %n3 = rms_norm(%x, %w2) {eps = 1e-05} : tensor<4 x 8 x f32>
  %n4 = rms_norm(%x, %w3) {eps = 1e-05} : tensor<4 x 8 x f32>
  %s1 = add(%x, %y) : tensor<4 x 8 x f32>
  %s2 = add(%y, %x) : tensor<4 x 8 x f32>
  %k = slice_rows(%x) {begin = 0, rows = 4} : tensor<4 x 8 x f32>
  %o1 = attention(%meta, %x, %k, %k) {head_dim = 4, layer = 0, num_heads = 2, num_kv_heads = 2, scale = 0.5} : tensor<4 x 8 x f32>
  %o2 = attention(%meta, %x, %k, %k) {head_dim = 4, layer = 0, num_heads = 2, num_kv_heads = 2, scale = 0.5} : tensor<4 x 8 x f32>
  %z = concat_rows(%n1, %n2, %n3, %n4, %s1, %s2, %o1, %o2) : tensor<32 x 8 x f32>
  return %z
}
)";
  CsePass cse;
  bool changed = true;
  EXPECT_EQ(RunPass(input, cse, &changed), input);
  EXPECT_FALSE(changed);
}

// arena_offsets says where a result lives, not what it is.
TEST(Cse, IgnoresArenaOffsets) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %a = add(%x, %x) {arena_offsets = [0]} : tensor<4 x 8 x f32>
  %b = add(%x, %x) {arena_offsets = [128]} : tensor<4 x 8 x f32>
  %c = add(%a, %b) {arena_offsets = [256]} : tensor<4 x 8 x f32>
  return %c
}
)";
  const std::string expected = R"(graph @g(%meta: !forward_meta, %x: tensor<4 x 8 x f32>) {
  %a = add(%x, %x) {arena_offsets = [0]} : tensor<4 x 8 x f32>
  %c = add(%a, %a) {arena_offsets = [256]} : tensor<4 x 8 x f32>
  return %c
}
)";
  CsePass cse;
  EXPECT_EQ(RunPass(input, cse), expected);
}

}  // namespace
}  // namespace moegraph
