// BindStep hands ForwardMeta only to ops that declare NeedsForwardMeta: the
// kernel ABI's rule that pair-row and slot-row ops never see num_tokens.
#include <gtest/gtest.h>

#include "ir/op_registry.h"
#include "runtime/backend.h"

namespace moegraph {
namespace {

ArgRef Arena(int64_t offset, std::vector<int64_t> shape) {
  ArgRef ref;
  ref.kind = ArgKind::kArena;
  ref.arena_offset = offset;
  ref.shape = std::move(shape);
  return ref;
}

TEST(BindStepTest, OnlyForwardMetaOpsSeeTheMeta) {
  std::vector<std::byte> arena(4096);
  ForwardMetaView meta;
  meta.num_tokens = 3;
  KvCacheView kv;
  ExecBindings bindings;
  bindings.arena = arena.data();
  bindings.arena_bytes = arena.size();
  bindings.meta = &meta;
  bindings.kv = &kv;

  // silu_mul over 8 (token, expert) pair rows of a 3-token step.
  KernelStep silu;
  silu.kernel = "silu_mul";
  silu.inputs = {Arena(0, {8, 4}), Arena(128, {8, 4})};
  silu.outputs = {Arena(256, {8, 4})};
  KernelStep combine;
  combine.kernel = "moe_combine";
  combine.inputs = {Arena(0, {8, 4}), Arena(384, {4, 2})};
  combine.outputs = {Arena(512, {4, 4})};

  std::vector<TensorArg> args;
  BoundStep bound_silu, bound_combine;
  ASSERT_TRUE(BindStep(silu, bindings, 1, args, bound_silu).ok());
  ASSERT_TRUE(BindStep(combine, bindings, 1, args, bound_combine).ok());
  EXPECT_EQ(bound_silu.args.meta, nullptr);
  EXPECT_EQ(bound_combine.args.meta, &meta);
  EXPECT_EQ(bound_combine.args.kv, &kv);

  // Every op the registry lists follows the same rule.
  for (const OpDef* def : AllOps()) {
    if (def->Has(kWeight)) continue;
    KernelStep step;
    step.kernel = def->name;
    if (def->params) {
      step.ints.assign(def->params->num_ints, 1);
      step.floats.assign(def->params->num_floats, 1.0f);
    }
    BoundStep bound;
    ASSERT_TRUE(BindStep(step, bindings, 1, args, bound).ok()) << def->name;
    EXPECT_EQ(bound.args.meta != nullptr, def->Has(kNeedsForwardMeta)) << def->name;
  }
}

// BindStep decodes the step's wire parameters once; kernels read the struct.
TEST(BindStepTest, DecodesTheOpsParamsStruct) {
  std::vector<std::byte> arena(4096);
  ExecBindings bindings;
  bindings.arena = arena.data();
  bindings.arena_bytes = arena.size();
  KernelStep step;
  step.kernel = "attention";
  step.inputs = {Arena(0, {2, 16}), Arena(128, {2, 8}), Arena(256, {2, 8})};
  step.outputs = {Arena(384, {2, 16})};
  EncodeParams(
      AttentionParams{.layer = 2, .num_heads = 4, .num_kv_heads = 2, .head_dim = 4, .scale = 0.5},
      step.ints, step.floats);
  std::vector<TensorArg> args;
  BoundStep bound;
  ASSERT_TRUE(BindStep(step, bindings, 1, args, bound).ok());
  EXPECT_EQ(bound.args.params_info, &kParamsInfo<AttentionParams>);
  const AttentionParams& p = Params<AttentionParams>(bound.args);
  EXPECT_EQ(p.layer, 2);
  EXPECT_EQ(p.num_heads, 4);
  EXPECT_EQ(p.num_kv_heads, 2);
  EXPECT_EQ(p.head_dim, 4);
  EXPECT_EQ(p.scale, 0.5);
  // A copy of the bound arguments (replay keeps them in a vector) keeps the struct.
  const KernelArgs copy = bound.args;
  EXPECT_EQ(Params<AttentionParams>(copy).head_dim, 4);

  // An op without parameters binds none.
  KernelStep add;
  add.kernel = "add";
  add.inputs = {Arena(0, {2, 4}), Arena(64, {2, 4})};
  add.outputs = {Arena(128, {2, 4})};
  ASSERT_TRUE(BindStep(add, bindings, 1, args, bound).ok());
  EXPECT_EQ(bound.args.params_info, nullptr);
}

TEST(BindStepTest, WrongParameterCountsAreAnError) {
  ExecBindings bindings;
  KernelStep step;
  step.kernel = "rope";
  step.ints = {64};  // theta, rotary_dim and interleaved missing
  std::vector<TensorArg> args;
  BoundStep bound;
  const Status status = BindStep(step, bindings, 1, args, bound);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.ToString().find("has 1 ints and 0 floats, expected 4 and 5 (RopeParams)"),
            std::string::npos)
      << status.ToString();
}

TEST(BindStepDeathTest, ReadingAnotherOpsParamsIsAContractViolation) {
  KernelArgs args;
  SetParams(args, RopeParams{.head_dim = 64, .theta = 1e6});
  EXPECT_EQ(Params<RopeParams>(args).head_dim, 64);
  EXPECT_DEATH(Params<AttentionParams>(args),
               "kernel 'AttentionParams' called against its contract");
  EXPECT_DEATH(Params<TopKParams>(KernelArgs{}), "kernel 'TopKParams' called against its contract");
}

TEST(BindStepTest, UnknownKernelIsAnError) {
  ExecBindings bindings;
  KernelStep step;
  step.kernel = "no_such_op";
  std::vector<TensorArg> args;
  BoundStep bound;
  const Status status = BindStep(step, bindings, 1, args, bound);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.ToString().find("names no op in the registry"), std::string::npos)
      << status.ToString();
}

}  // namespace
}  // namespace moegraph
