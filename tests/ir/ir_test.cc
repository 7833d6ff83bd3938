// IR: text round trip, parser errors, printer robustness, verifier rules.
#include <gtest/gtest.h>

#include <cmath>

#include "frontends/builder.h"
#include "ir/op_registry.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/quant.h"
#include "ir/verifier.h"

namespace moegraph {
namespace {

// A small MoE block with a shared expert, written as the text form.
constexpr const char* kSharedExpertBlock =
    R"(graph @block(%meta: !forward_meta, %x: tensor<T x 16 x f32>) {
  %router = weight() {name = "mlp.gate.weight"} : tensor<4 x 16 x bf16>
  %wg = weight() {experts = 4, name = "mlp.experts.{e}.gate_proj.weight"} : tensor<4 x 8 x 16 x bf16>
  %wu = weight() {experts = 4, name = "mlp.experts.{e}.up_proj.weight"} : tensor<4 x 8 x 16 x bf16>
  %wd = weight() {experts = 4, name = "mlp.experts.{e}.down_proj.weight"} : tensor<4 x 16 x 8 x bf16>
  %sg = weight() {name = "mlp.shared_expert.gate_proj.weight"} : tensor<24 x 16 x f32>
  %su = weight() {name = "mlp.shared_expert.up_proj.weight"} : tensor<24 x 16 x f32>
  %sd = weight() {name = "mlp.shared_expert.down_proj.weight"} : tensor<16 x 24 x f32>
  %routed = moe(%meta, %x, %router, %wg, %wu, %wd) {norm_topk_prob = 1, top_k = 2} : tensor<T x 16 x f32>
  %shared = mlp(%meta, %x, %sg, %su, %sd) : tensor<T x 16 x f32>
  %y = add(%routed, %shared) : tensor<T x 16 x f32>
  return %y
}
)";

Graph ParseOrDie(const std::string& text) {
  StatusOr<Graph> g = ParseGraph(text, "test.mgir");
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return g.ok() ? std::move(g).value() : Graph();
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(IrText, RoundTripIsExact) {
  Graph g = ParseOrDie(kSharedExpertBlock);
  ASSERT_TRUE(Verify(g).ok()) << Verify(g).ToString();
  EXPECT_EQ(PrintGraph(g), kSharedExpertBlock);
  Graph again = ParseOrDie(PrintGraph(g));
  std::string why;
  EXPECT_TRUE(StructurallyEqual(g, again, &why)) << why;
}

TEST(IrText, RoundTripsAttributesOfEveryKind) {
  const std::string text =
      R"(graph @attrs(%meta: !forward_meta, %x: tensor<5 x 6 x f32>) attributes {phase = "decode", tokens = 8} {
  %w = weight() {name = "w \"quoted\" \\ name"} : tensor<6 x f32>
  %y = rms_norm(%x, %w) {eps = 1e-05} : tensor<5 x 6 x f32>
  %s = slice_rows(%y) {begin = 1, rows = 3} : tensor<3 x 6 x f32>
  return %s
}
)";
  Graph g = ParseOrDie(text);
  EXPECT_EQ(PrintGraph(g), text);
  EXPECT_EQ(g.attrs().at("phase"), Attribute(std::string("decode")));
  EXPECT_EQ(g.ops()[0].StringAttr("name"), "w \"quoted\" \\ name");
  EXPECT_DOUBLE_EQ(g.ops()[1].FloatAttr("eps"), 1e-5);
}

// rope's optional rotary_dim / interleaved print when set and only then.
constexpr const char* kRopeVariants =
    R"(graph @rope(%meta: !forward_meta, %x: tensor<T x 36 x f32>) {
  %a = rope(%meta, %x) {head_dim = 18, theta = 10000.0} : tensor<T x 36 x f32>
  %b = rope(%meta, %a) {head_dim = 18, rotary_dim = 10, theta = 10000.0} : tensor<T x 36 x f32>
  %c = rope(%meta, %b) {head_dim = 18, interleaved = 1, rotary_dim = 10, theta = 500000.0} : tensor<T x 36 x f32>
  %d = rope(%meta, %c) {head_dim = 6, interleaved = 1, theta = 10000.0} : tensor<T x 36 x f32>
  return %d
}
)";

TEST(IrText, RopeVariantsRoundTrip) {
  Graph g = ParseOrDie(kRopeVariants);
  ASSERT_TRUE(Verify(g).ok()) << Verify(g).ToString();
  EXPECT_EQ(PrintGraph(g), kRopeVariants);
  EXPECT_EQ(g.ops()[1].IntAttr("rotary_dim"), 10);
  EXPECT_EQ(g.ops()[2].IntAttr("interleaved"), 1);
  EXPECT_FALSE(g.ops()[0].attrs.contains("rotary_dim"));
  EXPECT_FALSE(g.ops()[0].attrs.contains("interleaved"));
  Graph again = ParseOrDie(PrintGraph(g));
  std::string why;
  EXPECT_TRUE(StructurallyEqual(g, again, &why)) << why;
}

