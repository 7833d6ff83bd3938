// Other views of a graph for people and tools (graph-dump): Graphviz DOT,
// JSON, and a line diff and line filter over any of the text forms.
#pragma once

#include <regex>
#include <string>

#include "ir/graph.h"

namespace moegraph {

// A Graphviz digraph. Nodes: `in<i>` per graph input (ellipse), `op<i>` per
// op labelled with the op name and its results' `%name : type`, weights as
// small grey boxes labelled with the checkpoint name, `out` for the return.
// Edges run from an operand's definition to its user, labelled `%name`. Ops
// the verifier faults are red with the fault in the label; operands that name
// no defined value come from red dashed `undef<i>` nodes. Never fails.
std::string ExportDot(const Graph& graph);

// One JSON object, indented 2 spaces per level (so line tools such as
// LineDiff and FilterLines work on it), then a newline:
//   {"name", "attrs": {...}, "inputs": [{"name", "type"}],
//    "ops": [{"index", "line", "op", "operands": ["%a", ...],
//             "results": [{"name", "type"}], "attrs": {...}, "faults": ["..."]}],
//    "outputs": ["%y", ...],
//    "diagnostics": [{"op_index", "rule", "message", "text"}]}
// Value names carry their `%`, as operands do, so the two can be matched.
// "line" is the op's line in PrintGraph's text; "faults" and "diagnostics"
// come from VerifyGraph ("op_index" -1: about the graph). Strings are valid
// UTF-8 (invalid bytes become U+FFFD). Never fails.
std::string ExportJson(const Graph& graph);

// A unified-style diff of `a` and `b` line by line (a longest common
// subsequence of lines): a `--- name_a` / `+++ name_b` header, then hunks
// `@@ -start,count +start,count @@` of lines prefixed ' ' (both), '-' (only
// in a) or '+' (only in b), with `context` unchanged lines around each change
// (hunks closer than that merge). Counts of 1 are omitted as in `diff -u`.
// Identical inputs give the header alone. A missing final newline is ignored.
std::string LineDiff(const std::string& a, const std::string& b, const std::string& name_a,
                     const std::string& name_b, int context);

// The lines of `text` in which `pattern` matches somewhere (std::regex_search),
// each ending in '\n'.
std::string FilterLines(const std::string& text, const std::regex& pattern);

}  // namespace moegraph
