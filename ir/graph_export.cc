// DOT and JSON export of graphs, and the line diff and filter graph-dump uses.
#include "ir/graph_export.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ir/op_registry.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "support/json.h"

namespace moegraph {
namespace {

// `text` with every invalid UTF-8 sequence replaced by U+FFFD, so that DOT
// and JSON consumers (which require UTF-8) accept names from any IR text.
std::string ValidUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = byte(i);
    size_t length = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c < 0x80) {
      length = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    }
    bool valid = length > 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      const unsigned char min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xBF;
      valid = byte(i + k) >= min && byte(i + k) <= max;
    }
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

std::string TypeText(const Graph& graph, ValueId id) {
  return graph.IsValid(id) ? graph.type(id).ToString() : "<invalid>";
}

// The verifier's messages per op (index -1: the graph).
std::map<int, std::vector<std::string>> FaultsByOp(const std::vector<Diagnostic>& diagnostics) {
  std::map<int, std::vector<std::string>> faults;
  for (const Diagnostic& d : diagnostics) {
    faults[d.op_index].push_back(d.message + " [rule: " + d.rule + "]");
  }
  return faults;
}

// ---- DOT ----------------------------------------------------------------

// A DOT double-quoted string: quotes and backslashes escaped, newlines as
// Graphviz's centred line break `\n`, other control characters as spaces.
std::string DotQuote(std::string_view text) {
  std::string out = "\"";
  for (char ch : ValidUtf8(text)) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += ' ';
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string AttrsText(const AttrMap& attrs) {
  std::string out;
  for (const auto& [key, value] : attrs) {
    out += (out.empty() ? "" : ", ") + key + " = " + AttributeToString(value);
  }
  return "{" + out + "}";
}

class DotWriter {
 public:
  explicit DotWriter(const Graph& graph) : graph_(graph), faults_(FaultsByOp(VerifyGraph(graph))) {}

  std::string Write() {
    out_ = "digraph " + DotQuote(graph_.name()) + " {\n";
    std::string title = "@" + graph_.name();
    if (!graph_.attrs().empty()) title += " attributes " + AttrsText(graph_.attrs());
    out_ += "  graph [label=" + DotQuote(title) + ", labelloc=t, fontname=\"monospace\"];\n";
    out_ += "  node [shape=box, fontname=\"monospace\", fontsize=10];\n";
    out_ += "  edge [fontname=\"monospace\", fontsize=8];\n";
    if (auto it = faults_.find(-1); it != faults_.end()) {
      std::string label;
      for (const std::string& fault : it->second)
        label += "FAULT: " + fault + "\n";
      out_ += "  faults [shape=note, color=red, fontcolor=red, label=" + DotQuote(label) + "];\n";
    }
    for (size_t i = 0; i < graph_.inputs().size(); ++i) {
      const ValueId id = graph_.inputs()[i];
      input_index_.emplace(id, static_cast<int>(i));
      out_ += "  in" + std::to_string(i) + " [shape=ellipse, label=" +
              DotQuote(ValueRef(graph_, id) + " : " + TypeText(graph_, id)) + "];\n";
    }
    for (size_t i = 0; i < graph_.ops().size(); ++i)
      WriteOp(static_cast<int>(i));
    out_ += "  out [shape=ellipse, label=\"return\"];\n";
    for (ValueId id : graph_.outputs())
      Edge(id, "out");
    out_ += "}\n";
    return std::move(out_);
  }

 private:
  void WriteOp(int index) {
    const Op& op = graph_.ops()[index];
    const std::string node = "op" + std::to_string(index);
    std::string label, style;
    if (op.def != nullptr && op.def->Has(kWeight)) {
      label = op.StringAttr("name", "<unnamed weight>");
      for (ValueId id : op.results)
        label += "\n" + TypeText(graph_, id);
      if (op.HasAttr("quant")) {
        label += "\n" + op.StringAttr("quant") + " " + std::to_string(op.IntAttr("block_rows")) +
                 "x" + std::to_string(op.IntAttr("block_cols")) + " scales";
      }
      style = "style=filled, fillcolor=lightgrey, fontsize=8, height=0.2, ";
    } else {
      label = op.name();
      for (ValueId id : op.results) {
        label += "\n" + ValueRef(graph_, id) + " : " + TypeText(graph_, id);
      }
    }
    if (auto it = faults_.find(index); it != faults_.end()) {
      for (const std::string& fault : it->second)
        label += "\nFAULT: " + fault;
      style += "color=red, fontcolor=red, penwidth=2, ";
    }
    out_ += "  " + node + " [" + style + "label=" + DotQuote(label) + "];\n";
    for (ValueId id : op.operands)
      Edge(id, node);
  }

  // The node that defines `id`; a red placeholder when nothing does.
  std::string Source(ValueId id) {
    if (graph_.IsValid(id)) {
      const int def = graph_.value(id).def_op;
      if (def >= 0 && def < static_cast<int>(graph_.ops().size())) {
        return "op" + std::to_string(def);
      }
      if (auto it = input_index_.find(id); def == -1 && it != input_index_.end()) {
        return "in" + std::to_string(it->second);
      }
    }
    auto [it, inserted] = undefined_.emplace(id, "undef" + std::to_string(undefined_.size()));
    if (inserted) {
      out_ += "  " + it->second +
              " [shape=ellipse, style=dashed, color=red, fontcolor=red, label=" +
              DotQuote(ValueRef(graph_, id) + "\n(undefined)") + "];\n";
    }
    return it->second;
  }

  void Edge(ValueId id, const std::string& to) {
    const std::string from = Source(id);
    out_ += "  " + from + " -> " + to + " [label=" + DotQuote(ValueRef(graph_, id)) + "];\n";
  }

  const Graph& graph_;
  std::map<int, std::vector<std::string>> faults_;
  std::unordered_map<ValueId, int> input_index_;
  std::map<ValueId, std::string> undefined_;
  std::string out_;
};

// ---- JSON ---------------------------------------------------------------

JsonValue AttrToJson(const Attribute& attr) {
  if (const auto* i = std::get_if<int64_t>(&attr)) return JsonValue::Int(*i);
  if (const auto* d = std::get_if<double>(&attr)) return JsonValue::Double(*d);
  if (const auto* s = std::get_if<std::string>(&attr)) return JsonValue::String(ValidUtf8(*s));
  JsonValue list = JsonValue::MakeArray();
  for (int64_t v : std::get<std::vector<int64_t>>(attr))
    list.Append(JsonValue::Int(v));
  return list;
}

JsonValue AttrsToJson(const AttrMap& attrs) {
  JsonValue object = JsonValue::MakeObject();
  for (const auto& [key, value] : attrs)
    object.Set(ValidUtf8(key), AttrToJson(value));
  return object;
}

JsonValue NamedValue(const Graph& graph, ValueId id) {
  JsonValue value = JsonValue::MakeObject();
  value.Set("name", JsonValue::String(ValidUtf8(ValueRef(graph, id))));
  value.Set("type", JsonValue::String(TypeText(graph, id)));
  return value;
}

JsonValue StringArray(const std::vector<std::string>& strings) {
  JsonValue array = JsonValue::MakeArray();
  for (const std::string& s : strings)
    array.Append(JsonValue::String(ValidUtf8(s)));
  return array;
}

// ---- line diff ----------------------------------------------------------

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

enum class EditKind : uint8_t { kEqual, kDelete, kInsert };

struct Edit {
  EditKind kind;
  int a;  // line of `a` (kEqual, kDelete)
  int b;  // line of `b` (kEqual, kInsert)
};

// The edit script of a longest common subsequence of two line-id sequences,
// by Hirschberg's method: O(n*m) time, O(n+m) memory, so long graphs diff
// without an n*m table. Steps: 1. strip the common prefix and suffix; 2. a
// side left empty or one line long is solved directly; 3. otherwise split
// `a` in half, find the split of `b` where the forward LCS lengths of the
// top half plus the backward lengths of the bottom half peak, and recurse.
class LcsDiff {
 public:
  LcsDiff(const std::vector<int>& a, const std::vector<int>& b) : a_(a), b_(b) {}

  std::vector<Edit> Run() {
    Solve(0, static_cast<int>(a_.size()), 0, static_cast<int>(b_.size()));
    return std::move(edits_);
  }

 private:
  void Solve(int a0, int a1, int b0, int b1) {
    while (a0 < a1 && b0 < b1 && a_[a0] == b_[b0])
      edits_.push_back({EditKind::kEqual, a0++, b0++});
    int suffix = 0;
    while (a1 - suffix > a0 && b1 - suffix > b0 && a_[a1 - suffix - 1] == b_[b1 - suffix - 1]) {
      ++suffix;
    }
    a1 -= suffix;
    b1 -= suffix;
    if (a0 == a1) {
      for (int j = b0; j < b1; ++j)
        edits_.push_back({EditKind::kInsert, a0, j});
    } else if (b0 == b1) {
      for (int i = a0; i < a1; ++i)
        edits_.push_back({EditKind::kDelete, i, b0});
    } else if (a1 - a0 == 1) {
      const int match =
          static_cast<int>(std::find(b_.begin() + b0, b_.begin() + b1, a_[a0]) - b_.begin());
      if (match == b1) edits_.push_back({EditKind::kDelete, a0, b0});
      for (int j = b0; j < std::min(match, b1); ++j)
        edits_.push_back({EditKind::kInsert, a0, j});
      if (match < b1) {
        edits_.push_back({EditKind::kEqual, a0, match});
        for (int j = match + 1; j < b1; ++j)
          edits_.push_back({EditKind::kInsert, a1, j});
      }
    } else {
      const int mid = a0 + (a1 - a0) / 2;
      const std::vector<int> top = Forward(a0, mid, b0, b1);
      const std::vector<int> bottom = Backward(mid, a1, b0, b1);
      int split = 0;
      for (int j = 1; j <= b1 - b0; ++j) {
        if (top[j] + bottom[j] > top[split] + bottom[split]) split = j;
      }
      Solve(a0, mid, b0, b0 + split);
      Solve(mid, a1, b0 + split, b1);
    }
    for (int k = 0; k < suffix; ++k)
      edits_.push_back({EditKind::kEqual, a1 + k, b1 + k});
  }

  // row[j] = LCS length of a[a0, a1) and b[b0, b0 + j).
  std::vector<int> Forward(int a0, int a1, int b0, int b1) const {
    const int m = b1 - b0;
    std::vector<int> prev(m + 1, 0), row(m + 1, 0);
    for (int i = a0; i < a1; ++i) {
      for (int j = 1; j <= m; ++j) {
        row[j] = a_[i] == b_[b0 + j - 1] ? prev[j - 1] + 1 : std::max(prev[j], row[j - 1]);
      }
      std::swap(prev, row);
    }
    return prev;
  }

  // row[j] = LCS length of a[a0, a1) and b[b0 + j, b1).
  std::vector<int> Backward(int a0, int a1, int b0, int b1) const {
    const int m = b1 - b0;
    std::vector<int> prev(m + 1, 0), row(m + 1, 0);
    for (int i = a1 - 1; i >= a0; --i) {
      for (int j = m - 1; j >= 0; --j) {
        row[j] = a_[i] == b_[b0 + j] ? prev[j + 1] + 1 : std::max(prev[j], row[j + 1]);
      }
      std::swap(prev, row);
    }
    return prev;
  }

  const std::vector<int>& a_;
  const std::vector<int>& b_;
  std::vector<Edit> edits_;
};

// "start" or "start,count" as `diff -u` writes a hunk range: an empty range
// starts at the line before it.
std::string HunkRange(int lines_before, int count) {
  if (count == 1) return std::to_string(lines_before + 1);
  return std::to_string(count == 0 ? lines_before : lines_before + 1) + "," + std::to_string(count);
}

}  // namespace

