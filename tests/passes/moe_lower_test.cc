// moe-lower: IR text in, IR text out.
#include "passes/moe_lower.h"

#include <string>
#include <utility>

#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

constexpr const char* kPrefill =
    R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y = moe(%meta, %x, %router, %wg, %wu, %wd) {norm_topk_prob = 1, top_k = 2} : tensor<20 x 6 x f32>
  return %y
}
)";

std::string Decode() {
  std::string text = kPrefill;
  text.replace(text.find("\"prefill\""), 9, "\"decode\"");
  return text;
}

TEST(MoeLower, PrefillPermutesAndRunsGroupedGemms) {
  MoeLowerPass pass(SpecKey{MoePhase::kPrefill, 3, 3, 20, 4}, 8);
  bool changed = false;
  EXPECT_EQ(
      RunPass(kPrefill, pass, &changed),
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>
  %y.route, %y.route.1 = topk_route(%meta, %y.router) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>
  %y.align, %y.align.1 = moe_align(%y.route) {num_experts = 4} : tensor<40 x i32>, tensor<5 x i32>
  %y.permuted = moe_permute(%x, %y.align) {top_k = 2} : tensor<40 x 6 x f32>
  %y.gate = grouped_matmul(%y.permuted, %y.align.1, %wg) : tensor<40 x 5 x f32>
  %y.up = grouped_matmul(%y.permuted, %y.align.1, %wu) : tensor<40 x 5 x f32>
  %y.act = silu_mul(%y.gate, %y.up) : tensor<40 x 5 x f32>
  %y.down = grouped_matmul(%y.act, %y.align.1, %wd) : tensor<40 x 6 x f32>
  %y.out = moe_unpermute_reduce(%y.down, %y.align, %y.route.1) {top_k = 2} : tensor<20 x 6 x f32>
  return %y.out
}
)");
  EXPECT_TRUE(changed);
}

TEST(MoeLower, DecodeUsesTheFixedShapeExpertBatchedLayout) {
  MoeLowerPass pass(SpecKey{MoePhase::kDecode, 3, 3, 20, 4}, 8);
  EXPECT_EQ(
      RunPass(Decode(), pass),
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "decode", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>
  %y.route, %y.route.1 = topk_route(%meta, %y.router) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>
  %y.batch, %y.batch.1 = moe_expert_batch(%y.route) {num_experts = 4} : tensor<4 x i32>, tensor<4 x 20 x i32>
  %y.act = expert_batched_gate_up_silu(%x, %y.batch, %y.batch.1, %wg, %wu) {top_k = 2} : tensor<40 x 5 x f32>
  %y.down = expert_batched_down(%y.act, %y.batch, %y.batch.1, %wd) : tensor<40 x 6 x f32>
  %y.out = moe_combine(%meta, %y.down, %y.route.1) : tensor<20 x 6 x f32>
  return %y.out
}
)");
}

TEST(MoeLower, MlpBecomesTwoLinearsSiluMulAndALinear) {
  MoeLowerPass pass(SpecKey{MoePhase::kDecode, 1, 1, 3, 3}, 8);
  const std::string out = RunPass(
      R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 4 x f32>) attributes {max_moe_num_chunk = 1, moe_chunk_size = 8, moe_num_chunk = 1, moe_phase = "decode", seq_bucket = 3, token_bucket = 3} {
  %g = weight() {name = "g"} : tensor<6 x 4 x f32>
  %u = weight() {name = "u"} : tensor<6 x 4 x f32>
  %d = weight() {name = "d"} : tensor<4 x 6 x f32>
  %y = mlp(%meta, %x, %g, %u, %d) : tensor<3 x 4 x f32>
  return %y
}
)",
      pass);
  EXPECT_NE(out.find(R"(  %y.gate = linear(%x, %g) : tensor<3 x 6 x f32>
  %y.up = linear(%x, %u) : tensor<3 x 6 x f32>
  %y.act = silu_mul(%y.gate, %y.up) : tensor<3 x 6 x f32>
  %y.down = linear(%y.act, %d) : tensor<3 x 4 x f32>
  return %y.down)"),
            std::string::npos)
      << out;
}

