// Compares the tokenizer with goldens made by Hugging Face `tokenizers`
// (tools/make_tokenizer_goldens.py): ids with and without special tokens, decoded text, and the
// streaming decoder, on every line of the hard corpus for every tokenizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "support/json.h"
#include "support/mapped_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace moegraph::tokenizer {
namespace {

const std::string kDataDir = std::string(MOEGRAPH_TEST_DATA_DIR) + "/tokenizer";

JsonValue ReadJson(const std::string& path) {
  StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  if (!text.ok()) return JsonValue();
  StatusOr<JsonValue> json = ParseJson(*text, path);
  EXPECT_TRUE(json.ok()) << json.status().ToString();
  return json.ok() ? *json : JsonValue();
}

std::vector<int32_t> Ids(const JsonValue& array) {
  std::vector<int32_t> ids;
  for (const JsonValue& v : array.as_array())
    ids.push_back(static_cast<int32_t>(v.as_int()));
  return ids;
}

std::string Show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i)
    s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, MatchesHuggingFaceTokenizersOnEveryCorpusLine) {
  const std::string dir = kDataDir + "/" + GetParam();
  StatusOr<Tokenizer> tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  const JsonValue corpus = ReadJson(kDataDir + "/corpus.json");
  const JsonValue golden = ReadJson(dir + "/golden.json");
  const auto& lines = corpus.Find("lines")->as_array();
  const auto& cases = golden.Find("cases")->as_array();
  const bool lossless = golden.Find("lossless")->as_bool();
  ASSERT_EQ(lines.size(), cases.size());
  ASSERT_GE(lines.size(), 120u);
  int mismatches = 0;
  size_t num_roundtrips = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& text = lines[i].as_string();
    const JsonValue& c = cases[i];
    SCOPED_TRACE("corpus line " + std::to_string(i) + ": '" + text.substr(0, 80) + "'");
    StatusOr<std::vector<int32_t>> plain = tokenizer->Encode(text, /*add_special_tokens=*/false);
    StatusOr<std::vector<int32_t>> special = tokenizer->Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(plain.ok()) << plain.status().ToString();
    ASSERT_TRUE(special.ok()) << special.status().ToString();
    const std::vector<int32_t> want_plain = Ids(*c.Find("ids"));
    // Fields equal to their fallback are left out of the file: ids_special -> ids,
    // decoded_skip / decoded_plain -> decoded.
    const std::vector<int32_t> want_special =
        Ids(c.Find("ids_special") != nullptr ? *c.Find("ids_special") : *c.Find("ids"));
    const std::string& want_decoded = c.Find("decoded")->as_string();
    const std::string& want_skip =
        c.Find("decoded_skip") != nullptr ? c.Find("decoded_skip")->as_string() : want_decoded;
    const std::string& want_decoded_plain =
        c.Find("decoded_plain") != nullptr ? c.Find("decoded_plain")->as_string() : want_decoded;
    EXPECT_EQ(*plain, want_plain) << "got " << Show(*plain) << "\nwant " << Show(want_plain);
    EXPECT_EQ(*special, want_special);
    mismatches += (*plain != want_plain) + (*special != want_special);

    StatusOr<std::string> decoded = tokenizer->Decode(want_special, /*skip_special_tokens=*/false);
    StatusOr<std::string> decoded_skip =
        tokenizer->Decode(want_special, /*skip_special_tokens=*/true);
    StatusOr<std::string> decoded_plain =
        tokenizer->Decode(want_plain, /*skip_special_tokens=*/false);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    ASSERT_TRUE(decoded_skip.ok() && decoded_plain.ok());
    EXPECT_EQ(*decoded, want_decoded);
    EXPECT_EQ(*decoded_skip, want_skip);
    EXPECT_EQ(*decoded_plain, want_decoded_plain);
    // A lossless tokenizer round-trips every line but those whose lstrip/rstrip tokens ate
    // spaces (the script checked which with `tokenizers`).
    if (lossless && c.Find("roundtrip")->as_bool()) {
      ++num_roundtrips;
      StatusOr<std::string> roundtrip = tokenizer->Decode(*plain, false);
      ASSERT_TRUE(roundtrip.ok());
      EXPECT_EQ(*roundtrip, text) << "decode(encode(x)) != x";
    }

    // Streaming: never invalid UTF-8 mid-stream, and the pieces add up to the full decode.
    for (const bool skip : {false, true}) {
      IncrementalDecoder stream(*tokenizer, skip);
      std::string streamed;
      for (const int32_t id : want_special) {
        StatusOr<std::string> piece = stream.Push(id);
        ASSERT_TRUE(piece.ok()) << piece.status().ToString();
        EXPECT_TRUE(ValidateUtf8(*piece, "stream").ok());
        streamed += *piece;
      }
      StatusOr<std::string> rest = stream.Flush();
      EXPECT_EQ(stream.num_restarts(), 0);
      ASSERT_TRUE(rest.ok());
      streamed += *rest;
      EXPECT_EQ(streamed, (skip ? want_skip : want_decoded)) << "skip=" << skip;
    }
  }
  if (lossless) {
    EXPECT_GE(num_roundtrips * 10, lines.size() * 8) << "too few lines round-trip";
  }
  EXPECT_EQ(mismatches, 0) << GetParam() << ": " << mismatches << " encodings differ from "
                           << "tokenizers over " << lines.size() << " lines";
}

// Every tokenizer the golden script made (one folder each).
std::vector<std::string> GoldenNames() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kDataDir)) {
    if (std::filesystem::exists(entry.path() / "golden.json")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(GoldenSetTest, HasEveryFamily) {
  const std::vector<std::string> names = GoldenNames();
  EXPECT_EQ(names.size(), 18u);
  for (const char* family : {"qwen2", "gpt2", "llama", "metaspace", "o200k"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), family), names.end()) << family;
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, GoldenTest, ::testing::ValuesIn(GoldenNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace moegraph::tokenizer
