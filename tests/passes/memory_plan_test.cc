// memory-plan: exact offsets for small graphs, and the no-overlap property
// on a generated chain.
#include "passes/memory_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "ir/op_registry.h"
#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

std::string Plan(const std::string& text, bool* changed = nullptr) {
  MemoryPlanPass plan;
  return RunPass(text, plan, changed);
}

// 3x5 f32 is 60 bytes, one 64-byte slot. Each value dies at its reader, so
// %c reuses %a's slot and %d reuses %b's.
TEST(MemoryPlan, ReusesTheSpaceOfDeadBuffers) {
  const std::string input = R"(graph @chain(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) {
  %w = weight() {name = "norm.weight"} : tensor<5 x f32>
  %a = rms_norm(%x, %w) {eps = 0.5} : tensor<3 x 5 x f32>
  %b = add(%a, %a) : tensor<3 x 5 x f32>
  %c = add(%b, %b) : tensor<3 x 5 x f32>
  %d = add(%c, %c) : tensor<3 x 5 x f32>
  return %d
}
)";
  const std::string expected =
      R"(graph @chain(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) attributes {arena_bytes = 128} {
  %w = weight() {name = "norm.weight"} : tensor<5 x f32>
  %a = rms_norm(%x, %w) {arena_offsets = [0], eps = 0.5} : tensor<3 x 5 x f32>
  %b = add(%a, %a) {arena_offsets = [64]} : tensor<3 x 5 x f32>
  %c = add(%b, %b) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  %d = add(%c, %c) {arena_offsets = [64]} : tensor<3 x 5 x f32>
  return %d
}
)";
  bool changed = false;
  EXPECT_EQ(Plan(input, &changed), expected);
  EXPECT_TRUE(changed);
  EXPECT_EQ(ArenaBytes(ParseOrDie(expected)), 128);
  EXPECT_EQ(ArenaBytes(ParseOrDie(input)), -1);
}

// The runtime owns inputs and weights: they take no arena space, even when
// returned, and a weight's stale annotation is dropped.
TEST(MemoryPlan, InputsAndWeightsAreNotInTheArena) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) {
  %w = weight() {arena_offsets = [64], name = "norm.weight"} : tensor<5 x f32>
  %n = rms_norm(%x, %w) {eps = 0.5} : tensor<3 x 5 x f32>
  return %n, %x, %w
}
)";
  const std::string expected =
      R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) attributes {arena_bytes = 64} {
  %w = weight() {name = "norm.weight"} : tensor<5 x f32>
  %n = rms_norm(%x, %w) {arena_offsets = [0], eps = 0.5} : tensor<3 x 5 x f32>
  return %n, %x, %w
}
)";
  EXPECT_EQ(Plan(input), expected);
}

// The runtime reads outputs after the step: %a, returned, keeps its slot to
// the end, so %c cannot take it.
TEST(MemoryPlan, OutputsLiveToTheEnd) {
  const std::string body = R"(  %a = add(%x, %x) : tensor<3 x 5 x f32>
  %b = add(%a, %a) : tensor<3 x 5 x f32>
  %c = add(%b, %b) : tensor<3 x 5 x f32>
)";
  const std::string head = "graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) {\n";
  EXPECT_EQ(
      Plan(head + body + "  return %a, %c\n}\n"),
      R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) attributes {arena_bytes = 192} {
  %a = add(%x, %x) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  %b = add(%a, %a) {arena_offsets = [64]} : tensor<3 x 5 x f32>
  %c = add(%b, %b) {arena_offsets = [128]} : tensor<3 x 5 x f32>
  return %a, %c
}
)");
  EXPECT_EQ(
      Plan(head + body + "  return %c\n}\n"),
      R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) attributes {arena_bytes = 128} {
  %a = add(%x, %x) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  %b = add(%a, %a) {arena_offsets = [64]} : tensor<3 x 5 x f32>
  %c = add(%b, %b) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  return %c
}
)");
}