TEST(IrText, ParserErrorsNameLineAndColumn) {
  struct Case {
    std::string text;
    std::string expected;
  } cases[] = {
      {"graph @g(%meta: !forward_meta) {\n  %y = nosuchop(%meta) : tensor<f32>\n  return %y\n}",
       "test.mgir:2:8: unknown op 'nosuchop'"},
      {"graph @g(%meta: !forward_meta) {\n  %y = add(%a, %b) : tensor<f32>\n  return %y\n}",
       "test.mgir:2:12: use of undefined value %a"},
      {"graph @g(%meta: !forward_meta, %meta: tensor<f32>) {\n  return %meta\n}",
       "test.mgir:1:32: value %meta is defined twice, found '%meta'"},
      {"graph @g(%meta: !forward_meta) {\n  %y = add(%meta, %meta) : tensor<3 4 f32>\n",
       "test.mgir:2:37: expected 'x' between the dims"},
      {"graph @g(%meta: !forward_meta) {",
       "test.mgir:1:33: expected an op name, found end of input"},
      {"graph @g(%meta: !bogus) {}", "test.mgir:1:17: unknown type '!bogus'"},
  };
  for (const Case& c : cases) {
    StatusOr<Graph> g = ParseGraph(c.text, "test.mgir");
    ASSERT_FALSE(g.ok()) << c.text;
    EXPECT_NE(g.status().message().find(c.expected), std::string::npos)
        << g.status().message() << "\nexpected: " << c.expected;
  }
}

TEST(IrPrinter, NeverThrowsOnIllFormedGraphs) {
  Graph g("broken");
  ValueId meta = g.AddInput("meta", Type::ForwardMeta());
  g.AddOp(nullptr, {meta, 42}, {}, {Type::Tensor(DType::kF32, {Dim::Static(3)})});
  g.AddOp(LookupOp("add"), {-7}, {}, {});
  g.AddOutput(99);
  std::vector<Diagnostic> faults = VerifyGraph(g);
  PrintOptions options;
  for (const Diagnostic& d : faults) {
    if (d.op_index >= 0) options.op_faults[d.op_index] += d.message + "; ";
  }
  std::string text;
  EXPECT_NO_THROW(text = PrintGraph(g, options));
  EXPECT_NE(text.find("<null-op>(%meta, %<invalid:42>)"), std::string::npos) << text;
  EXPECT_NE(text.find("add(%<invalid:-7>)  // FAULT:"), std::string::npos) << text;
  EXPECT_NE(text.find("return %<invalid:99>"), std::string::npos) << text;
  EXPECT_GE(faults.size(), 4u);
}

// ---- verifier ---------------------------------------------------------------

std::vector<Diagnostic> VerifyText(const std::string& text) {
  return VerifyGraph(ParseOrDie(text));
}

