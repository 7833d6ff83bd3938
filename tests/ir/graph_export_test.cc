// DOT and JSON export, LineDiff and FilterLines on small hand-written graphs.
#include "ir/graph_export.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "ir/op_registry.h"
#include "ir/parser.h"
#include "support/json.h"

namespace moegraph {
namespace {

// Valid: a weight whose checkpoint name needs escaping, two ops, one output.
constexpr const char* kTiny = R"(graph @tiny(%meta: !forward_meta, %x: tensor<T x 4 x f32>) {
  %w = weight() {name = "norm \"w\" \\ 1"} : tensor<4 x f32>
  %y = rms_norm(%x, %w) {eps = 1e-05} : tensor<T x 4 x f32>
  %z = add(%y, %x) : tensor<T x 4 x f32>
  return %z
}
)";

// Ill-formed: op #2 declares a result type its operands do not give.
constexpr const char* kFaulty = R"(graph @faulty(%meta: !forward_meta, %x: tensor<T x 4 x f32>) {
  %w = weight() {name = "w"} : tensor<4 x f32>
  %y = rms_norm(%x, %w) {eps = 1e-05} : tensor<T x 4 x f32>
  %z = add(%y, %x) : tensor<T x 5 x f32>
  return %z
}
)";

Graph Parse(const std::string& text) {
  StatusOr<Graph> graph = ParseGraph(text, "test.mgir");
  EXPECT_TRUE(graph.ok()) << graph.status().ToString();
  return graph.ok() ? std::move(graph).value() : Graph();
}

bool HasLine(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// ---- DOT ----------------------------------------------------------------

TEST(ExportDot, NodesAndEdgesOfAValidGraph) {
  const std::string dot = ExportDot(Parse(kTiny));
  EXPECT_EQ(dot.rfind("digraph \"tiny\" {\n", 0), 0u) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  in0 [shape=ellipse, label="%meta : !forward_meta"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  in1 [shape=ellipse, label="%x : tensor<T x 4 x f32>"];)")) << dot;
  // The weight: a small grey box with the checkpoint name, quotes and backslash escaped.
  EXPECT_TRUE(HasLine(dot, R"(  op0 [style=filled, fillcolor=lightgrey, fontsize=8, height=0.2, )"
                           R"(label="norm \"w\" \\ 1\ntensor<4 x f32>"];)"))
      << dot;
  EXPECT_TRUE(HasLine(dot, R"(  op1 [label="rms_norm\n%y : tensor<T x 4 x f32>"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  in1 -> op1 [label="%x"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  op0 -> op1 [label="%w"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  op2 [label="add\n%z : tensor<T x 4 x f32>"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  op1 -> op2 [label="%y"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  in1 -> op2 [label="%x"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  op2 -> out [label="%z"];)")) << dot;
  EXPECT_EQ(dot.find("red"), std::string::npos) << dot;
  EXPECT_EQ(dot.substr(dot.size() - 2), "}\n");
}

TEST(ExportDot, FaultyOpIsRedWithTheFault) {
  const std::string dot = ExportDot(Parse(kFaulty));
  const std::string prefix =
      R"(  op2 [color=red, fontcolor=red, penwidth=2, label="add\n%z : tensor<T x 5 x f32>\nFAULT: )";
  const size_t at = dot.find(prefix);
  ASSERT_NE(at, std::string::npos) << dot;
  const std::string line = dot.substr(at, dot.find('\n', at) - at);
  EXPECT_NE(line.find("declared tensor<T x 5 x f32>"), std::string::npos) << line;
  EXPECT_NE(line.find("[rule: types]"), std::string::npos) << line;
  // Only the faulty op is red.
  EXPECT_TRUE(HasLine(dot, R"(  op1 [label="rms_norm\n%y : tensor<T x 4 x f32>"];)")) << dot;
}

