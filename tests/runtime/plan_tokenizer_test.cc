// runtime/plan_tokenizer: the plan's tokenizer files read back, bos and eos settings, prompts.
#include "runtime/plan_tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "frontends/demo_model.h"
#include "support/hash.h"
#include "support/mapped_file.h"
#include "tests/testing/temp_dir.h"

namespace moegraph {
namespace {

class PlanTokenizerTest : public testing::TempDirTest {
 protected:
  // The demo model directory with `tokenizer_config` and `generation_config` as those files,
  // and a plan recording every file as it is now.
  Plan PlanFor(const std::string& tokenizer_config, const std::string& generation_config) {
    const std::string dir = root_ + "/model";
    EXPECT_TRUE(WriteDemoModel(dir).ok());
    std::ofstream(dir + "/tokenizer_config.json") << tokenizer_config;
    std::ofstream(dir + "/generation_config.json") << generation_config;
    Plan plan;
    plan.model_dir = dir;
    for (const char* name : kPlanTokenizerFileNames) {
      plan.tokenizer_files.push_back(
          PlanTokenizerFile{name, HashBytes(*ReadFileToString(dir + "/" + name))});
    }
    return plan;
  }
  std::vector<int32_t> Encode(const Plan& plan, const std::string& text) {
    StatusOr<PlanTokenizer> tok = LoadPlanTokenizer(plan, "", /*load_tokenizer=*/true);
    EXPECT_TRUE(tok.ok()) << tok.status().ToString();
    if (!tok.ok()) return {};
    StatusOr<std::vector<int32_t>> ids = EncodePrompt(*tok, text, "prompt");
    EXPECT_TRUE(ids.ok()) << ids.status().ToString();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }
};

TEST_F(PlanTokenizerTest, EosIdsAndNoBosByDefault) {
  const Plan plan = PlanFor("{\"add_bos_token\": false}", "{\"eos_token_id\": [0, 7]}");
  StatusOr<PlanTokenizer> ids_only = LoadPlanTokenizer(plan, "", /*load_tokenizer=*/false);
  ASSERT_TRUE(ids_only.ok()) << ids_only.status().ToString();
  EXPECT_EQ(ids_only->tokenizer, nullptr);
  EXPECT_EQ(ids_only->eos_token_ids, (std::vector<int32_t>{0, 7}));
  const std::vector<int32_t> hello = Encode(plan, "Hello");
  ASSERT_FALSE(hello.empty());
  EXPECT_NE(hello.front(), 0);
}

TEST_F(PlanTokenizerTest, AddBosTokenPutsTheBosFirstOnce) {
  const Plan plain = PlanFor("{}", "{}");
  const std::vector<int32_t> hello = Encode(plain, "Hello");
  const Plan plan = PlanFor("{\"add_bos_token\": true, \"bos_token\": \"<|endoftext|>\"}", "{}");
  std::vector<int32_t> expected = hello;
  expected.insert(expected.begin(), 0);
  EXPECT_EQ(Encode(plan, "Hello"), expected);
  // A prompt that already starts with it gets no second one.
  EXPECT_EQ(Encode(plan, "<|endoftext|>Hello"), expected);
  // Without bos_token, generation_config.json's bos_token_id names it.
  const Plan by_id = PlanFor("{\"add_bos_token\": true}", "{\"bos_token_id\": 5}");
  expected[0] = 5;
  EXPECT_EQ(Encode(by_id, "Hello"), expected);
}

TEST_F(PlanTokenizerTest, ErrorsNameTheFileAndTheField) {
  Plan plan = PlanFor("{\"add_bos_token\": true, \"bos_token\": \"<s>\"}", "{}");
  StatusOr<PlanTokenizer> tok = LoadPlanTokenizer(plan, "", true);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find(
                "tokenizer_config.json: bos_token '<s>' is not a token of tokenizer.json"),
            std::string::npos)
      << tok.status().ToString();

  plan = PlanFor("{\"add_bos_token\": true}", "{}");
  tok = LoadPlanTokenizer(plan, "", true);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("add_bos_token is true but neither bos_token nor"),
            std::string::npos)
      << tok.status().ToString();

  plan = PlanFor("{}", "{}");
  tok = LoadPlanTokenizer(plan, "", true);
  ASSERT_TRUE(tok.ok());
  StatusOr<std::vector<int32_t>> empty = EncodePrompt(*tok, "", "--prompt #3");
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.status().message(), "--prompt #3 is empty: it encodes to no ids");
  StatusOr<std::vector<int32_t>> invalid = EncodePrompt(*tok, "a\xc3", "--prompt #1");
  EXPECT_EQ(invalid.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(invalid.status().ToString().find("--prompt #1"), std::string::npos);

  // A changed generation_config.json is refused even when only ids are asked for.
  std::ofstream(plan.model_dir + "/generation_config.json") << "{\"eos_token_id\": 1}";
  tok = LoadPlanTokenizer(plan, "", /*load_tokenizer=*/false);
  EXPECT_EQ(tok.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(tok.status().message().find("generation_config.json changed since the plan was "
                                        "compiled"),
            std::string::npos)
      << tok.status().ToString();

  // No recorded files: nothing to stop at, no tokenizer.
  plan.tokenizer_files.clear();
  tok = LoadPlanTokenizer(plan, "", true);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(tok->tokenizer, nullptr);
  EXPECT_TRUE(tok->eos_token_ids.empty());
  EXPECT_EQ(EncodePrompt(*tok, "Hello", "--prompt #1").status().code(),
            StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace moegraph