std::string ExportDot(const Graph& graph) {
  return DotWriter(graph).Write();
}

std::string ExportJson(const Graph& graph) {
  const std::vector<Diagnostic> diagnostics = VerifyGraph(graph);
  std::map<int, std::vector<std::string>> faults = FaultsByOp(diagnostics);

  JsonValue root = JsonValue::MakeObject();
  root.Set("name", JsonValue::String(ValidUtf8(graph.name())));
  root.Set("attrs", AttrsToJson(graph.attrs()));
  JsonValue inputs = JsonValue::MakeArray();
  for (ValueId id : graph.inputs())
    inputs.Append(NamedValue(graph, id));
  root.Set("inputs", std::move(inputs));

  JsonValue ops = JsonValue::MakeArray();
  for (size_t i = 0; i < graph.ops().size(); ++i) {
    const Op& op = graph.ops()[i];
    const int index = static_cast<int>(i);
    JsonValue entry = JsonValue::MakeObject();
    entry.Set("index", JsonValue::Int(index));
    entry.Set("line", JsonValue::Int(OpLine(index)));
    entry.Set("op", JsonValue::String(op.name()));
    JsonValue operands = JsonValue::MakeArray();
    for (ValueId id : op.operands)
      operands.Append(JsonValue::String(ValidUtf8(ValueRef(graph, id))));
    entry.Set("operands", std::move(operands));
    JsonValue results = JsonValue::MakeArray();
    for (ValueId id : op.results)
      results.Append(NamedValue(graph, id));
    entry.Set("results", std::move(results));
    entry.Set("attrs", AttrsToJson(op.attrs));
    entry.Set("faults", StringArray(faults[index]));
    ops.Append(std::move(entry));
  }
  root.Set("ops", std::move(ops));

  JsonValue outputs = JsonValue::MakeArray();
  for (ValueId id : graph.outputs())
    outputs.Append(JsonValue::String(ValidUtf8(ValueRef(graph, id))));
  root.Set("outputs", std::move(outputs));

  JsonValue list = JsonValue::MakeArray();
  for (const Diagnostic& d : diagnostics) {
    JsonValue entry = JsonValue::MakeObject();
    entry.Set("op_index", JsonValue::Int(d.op_index));
    entry.Set("rule", JsonValue::String(ValidUtf8(d.rule)));
    entry.Set("message", JsonValue::String(ValidUtf8(d.message)));
    entry.Set("text", JsonValue::String(ValidUtf8(FormatDiagnostic(graph, d))));
    list.Append(std::move(entry));
  }
  root.Set("diagnostics", std::move(list));
  return root.Dump(/*indent=*/2) + "\n";
}