TEST(ExportDot, UndefinedOperandsAndGraphFaultsGetTheirOwnNodes) {
  Graph g("broken");
  const ValueId meta = g.AddInput("meta", Type::ForwardMeta());
  g.AddOp(LookupOp("add"), {-7, meta}, {}, {Type::Tensor(DType::kF32, {Dim::Static(3)})});
  g.AddOutput(99);
  std::string dot;
  ASSERT_NO_THROW(dot = ExportDot(g));
  EXPECT_NE(dot.find(R"(  undef0 [shape=ellipse, style=dashed, color=red, fontcolor=red, )"
                     R"x(label="%<invalid:-7>\n(undefined)"];)x"),
            std::string::npos)
      << dot;
  EXPECT_TRUE(HasLine(dot, R"(  undef0 -> op0 [label="%<invalid:-7>"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  in0 -> op0 [label="%meta"];)")) << dot;
  EXPECT_TRUE(HasLine(dot, R"(  undef1 -> out [label="%<invalid:99>"];)")) << dot;
  // "graph output %<invalid:99> is not defined" is about the graph, not an op.
  EXPECT_NE(dot.find("  faults [shape=note, color=red"), std::string::npos) << dot;
  EXPECT_NE(dot.find("is not defined"), std::string::npos) << dot;
}

// ---- JSON ---------------------------------------------------------------

JsonValue ParseJsonOrDie(const std::string& text) {
  StatusOr<JsonValue> json = ParseJson(text, "export.json");
  EXPECT_TRUE(json.ok()) << json.status().ToString() << "\n" << text;
  return json.ok() ? std::move(json).value() : JsonValue();
}

TEST(ExportJson, FieldsOfAValidGraph) {
  const JsonValue root = ParseJsonOrDie(ExportJson(Parse(kTiny)));
  ASSERT_TRUE(root.is_object());
  EXPECT_EQ(root.Find("name")->as_string(), "tiny");
  EXPECT_EQ(root.Find("attrs")->size(), 0u);
  const JsonValue& inputs = *root.Find("inputs");
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs.as_array()[1].Find("name")->as_string(), "%x");
  EXPECT_EQ(inputs.as_array()[1].Find("type")->as_string(), "tensor<T x 4 x f32>");

  const JsonValue& ops = *root.Find("ops");
  ASSERT_EQ(ops.size(), 3u);
  const JsonValue& weight = ops.as_array()[0];
  EXPECT_EQ(weight.Find("op")->as_string(), "weight");
  EXPECT_EQ(weight.Find("attrs")->Find("name")->as_string(), "norm \"w\" \\ 1");
  EXPECT_EQ(weight.Find("operands")->size(), 0u);
  const JsonValue& norm = ops.as_array()[1];
  EXPECT_EQ(norm.Find("index")->as_int(), 1);
  EXPECT_EQ(norm.Find("line")->as_int(), 3);
  EXPECT_EQ(norm.Find("op")->as_string(), "rms_norm");
  ASSERT_EQ(norm.Find("operands")->size(), 2u);
  EXPECT_EQ(norm.Find("operands")->as_array()[0].as_string(), "%x");
  EXPECT_EQ(norm.Find("operands")->as_array()[1].as_string(), "%w");
  ASSERT_EQ(norm.Find("results")->size(), 1u);
  EXPECT_EQ(norm.Find("results")->as_array()[0].Find("name")->as_string(), "%y");
  EXPECT_EQ(norm.Find("results")->as_array()[0].Find("type")->as_string(), "tensor<T x 4 x f32>");
  EXPECT_DOUBLE_EQ(norm.Find("attrs")->Find("eps")->as_double(), 1e-5);
  EXPECT_EQ(norm.Find("faults")->size(), 0u);

  ASSERT_EQ(root.Find("outputs")->size(), 1u);
  EXPECT_EQ(root.Find("outputs")->as_array()[0].as_string(), "%z");
  EXPECT_EQ(root.Find("diagnostics")->size(), 0u);
}

TEST(ExportJson, FaultsAndDiagnostics) {
  const JsonValue root = ParseJsonOrDie(ExportJson(Parse(kFaulty)));
  const JsonValue& ops = *root.Find("ops");
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops.as_array()[1].Find("faults")->size(), 0u);
  const JsonValue& faults = *ops.as_array()[2].Find("faults");
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_NE(faults.as_array()[0].as_string().find("declared tensor<T x 5 x f32>"),
            std::string::npos);
  const JsonValue& diagnostics = *root.Find("diagnostics");
  ASSERT_EQ(diagnostics.size(), 1u);
  const JsonValue& d = diagnostics.as_array()[0];
  EXPECT_EQ(d.Find("op_index")->as_int(), 2);
  EXPECT_EQ(d.Find("rule")->as_string(), "types");
  EXPECT_EQ(d.Find("text")->as_string(),
            "op #2 'add' (line 4): result %z is declared tensor<T x 5 x f32> but the operands "
            "give tensor<T x 4 x f32> [rule: types]");
}