// With its biases, each of the three linears is followed by a bias_add of its own bias.
TEST(MoeLower, BiasedMlpAddsEachBiasAfterItsLinear) {
  MoeLowerPass pass(SpecKey{MoePhase::kPrefill, 1, 1, 3, 3}, 8);
  bool changed = false;
  const std::string out = RunPass(
      R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 4 x f32>) attributes {max_moe_num_chunk = 1, moe_chunk_size = 8, moe_num_chunk = 1, moe_phase = "prefill", seq_bucket = 3, token_bucket = 3} {
  %g = weight() {name = "g"} : tensor<6 x 4 x f32>
  %u = weight() {name = "u"} : tensor<6 x 4 x f32>
  %d = weight() {name = "d"} : tensor<4 x 6 x f32>
  %gb = weight() {name = "gb"} : tensor<6 x bf16>
  %ub = weight() {name = "ub"} : tensor<6 x bf16>
  %db = weight() {name = "db"} : tensor<4 x bf16>
  %y = mlp(%meta, %x, %g, %u, %d, %gb, %ub, %db) : tensor<3 x 4 x f32>
  %z = add(%y, %x) : tensor<3 x 4 x f32>
  return %z
}
)",
      pass, &changed);
  EXPECT_TRUE(changed);
  EXPECT_NE(out.find(R"(  %y.gate = linear(%x, %g) : tensor<3 x 6 x f32>
  %y.gate_bias = bias_add(%y.gate, %gb) : tensor<3 x 6 x f32>
  %y.up = linear(%x, %u) : tensor<3 x 6 x f32>
  %y.up_bias = bias_add(%y.up, %ub) : tensor<3 x 6 x f32>
  %y.act = silu_mul(%y.gate_bias, %y.up_bias) : tensor<3 x 6 x f32>
  %y.down = linear(%y.act, %d) : tensor<3 x 4 x f32>
  %y.down_bias = bias_add(%y.down, %db) : tensor<3 x 4 x f32>
  %z = add(%y.down_bias, %x) : tensor<3 x 4 x f32>
  return %z)"),
            std::string::npos)
      << out;
}

// A GLM / DeepSeek-style router: the moe op's routing attributes and its %bias operand go to
// topk_route unchanged, in both phases.
constexpr const char* kGroupedPrefill =
    R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x f32>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %bias = weight() {name = "gate.e_score_correction_bias"} : tensor<4 x f32>
  %y = moe(%meta, %x, %router, %wg, %wu, %wd, %bias) {norm_min = 1e-20, norm_topk_prob = 1, num_groups = 2, routed_scaling_factor = 2.5, scoring = 1, top_k = 2, top_k_groups = 1} : tensor<20 x 6 x f32>
  return %y
}
)";

TEST(MoeLower, GroupedSigmoidRouteKeepsItsAttributesAndBiasInBothPhases) {
  const std::string route =
      "  %y.route, %y.route.1 = topk_route(%meta, %y.router, %bias) {norm_min = 1e-20, "
      "norm_topk_prob = 1, num_groups = 2, routed_scaling_factor = 2.5, row_offset = 0, "
      "scoring = 1, top_k = 2, top_k_groups = 1} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>\n";
  MoeLowerPass prefill(SpecKey{MoePhase::kPrefill, 3, 3, 20, 4}, 8);
  const std::string prefill_out = RunPass(kGroupedPrefill, prefill);
  EXPECT_NE(prefill_out.find("  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>\n" + route +
                             "  %y.align, %y.align.1 = moe_align(%y.route) {num_experts = 4}"),
            std::string::npos)
      << prefill_out;
  EXPECT_NE(prefill_out.find("moe_unpermute_reduce(%y.down, %y.align, %y.route.1)"),
            std::string::npos)
      << prefill_out;
  bool changed = true;  // the lowered graph, route and bias included, is left as it is
  EXPECT_EQ(RunPass(prefill_out, prefill, &changed), prefill_out);
  EXPECT_FALSE(changed);

  std::string decode = kGroupedPrefill;
  decode.replace(decode.find("\"prefill\""), 9, "\"decode\"");
  MoeLowerPass decode_pass(SpecKey{MoePhase::kDecode, 3, 3, 20, 4}, 8);
  const std::string decode_out = RunPass(decode, decode_pass);
  EXPECT_NE(decode_out.find(route + "  %y.batch, %y.batch.1 = moe_expert_batch(%y.route)"),
            std::string::npos)
      << decode_out;
  EXPECT_NE(decode_out.find("moe_combine(%meta, %y.down, %y.route.1)"), std::string::npos)
      << decode_out;
}

