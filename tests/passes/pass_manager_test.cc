// PassManager: verify-after-each, print-ir filters, dumps, changed passes.
#include "passes/pass.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "passes/cse.h"
#include "passes/dce.h"
#include "passes/fuse.h"
#include "passes/memory_plan.h"
#include "support/mapped_file.h"
#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

constexpr const char* kInput = R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) {
  %a = add(%x, %x) : tensor<3 x 5 x f32>
  %b = add(%a, %x) : tensor<3 x 5 x f32>
  return %b
}
)";

// After TagPass: the graph carries {tagged = 1}.
constexpr const char* kTagged =
    R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) attributes {tagged = 1} {
  %a = add(%x, %x) : tensor<3 x 5 x f32>
  %b = add(%a, %x) : tensor<3 x 5 x f32>
  return %b
}
)";

// Changes the graph (a graph attribute) and leaves it valid.
class TagPass : public Pass {
 public:
  std::string_view name() const override { return "tag"; }
  StatusOr<bool> Run(Graph& graph) override {
    if (graph.attrs().count("tagged")) return false;
    graph.mutable_attrs()["tagged"] = int64_t{1};
    return true;
  }
};

class NoopPass : public Pass {
 public:
  std::string_view name() const override { return "noop"; }
  StatusOr<bool> Run(Graph&) override { return false; }
};

// Drops the first op although later ops read its result.
class BreakPass : public Pass {
 public:
  std::string_view name() const override { return "break"; }
  StatusOr<bool> Run(Graph& graph) override {
    std::vector<Op> ops = graph.ops();
    ops.erase(ops.begin());
    graph.ReplaceOps(std::move(ops));
    return true;
  }
};

class FailPass : public Pass {
 public:
  std::string_view name() const override { return "fail"; }
  StatusOr<bool> Run(Graph&) override { return Unimplemented("not today"); }
};

template <typename... Passes>
PassManager Pipeline(PassManagerOptions options) {
  PassManager manager(std::move(options));
  (manager.Add(std::make_unique<Passes>()), ...);
  return manager;
}

TEST(PassManager, VerifyAfterEachNamesThePassThatBrokeTheGraph) {
  Graph graph = ParseOrDie(kInput);
  PassManager manager = Pipeline<TagPass, BreakPass, NoopPass>({});
  Status status = manager.Run(graph);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("after pass 'break'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("%a is used before it is defined"), std::string::npos)
      << status.message();

  // Without verify-after-each the broken graph goes through.
  PassManagerOptions options;
  options.verify_each = false;
  Graph unchecked = ParseOrDie(kInput);
  PassManager lax = Pipeline<TagPass, BreakPass, NoopPass>(std::move(options));
  EXPECT_TRUE(lax.Run(unchecked).ok());
  EXPECT_FALSE(Verify(unchecked).ok());
}

TEST(PassManager, PassErrorsNameThePass) {
  Graph graph = ParseOrDie(kInput);
  PassManager manager = Pipeline<TagPass, FailPass>({});
  Status status = manager.Run(graph);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kUnimplemented);
  EXPECT_EQ(status.message(), "pass 'fail': not today");
}

TEST(PassManager, PrintIrBeforeAndAfterSelectPassesByRegex) {
  std::ostringstream out;
  PassManagerOptions options;
  options.print_ir_before = std::regex("^tag$");
  options.print_ir_after = std::regex("no+p");
  options.print_stream = &out;
  Graph graph = ParseOrDie(kInput);
  PassManager manager = Pipeline<TagPass, NoopPass>(std::move(options));
  ASSERT_TRUE(manager.Run(graph).ok());
  EXPECT_EQ(out.str(), std::string("// ----- IR before tag (graph) -----\n") + kInput +
                           "// ----- IR after noop (no change) (graph) -----\n" + kTagged);
}

TEST(PassManager, PrintIrAfterChangeSkipsPassesThatChangedNothing) {
  std::ostringstream out;
  PassManagerOptions options;
  options.print_ir_after_change = true;
  options.dump_tag = "decode";
  options.print_stream = &out;
  Graph graph = ParseOrDie(kInput);
  PassManager manager = Pipeline<NoopPass, TagPass, NoopPass>(std::move(options));
  ASSERT_TRUE(manager.Run(graph).ok());
  EXPECT_EQ(out.str(), std::string("// ----- IR after tag (decode) -----\n") + kTagged);
}

