// specialize: IR text in, IR text out.
#include "passes/specialize.h"

#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

constexpr const char* kGeneric = R"(graph @tiny(%meta: !forward_meta, %tokens: tensor<T x i32>) {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %h = embedding(%tokens, %embed) : tensor<T x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %n = rms_norm(%h, %norm) {eps = 1e-06} : tensor<T x 6 x f32>
  %last = gather_last(%meta, %n) : tensor<B x 6 x f32>
  %logits = linear(%last, %embed) : tensor<B x 11 x f32>
  return %logits
}
)";

TEST(Specialize, DecodeBindsSymbolsRecordsKeyAndFoldsGatherLast) {
  SpecializePass pass(SpecKey{MoePhase::kDecode, 1, 1, 4, 4}, /*chunk_size=*/8);
  bool changed = false;
  EXPECT_EQ(
      RunPass(kGeneric, pass, &changed),
      R"(graph @tiny(%meta: !forward_meta, %tokens: tensor<4 x i32>) attributes {max_moe_num_chunk = 1, moe_chunk_size = 8, moe_num_chunk = 1, moe_phase = "decode", seq_bucket = 4, token_bucket = 4} {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %h = embedding(%tokens, %embed) : tensor<4 x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %n = rms_norm(%h, %norm) {eps = 1e-06} : tensor<4 x 6 x f32>
  %logits = linear(%n, %embed) : tensor<4 x 11 x f32>
  return %logits
}
)");
  EXPECT_TRUE(changed);
}

TEST(Specialize, PrefillKeepsGatherLast) {
  SpecializePass pass(SpecKey{MoePhase::kPrefill, 1, 1, 8, 2}, /*chunk_size=*/8);
  EXPECT_EQ(
      RunPass(kGeneric, pass),
      R"(graph @tiny(%meta: !forward_meta, %tokens: tensor<8 x i32>) attributes {max_moe_num_chunk = 1, moe_chunk_size = 8, moe_num_chunk = 1, moe_phase = "prefill", seq_bucket = 2, token_bucket = 8} {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %h = embedding(%tokens, %embed) : tensor<8 x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %n = rms_norm(%h, %norm) {eps = 1e-06} : tensor<8 x 6 x f32>
  %last = gather_last(%meta, %n) : tensor<2 x 6 x f32>
  %logits = linear(%last, %embed) : tensor<2 x 11 x f32>
  return %logits
}
)");
}

TEST(Specialize, SameKeyAgainIsNoChange) {
  const std::string once =
      R"(graph @tiny(%meta: !forward_meta, %tokens: tensor<8 x i32>) attributes {max_moe_num_chunk = 1, moe_chunk_size = 8, moe_num_chunk = 1, moe_phase = "prefill", seq_bucket = 2, token_bucket = 8} {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %h = embedding(%tokens, %embed) : tensor<8 x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %n = rms_norm(%h, %norm) {eps = 1e-06} : tensor<8 x 6 x f32>
  %last = gather_last(%meta, %n) : tensor<2 x 6 x f32>
  %logits = linear(%last, %embed) : tensor<2 x 11 x f32>
  return %logits
}
)";
  SpecializePass pass(SpecKey{MoePhase::kPrefill, 1, 1, 8, 2}, /*chunk_size=*/8);
  bool changed = true;
  EXPECT_EQ(RunPass(once, pass, &changed), once);
  EXPECT_FALSE(changed);
}

TEST(Specialize, RefusesAnotherKeyAndBadKeys) {
  Graph graph = ParseOrDie(
      R"(graph @tiny(%meta: !forward_meta, %tokens: tensor<8 x i32>) attributes {max_moe_num_chunk = 1, moe_chunk_size = 8, moe_num_chunk = 1, moe_phase = "prefill", seq_bucket = 2, token_bucket = 8} {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %h = embedding(%tokens, %embed) : tensor<8 x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %n = rms_norm(%h, %norm) {eps = 1e-06} : tensor<8 x 6 x f32>
  %last = gather_last(%meta, %n) : tensor<2 x 6 x f32>
  %logits = linear(%last, %embed) : tensor<2 x 11 x f32>
  return %logits
}
)");
  SpecializePass other(SpecKey{MoePhase::kPrefill, 1, 1, 16, 2}, 8);
  StatusOr<bool> result = other.Run(graph);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("token_bucket = 8"), std::string::npos)
      << result.status().message();
  EXPECT_NE(result.status().message().find(
                "but the pass runs key phase=prefill,chunks=1,max_chunks=1,tokens=16,seqs=2"),
            std::string::npos)
      << result.status().message();
  Graph generic = ParseOrDie(kGeneric);
  SpecializePass decode_mismatch(SpecKey{MoePhase::kDecode, 1, 1, 8, 2}, 8);
  result = decode_mismatch.Run(generic);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("seqs must equal tokens"), std::string::npos);
  SpecializePass zero(SpecKey{MoePhase::kPrefill, 1, 1, 0, 2}, 8);
  EXPECT_FALSE(zero.Run(generic).ok());
}

TEST(Specialize, UnknownSymbolIsAnError) {
  Graph graph = ParseOrDie(R"(graph @g(%meta: !forward_meta, %x: tensor<S x 4 x f32>) {
  %y = add(%x, %x) : tensor<S x 4 x f32>
  return %y
}
)");
  SpecializePass pass(SpecKey{MoePhase::kPrefill, 1, 1, 8, 2}, 8);
  StatusOr<bool> result = pass.Run(graph);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("symbol 'S'"), std::string::npos);
}

}  // namespace
}  // namespace moegraph