TEST(MoeLower, NothingToLowerIsNoChange) {
  MoeLowerPass pass(SpecKey{MoePhase::kPrefill, 3, 3, 20, 4}, 8);
  const std::string once =
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>
  %y.route, %y.route.1 = topk_route(%meta, %y.router) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>
  %y.align, %y.align.1 = moe_align(%y.route) {num_experts = 4} : tensor<40 x i32>, tensor<5 x i32>
  %y.permuted = moe_permute(%x, %y.align) {top_k = 2} : tensor<40 x 6 x f32>
  %y.gate = grouped_matmul(%y.permuted, %y.align.1, %wg) : tensor<40 x 5 x f32>
  %y.up = grouped_matmul(%y.permuted, %y.align.1, %wu) : tensor<40 x 5 x f32>
  %y.act = silu_mul(%y.gate, %y.up) : tensor<40 x 5 x f32>
  %y.down = grouped_matmul(%y.act, %y.align.1, %wd) : tensor<40 x 6 x f32>
  %y.out = moe_unpermute_reduce(%y.down, %y.align, %y.route.1) {top_k = 2} : tensor<20 x 6 x f32>
  return %y.out
}
)";
  bool changed = true;
  EXPECT_EQ(RunPass(once, pass, &changed), once);
  EXPECT_FALSE(changed);
}

// GPT-OSS's experts (activation 1): the router bias after the router linear, then the [in, out]
// GEMMs with their biases around clamped_swiglu, which gets the op's alpha and limit.
constexpr const char* kClampedPrefill =
    R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "router.weight"} : tensor<4 x 6 x bf16>
  %wgu = weight() {experts = 4, name = "experts.gate_up_proj"} : tensor<4 x 6 x 10 x bf16>
  %wd = weight() {experts = 4, name = "experts.down_proj"} : tensor<4 x 5 x 6 x bf16>
  %rb = weight() {name = "router.bias"} : tensor<4 x bf16>
  %bgu = weight() {name = "experts.gate_up_proj_bias"} : tensor<4 x 10 x bf16>
  %bd = weight() {name = "experts.down_proj_bias"} : tensor<4 x 6 x bf16>
  %y = moe(%meta, %x, %router, %wgu, %wd, %rb, %bgu, %bd) {activation = 1, norm_topk_prob = 1, swiglu_alpha = 1.5, swiglu_limit = 6.0, top_k = 2} : tensor<20 x 6 x f32>
  return %y
}
)";

TEST(MoeLower, ClampedSwigluPrefillRunsTheInOutGroupedGemmsWithBiases) {
  MoeLowerPass pass(SpecKey{MoePhase::kPrefill, 3, 3, 20, 4}, 8);
  EXPECT_EQ(
      RunPass(kClampedPrefill, pass),
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "router.weight"} : tensor<4 x 6 x bf16>
  %wgu = weight() {experts = 4, name = "experts.gate_up_proj"} : tensor<4 x 6 x 10 x bf16>
  %wd = weight() {experts = 4, name = "experts.down_proj"} : tensor<4 x 5 x 6 x bf16>
  %rb = weight() {name = "router.bias"} : tensor<4 x bf16>
  %bgu = weight() {name = "experts.gate_up_proj_bias"} : tensor<4 x 10 x bf16>
  %bd = weight() {name = "experts.down_proj_bias"} : tensor<4 x 6 x bf16>
  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>
  %y.router_bias = bias_add(%y.router, %rb) : tensor<20 x 4 x f32>
  %y.route, %y.route.1 = topk_route(%meta, %y.router_bias) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>
  %y.align, %y.align.1 = moe_align(%y.route) {num_experts = 4} : tensor<40 x i32>, tensor<5 x i32>
  %y.permuted = moe_permute(%x, %y.align) {top_k = 2} : tensor<40 x 6 x f32>
  %y.gate_up = grouped_matmul_kn(%y.permuted, %y.align.1, %wgu, %bgu) : tensor<40 x 10 x f32>
  %y.act = clamped_swiglu(%y.gate_up) {alpha = 1.5, limit = 6.0} : tensor<40 x 5 x f32>
  %y.down = grouped_matmul_kn(%y.act, %y.align.1, %wd, %bd) : tensor<40 x 6 x f32>
  %y.out = moe_unpermute_reduce(%y.down, %y.align, %y.route.1) {top_k = 2} : tensor<20 x 6 x f32>
  return %y.out
}
)");
}