// Sizes: logits 7x4 f32 = 112 -> 128; ids, rw 7x3 = 84 -> 128; sorted 21
// i32 = 84 -> 128; offsets 5 i32 = 20 -> 64. The results of one op are live
// together and get disjoint slots; %sorted takes %logits's freed slot.
TEST(MemoryPlan, MultiResultOps) {
  const std::string input = R"(graph @route(%meta: !forward_meta, %x: tensor<7 x 8 x f32>) {
  %router = weight() {name = "mlp.gate.weight"} : tensor<4 x 8 x bf16>
  %logits = linear(%x, %router) : tensor<7 x 4 x f32>
  %ids, %rw = topk_route(%meta, %logits) {norm_topk_prob = 1, top_k = 3} : tensor<7 x 3 x i32>, tensor<7 x 3 x f32>
  %sorted, %offsets = moe_align(%ids) {num_experts = 4} : tensor<21 x i32>, tensor<5 x i32>
  return %sorted, %offsets, %rw
}
)";
  const std::string expected =
      R"(graph @route(%meta: !forward_meta, %x: tensor<7 x 8 x f32>) attributes {arena_bytes = 448} {
  %router = weight() {name = "mlp.gate.weight"} : tensor<4 x 8 x bf16>
  %logits = linear(%x, %router) {arena_offsets = [0]} : tensor<7 x 4 x f32>
  %ids, %rw = topk_route(%meta, %logits) {arena_offsets = [128, 256], norm_topk_prob = 1, top_k = 3} : tensor<7 x 3 x i32>, tensor<7 x 3 x f32>
  %sorted, %offsets = moe_align(%ids) {arena_offsets = [0, 384], num_experts = 4} : tensor<21 x i32>, tensor<5 x i32>
  return %sorted, %offsets, %rw
}
)";
  EXPECT_EQ(Plan(input), expected);
}

// %e has no bytes: offset 0, and it does not keep %b out of %a's old slot.
TEST(MemoryPlan, ZeroSizeTensorsTakeNoSpace) {
  const std::string input = R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) {
  %a = add(%x, %x) : tensor<3 x 5 x f32>
  %e = slice_rows(%a) {begin = 3, rows = 0} : tensor<0 x 5 x f32>
  %b = add(%x, %x) : tensor<3 x 5 x f32>
  return %e, %b
}
)";
  const std::string expected =
      R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) attributes {arena_bytes = 64} {
  %a = add(%x, %x) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  %e = slice_rows(%a) {arena_offsets = [0], begin = 3, rows = 0} : tensor<0 x 5 x f32>
  %b = add(%x, %x) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  return %e, %b
}
)";
  EXPECT_EQ(Plan(input), expected);
}

// Placement order (largest first): s1 [256 B, ops 1-4] at 0; l1 [192 B,
// ops 0-6] at 256; s2 [128 B, ops 2-5] at 448; l2 [64 B, ops 3-6] at 576.
// %n [64 B, op 6] overlaps only l1 and l2, which leave two holes: [0, 256)
// and [448, 576). Best fit takes the tighter one, 448 (first fit would take 0).
TEST(MemoryPlan, ChoosesTheTightestGap) {
  const std::string input = R"(graph @best_fit(%meta: !forward_meta) {
  %l1 = zeros() : tensor<48 x f32>
  %s1 = zeros() : tensor<64 x f32>
  %s2 = zeros() : tensor<32 x f32>
  %l2 = zeros() : tensor<16 x f32>
  %k1 = slice_rows(%s1) {begin = 0, rows = 0} : tensor<0 x f32>
  %k2 = slice_rows(%s2) {begin = 0, rows = 0} : tensor<0 x f32>
  %n = zeros() : tensor<16 x f32>
  return %l1, %l2, %n
}
)";
  const std::string expected =
      R"(graph @best_fit(%meta: !forward_meta) attributes {arena_bytes = 640} {
  %l1 = zeros() {arena_offsets = [256]} : tensor<48 x f32>
  %s1 = zeros() {arena_offsets = [0]} : tensor<64 x f32>
  %s2 = zeros() {arena_offsets = [448]} : tensor<32 x f32>
  %l2 = zeros() {arena_offsets = [576]} : tensor<16 x f32>
  %k1 = slice_rows(%s1) {arena_offsets = [0], begin = 0, rows = 0} : tensor<0 x f32>
  %k2 = slice_rows(%s2) {arena_offsets = [0], begin = 0, rows = 0} : tensor<0 x f32>
  %n = zeros() {arena_offsets = [448]} : tensor<16 x f32>
  return %l1, %l2, %n
}
)";
  EXPECT_EQ(Plan(input), expected);
}