bool HasFault(const std::vector<Diagnostic>& faults, int op, const std::string& rule,
              const std::string& fragment) {
  for (const Diagnostic& d : faults) {
    if (d.op_index == op && d.rule == rule && d.message.find(fragment) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(Verifier, AcceptsWellFormedBlock) {
  EXPECT_TRUE(VerifyText(kSharedExpertBlock).empty());
}

// The bug class moegraph exists to rule out (FastDeploy PR 5138): a shared
// expert called without forward_meta.
TEST(Verifier, RejectsSharedExpertWithoutMeta) {
  Graph g = ParseOrDie(Replace(kSharedExpertBlock, "mlp(%meta, %x,", "mlp(%x,"));
  std::vector<Diagnostic> faults = VerifyGraph(g);
  ASSERT_TRUE(HasFault(faults, 8, "forward-meta", "'mlp' needs ForwardMeta"))
      << Verify(g).ToString();
  Status status = Verify(g);
  EXPECT_NE(status.message().find("op #8 'mlp' (line 10)"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("[rule: forward-meta]"), std::string::npos);
  EXPECT_NE(status.message().find("built without it"), std::string::npos);
}

// The other half of that bug class: a split/all-gather MoE helper whose
// signature lacks forward_meta.
TEST(Verifier, RejectsSplitAllGatherHelperWithoutMeta) {
  const std::string text = Replace(
      kSharedExpertBlock, "  %y = add(%routed, %shared) : tensor<T x 16 x f32>\n  return %y",
      "  %y = add(%routed, %shared) : tensor<T x 16 x f32>\n"
      "  %g = all_gather(%y) {world_size = 1} : tensor<T x 16 x f32>\n  return %g");
  std::vector<Diagnostic> faults = VerifyText(text);
  EXPECT_TRUE(HasFault(faults, 10, "forward-meta", "'all_gather' needs ForwardMeta"));
  const std::string fixed = Replace(text, "all_gather(%y)", "all_gather(%meta, %y)");
  EXPECT_TRUE(VerifyText(fixed).empty());
}

TEST(Verifier, RejectsMoeWithoutMetaAndMetaNotFirst) {
  EXPECT_TRUE(HasFault(VerifyText(Replace(kSharedExpertBlock, "moe(%meta, %x,", "moe(%x,")), 7,
                       "forward-meta", "built without it"));
  EXPECT_TRUE(HasFault(VerifyText(Replace(kSharedExpertBlock, "mlp(%meta, %x,", "mlp(%x, %meta,")),
                       8, "forward-meta", "passed, but not first"));
}

TEST(Verifier, BuilderRejectsMissingMetaToo) {
  GraphBuilder b("g");
  ValueId x = b.Input("x", Type::Tensor(DType::kF32, {Dim::Symbol("T"), Dim::Static(4)}));
  ValueId wg = b.Weight("g", Type::Tensor(DType::kF32, {Dim::Static(6), Dim::Static(4)}));
  ValueId wu = b.Weight("u", Type::Tensor(DType::kF32, {Dim::Static(6), Dim::Static(4)}));
  ValueId wd = b.Weight("d", Type::Tensor(DType::kF32, {Dim::Static(4), Dim::Static(6)}));
  b.Output(b.Add1("mlp", {x, wg, wu, wd}));
  StatusOr<Graph> g = std::move(b).Finish();
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("'mlp' needs ForwardMeta"), std::string::npos)
      << g.status().message();
}

TEST(Verifier, RejectsGraphWithoutMetaInput) {
  std::vector<Diagnostic> faults = VerifyText(
      "graph @g(%x: tensor<4 x f32>) {\n  %y = add(%x, %x) : tensor<4 x f32>\n  return %y\n}");
  EXPECT_TRUE(HasFault(faults, -1, "forward-meta", "first graph input must be %meta"));
}

// The shared expert with use_bias (Ernie 4.5): the mlp op's three biases, ops 7-9.
std::string BiasedSharedExpertBlock(const std::string& biases = "%sgb, %sub, %sdb") {
  const std::string with_biases = Replace(
      kSharedExpertBlock, "  %routed = moe(",
      "  %sgb = weight() {name = \"mlp.shared_expert.gate_proj.bias\"} : tensor<24 x f32>\n"
      "  %sub = weight() {name = \"mlp.shared_expert.up_proj.bias\"} : tensor<24 x f32>\n"
      "  %sdb = weight() {name = \"mlp.shared_expert.down_proj.bias\"} : tensor<16 x bf16>\n"
      "  %routed = moe(");
  return Replace(with_biases, "mlp(%meta, %x, %sg, %su, %sd)",
                 "mlp(%meta, %x, %sg, %su, %sd" + (biases.empty() ? "" : ", " + biases) + ")");
}

TEST(Verifier, MlpTakesAllThreeBiasesOrNone) {
  EXPECT_TRUE(VerifyText(BiasedSharedExpertBlock()).empty());
  EXPECT_TRUE(VerifyText(BiasedSharedExpertBlock("")).empty());
  EXPECT_TRUE(HasFault(VerifyText(BiasedSharedExpertBlock("%sgb")), 11, "types",
                       "either no biases or all three (gate, up, down), got 1 biases"));
  EXPECT_TRUE(
      HasFault(VerifyText(BiasedSharedExpertBlock("%sgb, %sub")), 11, "types", "got 2 biases"));
  // gate and up biases are [I], the down bias [H].
  EXPECT_TRUE(HasFault(VerifyText(BiasedSharedExpertBlock("%sgb, %sdb, %sub")), 11, "types",
                       "up bias [I] mismatch: 16 vs 24"));
  EXPECT_TRUE(HasFault(VerifyText(BiasedSharedExpertBlock("%sgb, %sub, %sub")), 11, "types",
                       "down bias [H] mismatch: 24 vs 16"));
  EXPECT_TRUE(HasFault(VerifyText(BiasedSharedExpertBlock("%sgb, %sub, %x")), 11, "types",
                       "down bias [H] must have rank 1"));
  // A biased MLP still takes %meta first (FastDeploy PR 5138).
  EXPECT_TRUE(HasFault(VerifyText(Replace(BiasedSharedExpertBlock(), "mlp(%meta, %x,", "mlp(%x,")),
                       11, "forward-meta", "'mlp' needs ForwardMeta"));
}

TEST(Verifier, TypesShapesAndAttributes) {
  // Declared result type disagrees with the rule.
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kSharedExpertBlock, "%y = add(%routed, %shared) : tensor<T x 16 x f32>",
                         "%y = add(%routed, %shared) : tensor<T x 17 x f32>")),
      9, "types", "declared tensor<T x 17 x f32> but the operands give tensor<T x 16 x f32>"));
  // Expert weight with the wrong hidden size.
  EXPECT_TRUE(HasFault(VerifyText(Replace(kSharedExpertBlock, "tensor<4 x 16 x 8 x bf16>",
                                          "tensor<4 x 15 x 8 x bf16>")),
                       7, "types", "down rows mismatch"));
  // top_k out of range / above the expert count, unknown and missing attributes.
  EXPECT_TRUE(HasFault(VerifyText(Replace(kSharedExpertBlock, "top_k = 2", "top_k = 0")), 7,
                       "attributes", "'top_k' = 0 is outside [1, 1024]"));
  EXPECT_TRUE(HasFault(VerifyText(Replace(kSharedExpertBlock, "top_k = 2", "top_k = 5")), 7,
                       "types", "top_k (5) exceeds the expert count (4)"));
  EXPECT_TRUE(HasFault(VerifyText(Replace(kSharedExpertBlock, "top_k = 2", "top_k = 2, bogus = 1")),
                       7, "attributes", "has no attribute 'bogus'"));
  EXPECT_TRUE(HasFault(VerifyText(Replace(kSharedExpertBlock, "norm_topk_prob = 1, ", "")), 7,
                       "attributes", "missing attribute 'norm_topk_prob'"));
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kSharedExpertBlock, "norm_topk_prob = 1", "norm_topk_prob = \"yes\"")), 7,
      "attributes", "must be an integer"));
}

