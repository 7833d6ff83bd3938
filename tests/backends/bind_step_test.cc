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
    BoundStep bound;
    ASSERT_TRUE(BindStep(step, bindings, 1, args, bound).ok()) << def->name;
    EXPECT_EQ(bound.args.meta != nullptr, def->Has(kNeedsForwardMeta)) << def->name;
  }
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
