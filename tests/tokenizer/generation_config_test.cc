// Tests for the generation_config.json and tokenizer_config.json readers.
#include "tokenizer/generation_config.h"

#include <gtest/gtest.h>

namespace moegraph::tokenizer {
namespace {

TEST(GenerationConfigTest, EosIsAnIntOrAList) {
  StatusOr<GenerationConfig> single =
      ParseGenerationConfig(R"({"bos_token_id": 1, "eos_token_id": 2, "do_sample": true})", "g");
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  EXPECT_EQ(single->eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(single->bos_token_id, 1);
  StatusOr<GenerationConfig> list =
      ParseGenerationConfig(R"({"eos_token_id": [151645, 151643]})", "g");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->eos_token_ids, (std::vector<int32_t>{151645, 151643}));
  EXPECT_FALSE(list->bos_token_id.has_value());
  StatusOr<GenerationConfig> none = ParseGenerationConfig(R"({"eos_token_id": null})", "g");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->eos_token_ids.empty());
}

TEST(GenerationConfigTest, WrongTypesAreErrorsNamingTheField) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"eos_token_id": "2"})", "g.json: eos_token_id must be an integer or a list"},
      {R"({"eos_token_id": [1, "x"]})", "g.json: eos_token_id[1] must be a non-negative integer"},
      {R"({"eos_token_id": -3})",
       "eos_token_id must be a non-negative integer token id, got an "
       "integer -3"},
      {R"({"bos_token_id": 1.5})", "bos_token_id must be a non-negative integer"},
      {R"([1])", "g.json: must be a JSON object, got an array"},
  };
  for (const auto& [json, message] : cases) {
    StatusOr<GenerationConfig> config = ParseGenerationConfig(json, "g.json");
    ASSERT_FALSE(config.ok()) << json;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(config.status().message().find(message), std::string::npos)
        << config.status().message();
  }
  EXPECT_EQ(ReadGenerationConfig("/nonexistent/generation_config.json").status().code(),
            StatusCode::kNotFound);
}

TEST(TokenizerConfigTest, TokensAreStringsOrAddedTokenObjects) {
  StatusOr<TokenizerConfig> config = ParseTokenizerConfig(
      R"({"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>",
          "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false}})",
      "t");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->add_bos_token, true);
  EXPECT_EQ(config->add_eos_token, false);
  EXPECT_EQ(config->bos_token, "<s>");
  EXPECT_EQ(config->eos_token, "</s>");
  StatusOr<TokenizerConfig> empty = ParseTokenizerConfig(R"({"bos_token": null})", "t");
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->bos_token.has_value());
  EXPECT_FALSE(empty->add_bos_token.has_value());
}

TEST(TokenizerConfigTest, WrongTypesAreErrorsNamingTheField) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"add_bos_token": "yes"})", "t.json: add_bos_token must be a bool, got a string"},
      {R"({"bos_token": 1})", "t.json: bos_token must be a string or an AddedToken object"},
      {R"({"eos_token": {"lstrip": true}})", "t.json: eos_token is an object without a string"},
  };
  for (const auto& [json, message] : cases) {
    StatusOr<TokenizerConfig> config = ParseTokenizerConfig(json, "t.json");
    ASSERT_FALSE(config.ok()) << json;
    EXPECT_NE(config.status().message().find(message), std::string::npos)
        << config.status().message();
  }
}

}  // namespace
}  // namespace moegraph::tokenizer
