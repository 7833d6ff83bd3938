// RoPE parameters: parsing, and the inverse frequencies / attention factor of every scaling type
// against transformers' ROPE_INIT_FUNCTIONS (tests/data/rope/rope_goldens.json, written by
// tools/make_rope_goldens.py with transformers 5.24 / torch 2.15, float32).
#include "frontends/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "support/json.h"
#include "support/mapped_file.h"

namespace moegraph {
namespace {

JsonValue LoadGoldens() {
  const std::string path = std::string(MOEGRAPH_TEST_DATA_DIR) + "/rope/rope_goldens.json";
  StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  if (!text.ok()) return JsonValue::Null();
  StatusOr<JsonValue> json = ParseJson(*text, path);
  EXPECT_TRUE(json.ok()) << json.status().ToString();
  return json.ok() ? *json : JsonValue::Null();
}

StatusOr<RopeParameters> ParseObject(const JsonValue& config, int64_t max_position_embeddings) {
  FieldReader reader(config, "config.json");
  return ParseRopeParameters(reader, /*theta=*/10000.0, max_position_embeddings);
}

TEST(RopeTest, MatchesTransformersRopeInitFunctions) {
  const JsonValue goldens = LoadGoldens();
  ASSERT_TRUE(goldens.is_object());
  const JsonValue* cases = goldens.Find("cases");
  ASSERT_NE(cases, nullptr);
  ASSERT_GE(cases->as_array().size(), 10u);
  for (const JsonValue& c : cases->as_array()) {
    const std::string name = c.Find("name")->as_string();
    const int64_t head_dim = c.Find("head_dim")->as_int();
    const int64_t max_pos = c.Find("max_position_embeddings")->as_int();
    JsonValue config = JsonValue::MakeObject();
    config.Set("rope_parameters", *c.Find("rope_parameters"));
    StatusOr<RopeParameters> rope = ParseObject(config, max_pos);
    ASSERT_TRUE(rope.ok()) << name << ": " << rope.status().ToString();
    StatusOr<RopeFrequencies> freq =
        ComputeRopeFrequencies(*rope, head_dim, max_pos, c.Find("seq_len")->as_int());
    ASSERT_TRUE(freq.ok()) << name << ": " << freq.status().ToString();
    const auto& expected = c.Find("inv_freq")->as_array();
    ASSERT_EQ(freq->inv_freq.size(), expected.size()) << name;
    EXPECT_EQ(freq->rotary_dim, 2 * static_cast<int64_t>(expected.size())) << name;
    for (size_t i = 0; i < expected.size(); ++i) {
      const double want = expected[i].as_double();
      // transformers computes in float32; this is double.
      EXPECT_NEAR(freq->inv_freq[i], want, 1e-5 * std::fabs(want))
          << name << " inv_freq[" << i << "]";
    }
    EXPECT_NEAR(freq->attention_factor, c.Find("attention_factor")->as_double(), 1e-12) << name;
  }
}

TEST(RopeTest, GoldensCoverEveryScalingType) {
  const JsonValue goldens = LoadGoldens();
  ASSERT_TRUE(goldens.is_object());
  bool seen[5] = {};
  for (const JsonValue& c : goldens.Find("cases")->as_array()) {
    JsonValue config = JsonValue::MakeObject();
    config.Set("rope_parameters", *c.Find("rope_parameters"));
    StatusOr<RopeParameters> rope =
        ParseObject(config, c.Find("max_position_embeddings")->as_int());
    ASSERT_TRUE(rope.ok());
    seen[static_cast<int>(rope->type)] = true;
  }
  for (int t = 0; t < 5; ++t)
    EXPECT_TRUE(seen[t]) << RopeTypeName(static_cast<RopeType>(t));
}

TEST(RopeTest, ParsesTopLevelFieldsAndBothSpellings) {
  JsonValue config = JsonValue::MakeObject();
  config.Set("partial_rotary_factor", JsonValue::Double(0.25));
  config.Set("rope_scaling", JsonValue::MakeObject({{"type", JsonValue::String("yarn")},
                                                    {"factor", JsonValue::Double(4.0)}}));
  StatusOr<RopeParameters> rope = ParseObject(config, 8192);
  ASSERT_TRUE(rope.ok()) << rope.status().ToString();
  EXPECT_EQ(rope->type, RopeType::kYarn);
  EXPECT_EQ(rope->theta, 10000.0);
  EXPECT_EQ(rope->partial_rotary_factor, 0.25);
  EXPECT_EQ(rope->factor, 4.0);
  EXPECT_EQ(rope->original_max_position_embeddings, 8192);  // defaults to max_position_embeddings

  // yarn without a factor: max_position_embeddings / original_max_position_embeddings.
  config = JsonValue::MakeObject();
  config.Set("rope_parameters",
             JsonValue::MakeObject({{"rope_type", JsonValue::String("yarn")},
                                    {"rope_theta", JsonValue::Double(5e5)},
                                    {"original_max_position_embeddings", JsonValue::Int(4096)}}));
  rope = ParseObject(config, 32768);
  ASSERT_TRUE(rope.ok()) << rope.status().ToString();
  EXPECT_EQ(rope->theta, 5e5);
  EXPECT_EQ(rope->factor, 8.0);

  // Absent or null: unscaled.
  config = JsonValue::MakeObject();
  config.Set("rope_scaling", JsonValue::Null());
  rope = ParseObject(config, 2048);
  ASSERT_TRUE(rope.ok());
  EXPECT_EQ(*rope, RopeParameters{});
}

TEST(RopeTest, RejectsBadParametersNamingTheField) {
  struct Case {
    JsonValue rope;
    StatusCode code;
    std::string message;
  };
  auto s = [](const char* v) { return JsonValue::String(v); };
  auto d = [](double v) { return JsonValue::Double(v); };
  const Case cases[] = {
      {JsonValue::MakeObject({{"rope_type", s("longrope")}}), StatusCode::kUnimplemented,
       "config.json: field \"rope_parameters\" has rope_type \"longrope\"; supported: default, "
       "linear, dynamic, yarn, llama3"},
      {JsonValue::MakeObject({{"rope_type", JsonValue::Int(1)}}), StatusCode::kInvalidArgument,
       "config.json: field \"rope_parameters\" rope_type must be a string, found an integer"},
      {JsonValue::MakeObject({{"rope_type", s("dynamic")}}), StatusCode::kInvalidArgument,
       "config.json: field \"rope_parameters\" rope_type \"dynamic\" needs a factor"},
      {JsonValue::MakeObject({{"rope_type", s("linear")}, {"factor", s("2")}}),
       StatusCode::kInvalidArgument,
       "config.json: field \"rope_parameters\" factor must be a number, found a string"},
      {JsonValue::MakeObject({{"rope_type", s("llama3")},
                              {"factor", d(8)},
                              {"low_freq_factor", d(4)},
                              {"high_freq_factor", d(1)}}),
       StatusCode::kInvalidArgument,
       "config.json: field \"rope_parameters\" llama3 needs 0 < low_freq_factor < "
       "high_freq_factor, got 4.0 and 1.0"},
      {JsonValue::MakeObject({{"partial_rotary_factor", d(1.5)}}), StatusCode::kInvalidArgument,
       "config.json: field \"rope_parameters\" partial_rotary_factor must be in (0, 1], got 1.5"},
      {JsonValue::MakeObject({{"rope_type", s("yarn")},
                              {"factor", d(2)},
                              {"original_max_position_embeddings", d(4096.5)}}),
       StatusCode::kInvalidArgument,
       "config.json: field \"rope_parameters\" original_max_position_embeddings must be an "
       "integer, found a non-integer number"},
  };
  for (const Case& c : cases) {
    JsonValue config = JsonValue::MakeObject();
    config.Set("rope_parameters", c.rope);
    StatusOr<RopeParameters> rope = ParseObject(config, 2048);
    ASSERT_FALSE(rope.ok()) << c.message;
    EXPECT_EQ(rope.status().code(), c.code) << c.message;
    EXPECT_EQ(rope.status().message(), c.message);
  }
}

TEST(RopeTest, RotaryDimMustBeEven) {
  RopeParameters rope;
  rope.partial_rotary_factor = 0.3;  // int(18 * 0.3) = 5
  StatusOr<RopeFrequencies> freq = ComputeRopeFrequencies(rope, 18, 2048);
  ASSERT_FALSE(freq.ok());
  EXPECT_EQ(freq.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(freq.status().message().find("= 5 must be even"), std::string::npos)
      << freq.status().message();
}

}  // namespace
}  // namespace moegraph