TEST(MoeLower, ClampedSwigluDecodeRunsTheInOutExpertBatchedGemms) {
  std::string text = kClampedPrefill;
  text.replace(text.find("\"prefill\""), 9, "\"decode\"");
  MoeLowerPass pass(SpecKey{MoePhase::kDecode, 3, 3, 20, 4}, 8);
  EXPECT_EQ(
      RunPass(text, pass),
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "decode", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "router.weight"} : tensor<4 x 6 x bf16>
  %wgu = weight() {experts = 4, name = "experts.gate_up_proj"} : tensor<4 x 6 x 10 x bf16>
  %wd = weight() {experts = 4, name = "experts.down_proj"} : tensor<4 x 5 x 6 x bf16>
  %rb = weight() {name = "router.bias"} : tensor<4 x bf16>
  %bgu = weight() {name = "experts.gate_up_proj_bias"} : tensor<4 x 10 x bf16>
  %bd = weight() {name = "experts.down_proj_bias"} : tensor<4 x 6 x bf16>
  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>
  %y.router_bias = bias_add(%y.router, %rb) : tensor<20 x 4 x f32>
  %y.route, %y.route.1 = topk_route(%meta, %y.router_bias) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>
  %y.batch, %y.batch.1 = moe_expert_batch(%y.route) {num_experts = 4} : tensor<4 x i32>, tensor<4 x 20 x i32>
  %y.gate_up = expert_batched_matmul_kn(%x, %y.batch, %y.batch.1, %wgu, %bgu) {top_k = 2} : tensor<40 x 10 x f32>
  %y.act = clamped_swiglu(%y.gate_up) {alpha = 1.5, limit = 6.0} : tensor<40 x 5 x f32>
  %y.down = expert_batched_matmul_kn(%y.act, %y.batch, %y.batch.1, %wd, %bd) {top_k = 1} : tensor<40 x 6 x f32>
  %y.out = moe_combine(%meta, %y.down, %y.route.1) : tensor<20 x 6 x f32>
  return %y.out
}
)");
}

// The same experts [out, in] (out_major, GPT-OSS's MXFP4 checkpoints): the [out, in] GEMMs
// grouped_matmul / expert_batched_matmul take the same operands, biases included.
std::string OutMajor(std::string text) {
  for (auto [from, to] : {std::pair<std::string, std::string>{"tensor<4 x 6 x 10 x bf16>",
                                                              "tensor<4 x 10 x 6 x bf16>"},
                          {"tensor<4 x 5 x 6 x bf16>", "tensor<4 x 6 x 5 x bf16>"},
                          {"norm_topk_prob = 1, swiglu_alpha",
                           "norm_topk_prob = 1, out_major = 1, "
                           "swiglu_alpha"}}) {
    text.replace(text.find(from), from.size(), to);
  }
  return text;
}