std::string LineDiff(const std::string& a, const std::string& b, const std::string& name_a,
                     const std::string& name_b, int context) {
  context = std::max(context, 0);
  const std::vector<std::string_view> lines_a = SplitLines(a), lines_b = SplitLines(b);
  // Lines become ids so the LCS compares integers.
  std::unordered_map<std::string_view, int> ids;
  const auto intern = [&](const std::vector<std::string_view>& lines) {
    std::vector<int> out;
    out.reserve(lines.size());
    for (std::string_view line : lines) {
      out.push_back(ids.emplace(line, static_cast<int>(ids.size())).first->second);
    }
    return out;
  };
  const std::vector<int> ids_a = intern(lines_a), ids_b = intern(lines_b);
  std::vector<Edit> edits = LcsDiff(ids_a, ids_b).Run();

  // Within each changed run, deletions first, as diff -u prints them.
  for (size_t i = 0; i < edits.size();) {
    size_t j = i;
    while (j < edits.size() && edits[j].kind != EditKind::kEqual)
      ++j;
    std::stable_partition(edits.begin() + i, edits.begin() + j,
                          [](const Edit& e) { return e.kind == EditKind::kDelete; });
    i = j == i ? i + 1 : j;
  }

  std::string out = "--- " + name_a + "\n+++ " + name_b + "\n";
  // Lines of a and b before each edit.
  std::vector<int> before_a(edits.size() + 1, 0), before_b(edits.size() + 1, 0);
  std::vector<size_t> changes;
  for (size_t e = 0; e < edits.size(); ++e) {
    before_a[e + 1] = before_a[e] + (edits[e].kind != EditKind::kInsert ? 1 : 0);
    before_b[e + 1] = before_b[e] + (edits[e].kind != EditKind::kDelete ? 1 : 0);
    if (edits[e].kind != EditKind::kEqual) changes.push_back(e);
  }
  const size_t gap = 2 * static_cast<size_t>(context);
  for (size_t c = 0; c < changes.size();) {
    size_t last = changes[c];
    size_t next = c + 1;
    while (next < changes.size() && changes[next] - last - 1 <= gap)
      last = changes[next++];
    const size_t begin = changes[c] >= static_cast<size_t>(context) ? changes[c] - context : 0;
    const size_t end = std::min(edits.size(), last + context + 1);
    out += "@@ -" + HunkRange(before_a[begin], before_a[end] - before_a[begin]) + " +" +
           HunkRange(before_b[begin], before_b[end] - before_b[begin]) + " @@\n";
    for (size_t e = begin; e < end; ++e) {
      const Edit& edit = edits[e];
      switch (edit.kind) {
        case EditKind::kEqual:
          out += " " + std::string(lines_a[edit.a]) + "\n";
          break;
        case EditKind::kDelete:
          out += "-" + std::string(lines_a[edit.a]) + "\n";
          break;
        case EditKind::kInsert:
          out += "+" + std::string(lines_b[edit.b]) + "\n";
          break;
      }
    }
    c = next;
  }
  return out;
}

std::string FilterLines(const std::string& text, const std::regex& pattern) {
  std::string out;
  for (std::string_view line : SplitLines(text)) {
    if (std::regex_search(line.begin(), line.end(), pattern)) {
      out.append(line);
      out += '\n';
    }
  }
  return out;
}

}  // namespace moegraph