TEST(Verifier, RopeRotaryDimAndInterleaved) {
  const std::string b = "{head_dim = 18, rotary_dim = 10, theta = 10000.0}";
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kRopeVariants, b, "{head_dim = 18, rotary_dim = 9, theta = 10000.0}")), 1,
      "types",
      "'rope': rotary_dim (9) must be even and in [2, head_dim = 18] (or 0 for "
      "the whole head)"));
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kRopeVariants, b, "{head_dim = 18, rotary_dim = 20, theta = 10000.0}")), 1,
      "types", "'rope': rotary_dim (20) must be even and in [2, head_dim = 18]"));
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kRopeVariants, b, "{head_dim = 18, rotary_dim = -2, theta = 10000.0}")), 1,
      "attributes", "'rotary_dim' = -2 is outside [0, 4096]"));
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kRopeVariants, b, "{head_dim = 18, interleaved = 2, theta = 10000.0}")), 1,
      "attributes", "'interleaved' = 2 is outside [0, 1]"));
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kRopeVariants, b, "{head_dim = 18, interleaved = 1.0, theta = 10000.0}")),
      1, "attributes", "'interleaved' must be an integer"));
  // 0 is the whole head, as when absent.
  EXPECT_TRUE(
      VerifyText(Replace(kRopeVariants, b,
                         "{head_dim = 18, interleaved = 0, rotary_dim = 0, theta = 10000.0}"))
          .empty());
}

// kSharedExpertBlock's moe op (then op 8) with a score-correction bias of `bias_type` and the
// routing attributes `attrs`.
std::string RoutedBlock(const std::string& bias_type, const std::string& attrs) {
  std::string text =
      Replace(kSharedExpertBlock, "  %routed = moe(",
              "  %bias = weight() {name = \"mlp.gate.e_score_correction_bias\"} : " + bias_type +
                  "\n  %routed = moe(");
  return Replace(text, "%wd) {norm_topk_prob = 1, top_k = 2}", "%wd, %bias) {" + attrs + "}");
}

