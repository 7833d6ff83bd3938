// lower-to-kernels: a planned graph in, fixed kernel steps out; the graph is
// never changed.
#include "passes/lower_to_kernels.h"

#include "ir/op_registry.h"
#include "passes/memory_plan.h"
#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

const SpecKey kDecodeKey{MoePhase::kDecode, 1, 1, 4, 4};

constexpr const char* kDecode =
    R"(graph @tiny(%meta: !forward_meta, %tokens: tensor<4 x i32>) attributes {max_moe_num_chunk = 1, moe_chunk_size = 8, moe_num_chunk = 1, moe_phase = "decode", seq_bucket = 4, token_bucket = 4} {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %h = embedding(%tokens, %embed) : tensor<4 x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x bf16>
  %n = rms_norm(%h, %norm) {eps = 1e-06} : tensor<4 x 6 x f32>
  %logits = linear(%n, %embed) : tensor<4 x 11 x f32>
  return %logits
}
)";

ArgRef Ref(ArgKind kind, int64_t offset, int32_t index, DType dtype, std::vector<int64_t> shape) {
  ArgRef r;
  r.kind = kind;
  r.arena_offset = offset;
  r.index = index;
  r.dtype = dtype;
  r.shape = std::move(shape);
  return r;
}

TEST(LowerToKernels, EveryOpBecomesOneStepWithFixedArguments) {
  Graph graph = ParseOrDie(kDecode);
  MemoryPlanPass plan;
  ASSERT_TRUE(plan.Run(graph).ok());
  const std::string planned = PrintGraph(graph);
  // %h [0, 96) dies after rms_norm; %n [128, 224) and %logits live together.
  EXPECT_NE(planned.find("%h = embedding(%tokens, %embed) {arena_offsets = [0]}"),
            std::string::npos)
      << planned;

  WeightTable weights;
  KeyProgram program;
  LowerToKernelsPass pass(kDecodeKey, 8, &weights, &program);
  StatusOr<bool> changed = pass.Run(graph);
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_FALSE(*changed);
  EXPECT_EQ(PrintGraph(graph), planned) << "lower-to-kernels never changes the graph";

  EXPECT_EQ(program.key, (SpecKey{MoePhase::kDecode, 1, 1, 4, 4}));
  EXPECT_EQ(program.arena_bytes, ArenaBytes(graph));
  ASSERT_EQ(program.steps.size(), 3u);
  ASSERT_EQ(weights.entries().size(), 2u);
  EXPECT_EQ(weights.entries()[0].name, "embed");
  EXPECT_EQ(weights.entries()[1].name, "norm");

  const KernelStep& embed = program.steps[0];
  EXPECT_EQ(embed.kernel, "embedding");
  EXPECT_EQ(embed.op_index, 1);
  EXPECT_EQ(embed.inputs[0], Ref(ArgKind::kInput, 0, 0, DType::kI32, {4}));
  EXPECT_EQ(embed.inputs[1], Ref(ArgKind::kWeight, 0, 0, DType::kF32, {11, 6}));
  const auto offsets = [&](int op) {
    return std::get<std::vector<int64_t>>(graph.ops()[op].attrs.at(kArenaOffsetsAttr));
  };
  EXPECT_EQ(embed.outputs[0], Ref(ArgKind::kArena, offsets(1)[0], 0, DType::kF32, {4, 6}));

  const KernelStep& norm = program.steps[1];
  EXPECT_EQ(norm.kernel, "rms_norm");
  EXPECT_EQ(norm.inputs[1], Ref(ArgKind::kWeight, 0, 1, DType::kBF16, {6}));
  ASSERT_EQ(norm.floats.size(), 1u);
  EXPECT_FLOAT_EQ(norm.floats[0], 1e-6f);
  EXPECT_TRUE(norm.ints.empty());

  const KernelStep& head = program.steps[2];
  EXPECT_EQ(head.kernel, "linear");
  EXPECT_EQ(head.inputs[1], embed.inputs[1]) << "tied embedding: one weight, one table entry";
  EXPECT_EQ(program.logits, head.outputs[0]);
  EXPECT_EQ(program.ir, planned);
}

TEST(LowerToKernels, NeedsAMemoryPlan) {
  Graph graph = ParseOrDie(kDecode);
  WeightTable weights;
  StatusOr<KeyProgram> program = LowerToKernels(graph, kDecodeKey, 8, weights);
  ASSERT_FALSE(program.ok());
  EXPECT_NE(program.status().message().find("run memory-plan first"), std::string::npos);
}

}  // namespace
}  // namespace moegraph