TEST(ExportJson, GraphAttributesListsAndInvalidUtf8) {
  Graph g = Parse(kTiny);
  g.mutable_attrs()["moe_phase"] = std::string("decode");
  g.mutable_attrs()["token_bucket"] = int64_t{8};
  g.mutable_ops()[2].attrs["arena_offsets"] = std::vector<int64_t>{0, 64};
  g.mutable_ops()[0].attrs["name"] = std::string("bad\xff\xc3name\xe2\x82\xac");
  const JsonValue root = ParseJsonOrDie(ExportJson(g));
  EXPECT_EQ(root.Find("attrs")->Find("moe_phase")->as_string(), "decode");
  EXPECT_EQ(root.Find("attrs")->Find("token_bucket")->as_int(), 8);
  const JsonValue& offsets = *root.Find("ops")->as_array()[2].Find("attrs")->Find("arena_offsets");
  ASSERT_EQ(offsets.size(), 2u);
  EXPECT_EQ(offsets.as_array()[1].as_int(), 64);
  // Each invalid byte becomes U+FFFD; the valid euro sign stays.
  EXPECT_EQ(root.Find("ops")->as_array()[0].Find("attrs")->Find("name")->as_string(),
            "bad\xEF\xBF\xBD\xEF\xBF\xBDname\xe2\x82\xac");
}

// ---- LineDiff -----------------------------------------------------------

TEST(LineDiff, IdenticalInputsGiveTheHeaderAlone) {
  EXPECT_EQ(LineDiff("a\nb\n", "a\nb\n", "x", "y", 2), "--- x\n+++ y\n");
  EXPECT_EQ(LineDiff("", "", "x", "y", 2), "--- x\n+++ y\n");
  // A missing final newline is not a difference.
  EXPECT_EQ(LineDiff("a\nb", "a\nb\n", "x", "y", 2), "--- x\n+++ y\n");
}

TEST(LineDiff, ReplacedLineWithContext) {
  EXPECT_EQ(LineDiff("1\n2\n3\n4\n5\n6\n7\n", "1\n2\n3\nX\n5\n6\n7\n", "a", "b", 2),
            "--- a\n+++ b\n"
            "@@ -2,5 +2,5 @@\n"
            " 2\n 3\n-4\n+X\n 5\n 6\n");
}

TEST(LineDiff, DeletionAndInsertion) {
  // A deleted line without context: the empty side starts at the line before.
  EXPECT_EQ(LineDiff("1\n2\n3\n", "1\n3\n", "a", "b", 0), "--- a\n+++ b\n@@ -2 +1,0 @@\n-2\n");
  EXPECT_EQ(LineDiff("", "a\nb\n", "a", "b", 2), "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+a\n+b\n");
  EXPECT_EQ(LineDiff("a\nb\n", "", "a", "b", 2), "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-a\n-b\n");
  // Deletions print before insertions; an insertion at the end.
  EXPECT_EQ(LineDiff("a\nb\nc\n", "a\nx\ny\nc\nd\n", "a", "b", 1),
            "--- a\n+++ b\n@@ -1,3 +1,5 @@\n a\n-b\n+x\n+y\n c\n+d\n");
}

TEST(LineDiff, DistantChangesSplitIntoHunksCloseOnesMerge) {
  const std::string a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
  EXPECT_EQ(LineDiff(a, "1\ntwo\n3\n4\n5\n6\n7\n8\n9\n10\neleven\n12\n", "a", "b", 2),
            "--- a\n+++ b\n"
            "@@ -1,4 +1,4 @@\n 1\n-2\n+two\n 3\n 4\n"
            "@@ -9,4 +9,4 @@\n 9\n 10\n-11\n+eleven\n 12\n");
  EXPECT_EQ(LineDiff(a, "1\ntwo\n3\n4\n5\nsix\n7\n8\n9\n10\n11\n12\n", "a", "b", 2),
            "--- a\n+++ b\n"
            "@@ -1,8 +1,8 @@\n 1\n-2\n+two\n 3\n 4\n 5\n-6\n+six\n 7\n 8\n");
}