TEST(Verifier, RoutingModesAndTheCorrectionBias) {
  const std::string grouped =
      "norm_min = 1e-20, norm_topk_prob = 1, num_groups = 2, routed_scaling_factor = 2.5, "
      "scoring = 1, top_k = 2, top_k_groups = 1";
  Graph g = ParseOrDie(RoutedBlock("tensor<4 x f32>", grouped));
  ASSERT_TRUE(Verify(g).ok()) << Verify(g).ToString();
  EXPECT_EQ(PrintGraph(g), RoutedBlock("tensor<4 x f32>", grouped));  // printed as written

  EXPECT_TRUE(HasFault(VerifyText(RoutedBlock("tensor<5 x f32>", grouped)), 8, "types",
                       "bias [E] and the expert count mismatch: 5 vs 4"));
  EXPECT_TRUE(HasFault(VerifyText(RoutedBlock("tensor<4 x bf16>", grouped)), 8, "types",
                       "bias must be f32, got tensor<4 x bf16>"));
  EXPECT_TRUE(HasFault(VerifyText(RoutedBlock("tensor<2 x 2 x f32>", grouped)), 8, "types",
                       "bias must have rank 1"));
  EXPECT_TRUE(HasFault(VerifyText(RoutedBlock("tensor<4 x f32>",
                                              "num_groups = 3, norm_topk_prob "
                                              "= 1, top_k = 2")),
                       8, "types", "num_groups (3) must divide the expert count (4)"));
  EXPECT_TRUE(HasFault(
      VerifyText(RoutedBlock("tensor<4 x f32>", "num_groups = 4, norm_topk_prob = 1, top_k = 2")),
      8, "types", "num_groups (4) leaves groups of 1 expert"));
  EXPECT_TRUE(HasFault(VerifyText(RoutedBlock("tensor<4 x f32>",
                                              "num_groups = 2, norm_topk_prob = 1, top_k = 2, "
                                              "top_k_groups = 3")),
                       8, "types", "top_k_groups (3) exceeds num_groups (2)"));
  EXPECT_TRUE(HasFault(VerifyText(RoutedBlock("tensor<4 x f32>",
                                              "num_groups = 2, norm_topk_prob = 1, top_k = 3, "
                                              "top_k_groups = 1")),
                       8, "types",
                       "top_k (3) exceeds the 2 experts of the kept groups (top_k_groups 1 x 2 "
                       "experts)"));
  EXPECT_TRUE(HasFault(
      VerifyText(RoutedBlock("tensor<4 x f32>", "norm_topk_prob = 1, scoring = 2, top_k = 2")), 8,
      "attributes", "'scoring' = 2 is outside [0, 1]"));
  EXPECT_TRUE(HasFault(VerifyText(RoutedBlock("tensor<4 x f32>",
                                              "norm_topk_prob = 1, routed_scaling_factor = 0.0, "
                                              "top_k = 2")),
                       8, "types", "'routed_scaling_factor' must be finite and > 0"));
  EXPECT_TRUE(HasFault(
      VerifyText(RoutedBlock("tensor<4 x f32>", "norm_min = 0.5, norm_topk_prob = 0, top_k = 2")),
      8, "types", "'norm_min' only applies with norm_topk_prob = 1"));
}

TEST(Verifier, OperandCountsAndSsa) {
  EXPECT_TRUE(
      HasFault(VerifyText(Replace(kSharedExpertBlock, "add(%routed, %shared)", "add(%routed)")), 9,
               "operands", "takes 2 data operands, got 1"));
  // Use before definition (reordered ops).
  Graph g = ParseOrDie(kSharedExpertBlock);
  std::vector<Op> ops = g.ops();
  std::swap(ops[8], ops[9]);
  g.ReplaceOps(ops);
  EXPECT_TRUE(HasFault(VerifyGraph(g), 8, "ssa", "%shared is used before it is defined"));
}

TEST(Registry, EveryOpIsDocumentedAndItsExampleParses) {
  for (const OpDef* def : AllOps()) {
    EXPECT_FALSE(def->summary.empty()) << def->name;
    EXPECT_NE(def->example.find(def->name + "("), std::string::npos) << def->name;
    EXPECT_NE(def->infer, nullptr) << def->name;
    EXPECT_NE(def->Has(kKernel), def->Has(kWeight) || def->name == "moe" || def->name == "mlp")
        << def->name << ": only weight and the ops moe-lower decomposes are not kernels";
  }
}

// Kernels learn num_tokens only through ForwardMeta, so an op that masks
// padding token rows must take %meta; and the ops whose rows can be
// (token, expert) pairs must not mask by the token count.
TEST(Registry, OnlyForwardMetaOpsHaveTokenRows) {
  for (const OpDef* def : AllOps()) {
    if (def->Has(kTokenRows)) {
      EXPECT_TRUE(def->Has(kNeedsForwardMeta)) << def->name;
    }
  }
  for (const char* name :
       {"linear", "silu_mul", "add", "rms_norm", "add_rms_norm", "linear_silu_mul", "moe_permute",
        "grouped_matmul", "grouped_matmul_silu_mul", "expert_batched_gate_up_silu",
        "expert_batched_down", "embedding"}) {
    const OpDef* def = LookupOp(name);
    ASSERT_NE(def, nullptr) << name;
    EXPECT_FALSE(def->Has(kNeedsForwardMeta) || def->Has(kTokenRows)) << name;
  }
  for (const char* name : {"rope", "attention", "mlp", "moe", "topk_route", "moe_combine"}) {
    EXPECT_TRUE(LookupOp(name)->Has(kTokenRows)) << name;
  }
}

// ---- quantized weights --------------------------------------------------------

// An fp8 block-quantized linear (out 37, in 50, blocks 16 x 16: edge blocks partial) and a
// stacked fp8 expert weight: one value each, whose weight op names its scales.
constexpr const char* kFp8Linear =
    R"(graph @fp8(%meta: !forward_meta, %x: tensor<T x 50 x f32>) {
  %w = weight() {block_cols = 16, block_rows = 16, name = "q_proj.weight", quant = "fp8_block", scale = "q_proj.weight_scale_inv"} : tensor<37 x 50 x fp8e4m3>
  %y = linear(%x, %w) : tensor<T x 37 x f32>
  %wd = weight() {block_cols = 16, block_rows = 16, experts = 3, name = "experts.{e}.down_proj.weight", quant = "fp8_block", scale = "experts.{e}.down_proj.weight_scale_inv"} : tensor<3 x 37 x 50 x fp8e4m3>
  return %y
}
)";