TEST(MoeLower, OutMajorClampedSwigluRunsTheOutInGemmsWithBiases) {
  const std::string prefill = OutMajor(kClampedPrefill);
  MoeLowerPass prefill_pass(SpecKey{MoePhase::kPrefill, 3, 3, 20, 4}, 8);
  const std::string lowered = RunPass(prefill, prefill_pass);
  for (const char* want :
       {"%y.gate_up = grouped_matmul(%y.permuted, %y.align.1, %wgu, %bgu) : tensor<40 x 10 x f32>",
        "%y.act = clamped_swiglu(%y.gate_up) {alpha = 1.5, limit = 6.0} : tensor<40 x 5 x f32>",
        "%y.down = grouped_matmul(%y.act, %y.align.1, %wd, %bd) : tensor<40 x 6 x f32>"}) {
    EXPECT_NE(lowered.find(want), std::string::npos) << want << "\n" << lowered;
  }
  std::string decode = prefill;
  decode.replace(decode.find("\"prefill\""), 9, "\"decode\"");
  MoeLowerPass decode_pass(SpecKey{MoePhase::kDecode, 3, 3, 20, 4}, 8);
  const std::string batched = RunPass(decode, decode_pass);
  for (const char* want : {"%y.gate_up = expert_batched_matmul(%x, %y.batch, %y.batch.1, %wgu, "
                           "%bgu) {top_k = 2} : tensor<40 x 10 x f32>",
                           "%y.down = expert_batched_matmul(%y.act, %y.batch, %y.batch.1, %wd, "
                           "%bd) {top_k = 1} : tensor<40 x 6 x f32>"}) {
    EXPECT_NE(batched.find(want), std::string::npos) << want << "\n" << batched;
  }
  EXPECT_EQ(batched.find("_kn"), std::string::npos) << batched;
}

// Expert parallelism, rank 2 of 3 over 4 experts: it owns expert 3 alone (ranks 0 and 1
// own [0, 2) and [2, 3)), so its weights are one-expert slices from expert 3, and the
// dispatch's capacity is 3 ranks x 20 rows x min(top_k 2, 1 local expert) = 60 pairs.
TEST(MoeLower, ExpertParallelRankDispatchesRunsItsExpertsAndCombines) {
  MoeLowerPass pass(SpecKey{MoePhase::kDecode, 3, 3, 20, 4}, 8,
                    ExpertParallelLowering{.size = 3, .rank = 2, .max_chunk_rows = 20});
  EXPECT_EQ(
      RunPass(Decode(), pass),
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "decode", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>
  %y.route, %y.route.1 = topk_route(%meta, %y.router) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>
  %y.dispatch, %y.dispatch.1, %y.dispatch.2 = ep_dispatch(%meta, %x, %y.route) {capacity = 60, ep_rank = 2, ep_size = 3, num_experts = 4} : tensor<60 x 6 x f32>, tensor<60 x 1 x i32>, tensor<46 x i32>
  %y.align, %y.align.1 = moe_align(%y.dispatch.1) {num_experts = 1} : tensor<60 x i32>, tensor<2 x i32>
  %y.permuted = moe_permute(%y.dispatch, %y.align) {top_k = 1} : tensor<60 x 6 x f32>
  %wg.local = weight() {experts = 1, first_expert = 3, name = "e.{e}.gate"} : tensor<1 x 5 x 6 x bf16>
  %wu.local = weight() {experts = 1, first_expert = 3, name = "e.{e}.up"} : tensor<1 x 5 x 6 x bf16>
  %wd.local = weight() {experts = 1, first_expert = 3, name = "e.{e}.down"} : tensor<1 x 6 x 5 x bf16>
  %y.gate = grouped_matmul(%y.permuted, %y.align.1, %wg.local) : tensor<60 x 5 x f32>
  %y.up = grouped_matmul(%y.permuted, %y.align.1, %wu.local) : tensor<60 x 5 x f32>
  %y.act = silu_mul(%y.gate, %y.up) : tensor<60 x 5 x f32>
  %y.down = grouped_matmul(%y.act, %y.align.1, %wd.local) : tensor<60 x 6 x f32>
  %y.out = ep_combine(%meta, %y.down, %y.align, %y.align.1, %y.route.1, %y.dispatch.2) {capacity = 60, ep_rank = 2, ep_size = 3, num_experts = 4} : tensor<20 x 6 x f32>
  return %y.out
}
)");
}