TEST(PassManager, DumpDirWritesOneParseableFilePerPass) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                                    ("pass_manager_dump_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  PassManagerOptions options;
  options.dump_dir = dir.string();
  options.dump_tag = "prefill,T=64";
  Graph graph = ParseOrDie(kInput);
  PassManager manager = Pipeline<TagPass, NoopPass>(std::move(options));
  ASSERT_TRUE(manager.Run(graph).ok());

  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  EXPECT_EQ(names, (std::set<std::string>{"prefill_T_64.00.input.mgir", "prefill_T_64.01.tag.mgir",
                                          "prefill_T_64.02.noop.mgir"}));
  const std::pair<const char*, const char*> expected[] = {
      {"prefill_T_64.00.input.mgir", kInput},
      {"prefill_T_64.01.tag.mgir", kTagged},
      {"prefill_T_64.02.noop.mgir", kTagged},
  };
  for (const auto& [file, text] : expected) {
    StatusOr<std::string> contents = ReadFileToString((dir / file).string());
    ASSERT_TRUE(contents.ok()) << contents.status().ToString();
    EXPECT_EQ(*contents, text) << file;
    EXPECT_EQ(PrintGraph(ParseOrDie(*contents)), text) << file;
  }
  std::filesystem::remove_all(dir);
}

TEST(PassManager, ChangedPassesListsOnlyPassesThatChangedTheLastRun) {
  Graph graph = ParseOrDie(kInput);
  PassManager manager = Pipeline<NoopPass, TagPass, NoopPass>({});
  ASSERT_TRUE(manager.Run(graph).ok());
  EXPECT_EQ(manager.changed_passes(), std::vector<std::string>{"tag"});
  // Second run: the graph is already tagged.
  ASSERT_TRUE(manager.Run(graph).ok());
  EXPECT_TRUE(manager.changed_passes().empty());
}

// The tail of the pipeline on a lowered dense MLP block with a duplicated
// gate GEMM and a dead projection.
TEST(PassManager, FuseCseDceMemoryPlanPipeline) {
  Graph graph = ParseOrDie(R"(graph @mlp(%meta: !forward_meta, %x: tensor<3 x 8 x f32>) {
  %wg = weight() {name = "mlp.gate_proj.weight"} : tensor<5 x 8 x bf16>
  %wu = weight() {name = "mlp.up_proj.weight"} : tensor<5 x 8 x bf16>
  %wd = weight() {name = "mlp.down_proj.weight"} : tensor<8 x 5 x bf16>
  %wg.dup = weight() {name = "mlp.gate_proj.weight"} : tensor<5 x 8 x bf16>
  %g = linear(%x, %wg) : tensor<3 x 5 x f32>
  %g2 = linear(%x, %wg.dup) : tensor<3 x 5 x f32>
  %u = linear(%x, %wu) : tensor<3 x 5 x f32>
  %h = silu_mul(%g, %u) : tensor<3 x 5 x f32>
  %unused = add(%g2, %g2) : tensor<3 x 5 x f32>
  %y = linear(%h, %wd) : tensor<3 x 8 x f32>
  %r = add(%y, %x) : tensor<3 x 8 x f32>
  return %r
}
)");
  PassManager manager =
      Pipeline<FusePass, DcePass, CsePass, NoopPass, MemoryPlanPass>(PassManagerOptions{});
  ASSERT_TRUE(manager.Run(graph).ok());
  // cse finds nothing: fuse merged %g away (it had one use) and dce
  // removed %g2's only reader, then %g2 and its weight.
  EXPECT_EQ(manager.changed_passes(), (std::vector<std::string>{"fuse", "dce", "memory-plan"}));
  // %y and %r (96 -> 128 B) are placed first; %h (60 -> 64 B) goes above
  // %y, and %r takes that slot once %h is dead.
  EXPECT_EQ(
      PrintGraph(graph),
      R"(graph @mlp(%meta: !forward_meta, %x: tensor<3 x 8 x f32>) attributes {arena_bytes = 256} {
  %wg = weight() {name = "mlp.gate_proj.weight"} : tensor<5 x 8 x bf16>
  %wu = weight() {name = "mlp.up_proj.weight"} : tensor<5 x 8 x bf16>
  %wd = weight() {name = "mlp.down_proj.weight"} : tensor<8 x 5 x bf16>
  %h = linear_silu_mul(%x, %wg, %wu) {arena_offsets = [128]} : tensor<3 x 5 x f32>
  %y = linear(%h, %wd) {arena_offsets = [0]} : tensor<3 x 8 x f32>
  %r = add(%y, %x) {arena_offsets = [128]} : tensor<3 x 8 x f32>
  return %r
}
)");
}

}  // namespace
}  // namespace moegraph