TEST(IrText, QuantizedWeightsRoundTripAndVerify) {
  Graph g = ParseOrDie(kFp8Linear);
  ASSERT_TRUE(Verify(g).ok()) << Verify(g).ToString();
  EXPECT_EQ(PrintGraph(g), kFp8Linear);
  StatusOr<WeightQuant> quant = WeightQuantOf(g.ops()[2]);
  ASSERT_TRUE(quant.ok()) << quant.status().ToString();
  EXPECT_EQ(*quant, (WeightQuant{QuantScheme::kFp8Block, 16, 16}));
  EXPECT_EQ(QuantScaleShape(*quant, {3, 37, 50}), (std::vector<int64_t>{3, 3, 4}));
  StatusOr<WeightQuant> plain = WeightQuantOf(ParseOrDie(kSharedExpertBlock).ops()[0]);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->quantized());
}

TEST(Verifier, QuantizedWeightsNeedTheirScalesAndStorageDType) {
  const std::string w =
      R"({block_cols = 16, block_rows = 16, name = "q_proj.weight", quant = "fp8_block", scale = "q_proj.weight_scale_inv"} : tensor<37 x 50 x fp8e4m3>)";
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kFp8Linear, w, R"({name = "q_proj.weight"} : tensor<37 x 50 x fp8e4m3>)")),
      0, "types", "an fp8e4m3 weight needs its scales"));
  EXPECT_TRUE(
      HasFault(VerifyText(Replace(kFp8Linear, "block_cols = 16, block_rows = 16, name = \"q_proj",
                                  "block_rows = 16, name = \"q_proj")),
               0, "types", "needs all of quant, scale, block_rows and block_cols"));
  EXPECT_TRUE(
      HasFault(VerifyText(Replace(kFp8Linear, "37 x 50 x fp8e4m3>\n  %y", "37 x 50 x bf16>\n  %y")),
               0, "types", "a fp8_block weight is fp8e4m3 [..., N, K], got"));
  EXPECT_TRUE(HasFault(VerifyText(Replace(kFp8Linear, "quant = \"fp8_block\", scale = \"q_proj",
                                          "quant = \"int3\", scale = \"q_proj")),
                       0, "types", "unknown quant \"int3\""));
  EXPECT_TRUE(
      HasFault(VerifyText(Replace(kFp8Linear, "block_cols = 16, block_rows = 16, name = \"q_proj",
                                  "block_cols = 0, block_rows = 16, name = \"q_proj")),
               0, "attributes", "'block_cols' = 0 is outside"));
  // An fp8 weight is a matmul weight only: not an embedding table.
  EXPECT_TRUE(HasFault(VerifyText(R"(graph @n(%meta: !forward_meta, %t: tensor<T x i32>) {
  %w = weight() {block_cols = 16, block_rows = 16, name = "n.weight", quant = "fp8_block", scale = "n.weight_scale_inv"} : tensor<1 x 50 x fp8e4m3>
  %y = embedding(%t, %w) : tensor<T x 50 x f32>
  return %y
}
)"),
                       1, "types", "must be f32, f16 or bf16"));
}

// mla_attention's kv_b may be block-scaled fp8 (its weight op names the scales), as the
// published DeepSeek-V3 checkpoints store kv_b_proj; an integer kv_b is still refused.
constexpr const char* kFp8Mla =
    R"(graph @mla(%meta: !forward_meta, %qn: tensor<T x 15 x f32>, %qp: tensor<T x 18 x f32>, %lat: tensor<T x 40 x f32>, %kp: tensor<T x 6 x f32>) {
  %kv_b = weight() {block_cols = 16, block_rows = 16, name = "kv_b_proj.weight", quant = "fp8_block", scale = "kv_b_proj.weight_scale_inv"} : tensor<36 x 40 x fp8e4m3>
  %o = mla_attention(%meta, %qn, %qp, %lat, %kp, %kv_b) {kv_lora_rank = 40, layer = 0, num_heads = 3, qk_nope_head_dim = 5, qk_rope_head_dim = 6, scale = 0.3, v_head_dim = 7} : tensor<T x 21 x f32>
  return %o
}
)";

TEST(Verifier, MlaAttentionTakesAnFp8KvB) {
  Graph g = ParseOrDie(kFp8Mla);
  ASSERT_TRUE(Verify(g).ok()) << Verify(g).ToString();
  EXPECT_EQ(PrintGraph(g), kFp8Mla);
  EXPECT_TRUE(
      HasFault(VerifyText(Replace(kFp8Mla,
                                  "{block_cols = 16, block_rows = 16, name = "
                                  "\"kv_b_proj.weight\", quant = \"fp8_block\", scale = "
                                  "\"kv_b_proj.weight_scale_inv\"} : tensor<36 x 40 x fp8e4m3>",
                                  "{name = \"kv_b_proj.weight\"} : tensor<36 x 40 x i32>")),
               1, "types", "kv_b must be f32, f16, bf16, fp8e4m3 or mxfp4"));
}