// The edit script is a longest common subsequence: on a graph diff, only the
// changed op lines appear as changes.
TEST(LineDiff, GraphTexts) {
  const std::string diff = LineDiff(kTiny, kFaulty, "tiny", "faulty", 0);
  EXPECT_EQ(diff,
            "--- tiny\n+++ faulty\n"
            "@@ -1,2 +1,2 @@\n"
            "-graph @tiny(%meta: !forward_meta, %x: tensor<T x 4 x f32>) {\n"
            "-  %w = weight() {name = \"norm \\\"w\\\" \\\\ 1\"} : tensor<4 x f32>\n"
            "+graph @faulty(%meta: !forward_meta, %x: tensor<T x 4 x f32>) {\n"
            "+  %w = weight() {name = \"w\"} : tensor<4 x f32>\n"
            "@@ -4 +4 @@\n"
            "-  %z = add(%y, %x) : tensor<T x 4 x f32>\n"
            "+  %z = add(%y, %x) : tensor<T x 5 x f32>\n");
}

// A longer input with scattered edits: applying the diff's '-'/'+' lines in
// order must rebuild both sides, and the common lines must be a longest
// common subsequence (checked against a quadratic table).
TEST(LineDiff, ScriptRebuildsBothSidesAndIsMinimal) {
  std::string a, b;
  for (int i = 0; i < 61; ++i) {
    if (i % 7 != 3) a += "line " + std::to_string(i % 11) + "\n";
    if (i % 5 != 1) b += "line " + std::to_string((i * 3) % 11) + "\n";
  }
  const std::string diff = LineDiff(a, b, "a", "b", 1000);  // one hunk with everything
  std::string rebuilt_a, rebuilt_b;
  int common = 0;
  size_t start = diff.find("@@ ");
  start = diff.find('\n', start) + 1;
  while (start < diff.size()) {
    const size_t end = diff.find('\n', start);
    const std::string line = diff.substr(start, end - start);
    start = end + 1;
    ASSERT_FALSE(line.empty());
    ASSERT_NE(line[0], '@') << "one hunk expected";
    if (line[0] != '+') rebuilt_a += line.substr(1) + "\n";
    if (line[0] != '-') rebuilt_b += line.substr(1) + "\n";
    if (line[0] == ' ') ++common;
  }
  EXPECT_EQ(rebuilt_a, a);
  EXPECT_EQ(rebuilt_b, b);

  const auto split = [](const std::string& text) {
    std::vector<std::string> lines;
    size_t s = 0;
    while (s < text.size()) {
      const size_t e = text.find('\n', s);
      lines.push_back(text.substr(s, e - s));
      s = e + 1;
    }
    return lines;
  };
  const std::vector<std::string> la = split(a), lb = split(b);
  std::vector<std::vector<int>> lcs(la.size() + 1, std::vector<int>(lb.size() + 1, 0));
  for (size_t i = 1; i <= la.size(); ++i) {
    for (size_t j = 1; j <= lb.size(); ++j) {
      lcs[i][j] =
          la[i - 1] == lb[j - 1] ? lcs[i - 1][j - 1] + 1 : std::max(lcs[i - 1][j], lcs[i][j - 1]);
    }
  }
  EXPECT_EQ(common, lcs[la.size()][lb.size()]);
  EXPECT_GT(common, 0);
}

// ---- FilterLines --------------------------------------------------------

TEST(FilterLines, KeepsMatchingLines) {
  const std::regex layer0(R"(l0\.)");
  EXPECT_EQ(FilterLines("%l0.a = x\n%l1.b = y\n%l0.c = z", layer0), "%l0.a = x\n%l0.c = z\n");
  EXPECT_EQ(FilterLines("%l10 = x\n%l1.b\n", layer0), "");
  EXPECT_EQ(FilterLines("", layer0), "");
  EXPECT_EQ(FilterLines("a\n\nb\n", std::regex("^$")), "\n");
}

}  // namespace
}  // namespace moegraph
