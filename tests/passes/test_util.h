// Helpers shared by the pass tests: IR text in, IR text out.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/pass.h"

namespace moegraph {

// Parses `text` and checks it verifies; an empty graph (and a test failure)
// when it does not.
inline Graph ParseOrDie(const std::string& text) {
  StatusOr<Graph> graph = ParseGraph(text, "test.mgir");
  EXPECT_TRUE(graph.ok()) << graph.status().ToString();
  if (!graph.ok()) return Graph();
  const Status verified = Verify(*graph);
  EXPECT_TRUE(verified.ok()) << verified.ToString() << "\n" << text;
  return std::move(graph).value();
}

// Parses `text`, runs `pass` on it and returns the printed result, which must
// verify; `changed` receives Run's answer. A pass error fails the test and
// comes back as the text.
inline std::string RunPass(const std::string& text, Pass& pass, bool* changed = nullptr) {
  Graph graph = ParseOrDie(text);
  StatusOr<bool> result = pass.Run(graph);
  if (!result.ok()) {
    ADD_FAILURE() << "pass '" << pass.name() << "' failed: " << result.status().ToString();
    return result.status().ToString();
  }
  if (changed) *changed = *result;
  const Status verified = Verify(graph);
  EXPECT_TRUE(verified.ok()) << "after pass '" << pass.name() << "': " << verified.ToString()
                             << "\n"
                             << PrintGraph(graph);
  return PrintGraph(graph);
}

}  // namespace moegraph