TEST(MoeLower, ExpertParallelNeedsAnExpertPerRank) {
  MoeLowerPass pass(SpecKey{MoePhase::kPrefill, 3, 3, 20, 4}, 8,
                    ExpertParallelLowering{.size = 5, .rank = 0, .max_chunk_rows = 8});
  Graph graph = ParseOrDie(kPrefill);
  StatusOr<bool> changed = pass.Run(graph);
  ASSERT_FALSE(changed.ok());
  EXPECT_NE(changed.status().message().find("5 expert-parallel ranks for 4 experts: every rank "
                                            "must own one (at most 4 ranks)"),
            std::string::npos)
      << changed.status().ToString();
}

// GPT-OSS's experts on rank 1 of 2 (experts [2, 4)): the router and its bias stay whole, the
// experts and their bias rows are the rank's share.
TEST(MoeLower, ExpertParallelClampedSwigluTakesTheRanksExpertsAndBiasRows) {
  MoeLowerPass pass(SpecKey{MoePhase::kPrefill, 3, 3, 20, 4}, 8,
                    ExpertParallelLowering{.size = 2, .rank = 1, .max_chunk_rows = 20});
  EXPECT_EQ(
      RunPass(kClampedPrefill, pass),
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "router.weight"} : tensor<4 x 6 x bf16>
  %wgu = weight() {experts = 4, name = "experts.gate_up_proj"} : tensor<4 x 6 x 10 x bf16>
  %wd = weight() {experts = 4, name = "experts.down_proj"} : tensor<4 x 5 x 6 x bf16>
  %rb = weight() {name = "router.bias"} : tensor<4 x bf16>
  %bgu = weight() {name = "experts.gate_up_proj_bias"} : tensor<4 x 10 x bf16>
  %bd = weight() {name = "experts.down_proj_bias"} : tensor<4 x 6 x bf16>
  %y.router = linear(%x, %router) : tensor<20 x 4 x f32>
  %y.router_bias = bias_add(%y.router, %rb) : tensor<20 x 4 x f32>
  %y.route, %y.route.1 = topk_route(%meta, %y.router_bias) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<20 x 2 x i32>, tensor<20 x 2 x f32>
  %y.dispatch, %y.dispatch.1, %y.dispatch.2 = ep_dispatch(%meta, %x, %y.route) {capacity = 80, ep_rank = 1, ep_size = 2, num_experts = 4} : tensor<80 x 6 x f32>, tensor<80 x 1 x i32>, tensor<44 x i32>
  %y.align, %y.align.1 = moe_align(%y.dispatch.1) {num_experts = 2} : tensor<80 x i32>, tensor<3 x i32>
  %y.permuted = moe_permute(%y.dispatch, %y.align) {top_k = 1} : tensor<80 x 6 x f32>
  %wgu.local = weight() {experts = 2, first_expert = 2, name = "experts.gate_up_proj"} : tensor<2 x 6 x 10 x bf16>
  %wd.local = weight() {experts = 2, first_expert = 2, name = "experts.down_proj"} : tensor<2 x 5 x 6 x bf16>
  %bgu.local = weight() {first_expert = 2, name = "experts.gate_up_proj_bias"} : tensor<2 x 10 x bf16>
  %bd.local = weight() {first_expert = 2, name = "experts.down_proj_bias"} : tensor<2 x 6 x bf16>
  %y.gate_up = grouped_matmul_kn(%y.permuted, %y.align.1, %wgu.local, %bgu.local) : tensor<80 x 10 x f32>
  %y.act = clamped_swiglu(%y.gate_up) {alpha = 1.5, limit = 6.0} : tensor<80 x 5 x f32>
  %y.down = grouped_matmul_kn(%y.act, %y.align.1, %wd.local, %bd.local) : tensor<80 x 6 x f32>
  %y.out = ep_combine(%meta, %y.down, %y.align, %y.align.1, %y.route.1, %y.dispatch.2) {capacity = 80, ep_rank = 1, ep_size = 2, num_experts = 4} : tensor<20 x 6 x f32>
  return %y.out
}
)");
}

}  // namespace
}  // namespace moegraph