TEST(MemoryPlan, ReplanningAnUnchangedGraphIsNoChange) {
  const std::string planned =
      R"(graph @g(%meta: !forward_meta, %x: tensor<3 x 5 x f32>) attributes {arena_bytes = 128} {
  %a = add(%x, %x) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  %b = add(%a, %a) {arena_offsets = [64]} : tensor<3 x 5 x f32>
  %c = add(%b, %b) {arena_offsets = [0]} : tensor<3 x 5 x f32>
  return %c
}
)";
  bool changed = true;
  EXPECT_EQ(Plan(planned, &changed), planned);
  EXPECT_FALSE(changed);

  // A stale plan (offsets and size from another graph) is rewritten.
  std::string stale = planned;
  stale.replace(stale.find("arena_bytes = 128"), 17, "arena_bytes = 192");
  stale.replace(stale.find("add(%b, %b) {arena_offsets = [0]}"), 33,
                "add(%b, %b) {arena_offsets = [128]}");
  changed = false;
  EXPECT_EQ(Plan(stale, &changed), planned);
  EXPECT_TRUE(changed);
}

TEST(MemoryPlan, RefusesSymbolicShapes) {
  struct Case {
    std::string text;
    std::string fragment;
  } cases[] = {
      {R"(graph @g(%meta: !forward_meta, %x: tensor<T x 8 x f32>) {
  %y = add(%x, %x) : tensor<T x 8 x f32>
  return %y
}
)",
       "%x is tensor<T x 8 x f32>"},
      {R"(graph @g(%meta: !forward_meta, %x: tensor<6 x 8 x f32>) {
  %last = gather_last(%meta, %x) : tensor<B x 8 x f32>
  return %last
}
)",
       "%last is tensor<B x 8 x f32>"},
  };
  for (const Case& c : cases) {
    Graph graph = ParseOrDie(c.text);
    MemoryPlanPass plan;
    StatusOr<bool> result = plan.Run(graph);
    ASSERT_FALSE(result.ok()) << c.text;
    EXPECT_EQ(result.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(result.status().message().find(c.fragment), std::string::npos)
        << result.status().message();
    EXPECT_EQ(ArenaBytes(graph), -1);
  }
}

// ---- property: a generated chain ---------------------------------------------

// A chain of `num_ops` ops over [rows x 13] f32 values (52 bytes a row, so
// sizes round up by varying amounts). Each op reads values among the last
// four, so most values die early; some rows counts are 0.
std::string GenerateChain(int num_ops, uint32_t seed) {
  std::mt19937 rng(seed);
  struct Val {
    std::string name;
    int64_t rows;
  };
  std::vector<Val> vals = {{"x", 7}};
  std::string text =
      "graph @chain(%meta: !forward_meta, %x: tensor<7 x 13 x f32>) {\n"
      "  %norm_w = weight() {name = \"norm.weight\"} : tensor<13 x f32>\n";
  auto recent = [&]() -> const Val& {
    const size_t window = std::min<size_t>(4, vals.size());
    return vals[vals.size() - 1 - rng() % window];
  };
  auto type = [](int64_t rows) { return "tensor<" + std::to_string(rows) + " x 13 x f32>"; };
  for (int i = 0; i < num_ops; ++i) {
    const std::string name = "v" + std::to_string(i);
    const Val a = recent();
    const Val b = recent();
    int64_t rows = a.rows;
    std::string op;
    switch (rng() % 5) {
      case 0:
        rows = 1 + rng() % 37;
        op = "zeros()";
        break;
      case 1:
        op = "add(%" + a.name + ", %" + a.name + ")";
        break;
      case 2:
        rows = a.rows == 0 ? 0 : rng() % (a.rows + 1);
        op = "slice_rows(%" + a.name + ") {begin = 0, rows = " + std::to_string(rows) + "}";
        break;
      case 3:
        if (a.rows + b.rows <= 300) {
          rows = a.rows + b.rows;
          op = "concat_rows(%" + a.name + ", %" + b.name + ")";
        } else {
          op = "add(%" + a.name + ", %" + a.name + ")";
        }
        break;
      default:
        op = "rms_norm(%" + a.name + ", %norm_w) {eps = 0.5}";
        break;
    }
    text += "  %" + name + " = " + op + " : " + type(rows) + "\n";
    vals.push_back({name, rows});
  }
  text += "  return %" + vals.back().name + ", %" + vals[vals.size() / 2].name + "\n}\n";
  return text;
}

