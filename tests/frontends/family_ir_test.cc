// The generic graph of every Qwen3-MoE model the tests ship (the demo model and each golden
// case) printed as IR text and compared with tests/data/ir/<name>.ir. The reference texts were
// written by the builder before it was split into blocks (frontends/blocks.h), so this test
// proves the block library builds the same graph: same ops, names, attributes and order.
// MOEGRAPH_WRITE_IR_REFERENCE=1 rewrites the references instead of comparing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "ir/printer.h"
#include "tests/golden/golden_util.h"
#include "tests/testing/temp_dir.h"

namespace moegraph {
namespace {

std::string ReferencePath(const std::string& name) {
  return std::string(MOEGRAPH_TEST_DATA_DIR) + "/ir/" + name + ".ir";
}

void CheckAgainstReference(const std::string& name, const std::string& model_dir) {
  StatusOr<HfModel> model = LoadHfModel(model_dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::string text = PrintGraph(model->graph);
  const std::string path = ReferencePath(name);
  if (std::getenv("MOEGRAPH_WRITE_IR_REFERENCE") != nullptr) {
    std::ofstream(path, std::ios::binary) << text;
    GTEST_SKIP() << "wrote " << path;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "missing reference " << path;
  std::stringstream reference;
  reference << in.rdbuf();
  ASSERT_FALSE(reference.str().empty()) << path;
  EXPECT_EQ(text, reference.str()) << name << ": the generic graph differs from " << path;
}

class FamilyIrTest : public testing::TempDirTest {};

TEST_F(FamilyIrTest, DemoModelGraphIsUnchanged) {
  ASSERT_TRUE(WriteDemoModel(root_ + "/demo").ok());
  CheckAgainstReference("demo", root_ + "/demo");
}

TEST_F(FamilyIrTest, DemoModelF32GraphIsUnchanged) {
  ASSERT_TRUE(WriteDemoModel(root_ + "/demo", {.dtype = DType::kF32}).ok());
  CheckAgainstReference("demo_f32", root_ + "/demo");
}

class GoldenIrTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenIrTest, GoldenModelGraphIsUnchanged) {
  CheckAgainstReference("golden_" + GetParam(), testing::GoldenDir(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Goldens, GoldenIrTest, ::testing::ValuesIn(testing::GoldenCases()));

}  // namespace
}  // namespace moegraph