TEST(Fp8E4M3, DecodesEveryByteExactly) {
  // Normals: (1 + m / 8) * 2^(e - 7); subnormals m / 8 * 2^-6; 0x7f / 0xff NaN; no infinity.
  for (int v = 0; v < 256; ++v) {
    const int sign = v & 0x80 ? -1 : 1, e = (v >> 3) & 0xf, m = v & 7;
    const float got = Fp8E4M3ToF32(static_cast<uint8_t>(v));
    if (e == 15 && m == 7) {
      EXPECT_TRUE(std::isnan(got)) << v;
      continue;
    }
    const double want = sign * (e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1 + m / 8.0, e - 7));
    EXPECT_EQ(got, static_cast<float>(want)) << "byte " << v;
  }
  EXPECT_EQ(Fp8E4M3ToF32(0x7e), 448.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::signbit(Fp8E4M3ToF32(0x80)));
}

// GPT-OSS's experts: moe with activation = 1 over [in, out] weights and three biases.
constexpr const char* kClampedMoe =
    R"(graph @block(%meta: !forward_meta, %x: tensor<T x 16 x f32>) {
  %router = weight() {name = "mlp.router.weight"} : tensor<4 x 16 x bf16>
  %wgu = weight() {experts = 4, name = "mlp.experts.gate_up_proj"} : tensor<4 x 16 x 10 x bf16>
  %wd = weight() {experts = 4, name = "mlp.experts.down_proj"} : tensor<4 x 5 x 16 x bf16>
  %rb = weight() {name = "mlp.router.bias"} : tensor<4 x bf16>
  %bgu = weight() {name = "mlp.experts.gate_up_proj_bias"} : tensor<4 x 10 x bf16>
  %bd = weight() {name = "mlp.experts.down_proj_bias"} : tensor<4 x 16 x bf16>
  %y = moe(%meta, %x, %router, %wgu, %wd, %rb, %bgu, %bd) {activation = 1, norm_topk_prob = 1, top_k = 2} : tensor<T x 16 x f32>
  return %y
}
)";

TEST(Verifier, ClampedSwigluMoeChecksItsInOutWeightsAndBiases) {
  EXPECT_TRUE(VerifyText(kClampedMoe).empty());
  // Without biases it is still an op; with some of them it is not.
  EXPECT_TRUE(VerifyText(Replace(kClampedMoe, "%wd, %rb, %bgu, %bd)", "%wd)")).empty());
  EXPECT_TRUE(HasFault(VerifyText(Replace(kClampedMoe, "%wd, %rb, %bgu, %bd)", "%wd, %rb)")), 6,
                       "types", "4 or 7 operands"));
  // gate_up's columns are interleaved (gate, up) pairs: an even count.
  EXPECT_TRUE(HasFault(VerifyText(Replace(Replace(kClampedMoe, "tensor<4 x 16 x 10 x bf16>",
                                                  "tensor<4 x 16 x 9 x "
                                                  "bf16>"),
                                          "tensor<4 x 10 x bf16>", "tensor<4 x 9 x bf16>")),
                       6, "types", "needs an even 2I"));
  // down is [E, I, H] with I = gate_up's columns / 2.
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kClampedMoe, "tensor<4 x 5 x 16 x bf16>", "tensor<4 x 16 x 5 x bf16>")), 6,
      "types", "down rows (in)"));
  // The SiLU op takes no expert biases: it reads operand 5 as the correction bias [E].
  EXPECT_TRUE(HasFault(VerifyText(Replace(kClampedMoe, "activation = 1, ", "")), 6, "types",
                       "bias must have rank 1"));
}

// The same experts [out, in], as MXFP4 checkpoints store them: gate_up [E, 2I, H] with
// interleaved rows, down [E, H, I]; mxfp4 storage with its scales is a matmul weight here.
constexpr const char* kOutMajorMoe =
    R"(graph @block(%meta: !forward_meta, %x: tensor<T x 32 x f32>) {
  %router = weight() {name = "mlp.router.weight"} : tensor<4 x 32 x bf16>
  %wgu = weight() {block_cols = 32, block_rows = 1, experts = 4, name = "mlp.experts.gate_up_proj_blocks", quant = "mxfp4", scale = "mlp.experts.gate_up_proj_scales"} : tensor<4 x 10 x 32 x mxfp4>
  %wd = weight() {experts = 4, name = "mlp.experts.down_proj"} : tensor<4 x 32 x 5 x bf16>
  %rb = weight() {name = "mlp.router.bias"} : tensor<4 x bf16>
  %bgu = weight() {name = "mlp.experts.gate_up_proj_bias"} : tensor<4 x 10 x bf16>
  %bd = weight() {name = "mlp.experts.down_proj_bias"} : tensor<4 x 32 x bf16>
  %y = moe(%meta, %x, %router, %wgu, %wd, %rb, %bgu, %bd) {activation = 1, norm_topk_prob = 1, out_major = 1, top_k = 2} : tensor<T x 32 x f32>
  return %y
}
)";