TEST(MemoryPlan, LiveBuffersNeverOverlapOnAGeneratedChain) {
  for (uint32_t seed : {1u, 7u, 2024u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Graph graph = ParseOrDie(GenerateChain(/*num_ops=*/97, seed));
    MemoryPlanPass plan;
    StatusOr<bool> changed = plan.Run(graph);
    ASSERT_TRUE(changed.ok()) << changed.status().ToString();
    EXPECT_TRUE(*changed);
    ASSERT_TRUE(Verify(graph).ok()) << Verify(graph).ToString();

    // Recompute sizes and live ranges independently of the pass.
    struct Buffer {
      std::string name;
      int64_t offset, bytes;
      int first, last;
    };
    const int num_ops = static_cast<int>(graph.ops().size());
    std::vector<int> last(graph.values().size(), -1);
    for (int i = 0; i < num_ops; ++i) {
      for (ValueId v : graph.ops()[i].operands) {
        last[v] = i;
      }
    }
    for (ValueId v : graph.outputs()) {
      last[v] = num_ops - 1;
    }
    std::vector<Buffer> buffers;
    int64_t sum_bytes = 0, max_end = 0;
    for (int i = 0; i < num_ops; ++i) {
      const Op& op = graph.ops()[i];
      if (op.def->Has(kWeight)) {
        EXPECT_FALSE(op.HasAttr(kArenaOffsetsAttr));
        continue;
      }
      const auto& offsets = std::get<std::vector<int64_t>>(op.attrs.at(kArenaOffsetsAttr));
      ASSERT_EQ(offsets.size(), op.results.size());
      for (size_t r = 0; r < op.results.size(); ++r) {
        const Type& t = graph.type(op.results[r]);
        const int64_t bytes = (t.StaticNumel() * 4 + 63) / 64 * 64;
        EXPECT_EQ(offsets[r] % 64, 0);
        if (bytes == 0) {
          EXPECT_EQ(offsets[r], 0);
        }
        buffers.push_back({graph.value(op.results[r]).name, offsets[r], bytes, i,
                           std::max(i, last[op.results[r]])});
        sum_bytes += bytes;
        max_end = std::max(max_end, offsets[r] + bytes);
      }
    }
    for (size_t i = 0; i < buffers.size(); ++i) {
      for (size_t j = i + 1; j < buffers.size(); ++j) {
        const Buffer& a = buffers[i];
        const Buffer& b = buffers[j];
        const bool live_together = a.first <= b.last && b.first <= a.last;
        const bool share_bytes = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
        EXPECT_FALSE(live_together && share_bytes && a.bytes > 0 && b.bytes > 0)
            << "%" << a.name << " [" << a.offset << ", +" << a.bytes << ") and %" << b.name << " ["
            << b.offset << ", +" << b.bytes << ")";
      }
    }
    EXPECT_EQ(ArenaBytes(graph), max_end);
    EXPECT_LT(ArenaBytes(graph), sum_bytes);

    // Planning the planned graph again changes nothing.
    const std::string printed = PrintGraph(graph);
    bool again = true;
    EXPECT_EQ(RunPass(printed, plan, &again), printed);
    EXPECT_FALSE(again);
  }
}

}  // namespace
}  // namespace moegraph