TEST(Verifier, OutMajorClampedSwigluMoeTakesOutInWeights) {
  EXPECT_TRUE(VerifyText(kOutMajorMoe).empty());
  // [in, out] down under out_major: its rows must be H.
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kOutMajorMoe, "tensor<4 x 32 x 5 x bf16>", "tensor<4 x 5 x 32 x bf16>")),
      6, "types", "down rows"));
  // The [in, out] reading of the same graph fails on gate_up's storage and layout.
  EXPECT_FALSE(VerifyText(Replace(kOutMajorMoe, "out_major = 1, ", "")).empty());
  // out_major is the clamped SwiGLU experts' option only.
  EXPECT_TRUE(HasFault(VerifyText(Replace(kOutMajorMoe, "activation = 1, ", "")), 6, "types",
                       "out_major needs activation = 1"));
  // mxfp4 weights cover 32 inputs per scale: K must be a multiple of 32.
  EXPECT_TRUE(HasFault(VerifyText(Replace(kOutMajorMoe, "tensor<4 x 10 x 32 x mxfp4>",
                                          "tensor<4 x 10 x 16 x mxfp4>")),
                       1, "types", "multiple of 32"));
  // An mxfp4 weight without its scales is refused.
  EXPECT_TRUE(HasFault(VerifyText(Replace(kOutMajorMoe,
                                          "{block_cols = 32, block_rows = 1, experts = 4, name = "
                                          "\"mlp.experts.gate_up_proj_blocks\", quant = "
                                          "\"mxfp4\", scale = "
                                          "\"mlp.experts.gate_up_proj_scales\"}",
                                          "{experts = 4, name = \"x\"}")),
                       1, "types", "an mxfp4 weight needs its scales"));
}

}  // namespace
// GPT-OSS's MXFP4 experts lowered: grouped_matmul with its bias (prefill) and
// expert_batched_matmul over the out-major [E, N, K] weight (decode), both reading the packed
// mxfp4 weight whose weight op names its e8m0 scales.
constexpr const char* kMxfp4Experts =
    R"(graph @mxfp4(%meta: !forward_meta, %xp: tensor<12 x 64 x f32>, %offsets: tensor<4 x i32>, %x: tensor<4 x 64 x f32>, %be: tensor<3 x i32>, %bp: tensor<3 x 4 x i32>) {
  %w = weight() {block_cols = 32, block_rows = 1, experts = 3, name = "experts.gate_up_proj_blocks", quant = "mxfp4", scale = "experts.gate_up_proj_scales"} : tensor<3 x 38 x 64 x mxfp4>
  %b = weight() {name = "experts.gate_up_proj_bias"} : tensor<3 x 38 x bf16>
  %wkn = weight() {experts = 3, name = "experts.gate_up_proj"} : tensor<3 x 64 x 38 x bf16>
  %yp = grouped_matmul(%xp, %offsets, %w, %b) : tensor<12 x 38 x f32>
  %y = expert_batched_matmul(%x, %be, %bp, %w, %b) {top_k = 2} : tensor<8 x 38 x f32>
  %y1 = expert_batched_matmul(%x, %be, %bp, %w) {top_k = 1} : tensor<4 x 38 x f32>
  return %y
}
)";

TEST(Verifier, GroupedMatmulTakesAnOptionalExpertBias) {
  EXPECT_TRUE(VerifyText(kMxfp4Experts).empty());
  EXPECT_TRUE(
      HasFault(VerifyText(Replace(kMxfp4Experts, "tensor<3 x 38 x bf16>", "tensor<3 x 37 x bf16>")),
               3, "types", "bias [E, N]"));
}

TEST(Verifier, ExpertBatchedMatmulReadsAnOutMajorWeight) {
  // The [in, out] layout of expert_batched_matmul_kn is refused: w is [E, N, K].
  EXPECT_TRUE(HasFault(
      VerifyText(Replace(kMxfp4Experts, "(%x, %be, %bp, %w, %b)", "(%x, %be, %bp, %wkn, %b)")), 4,
      "types", "weight columns"));
  EXPECT_TRUE(HasFault(VerifyText(Replace(kMxfp4Experts, "{top_k = 2} : tensor<8 x 38 x f32>",
                                          "{top_k = 2} : tensor<4 x 38 x f32>")),
                       4, "types", ""));
}

}  // namespace moegraph
