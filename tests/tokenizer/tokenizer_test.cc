// Unit tests of the tokenizer: BPE details on a hand-made vocabulary, invalid input, malformed
// tokenizer.json files, components that must not be ignored, and the streaming decoder.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "support/json.h"
#include "support/mapped_file.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace moegraph::tokenizer {
namespace {

const std::string kDataDir = std::string(MOEGRAPH_TEST_DATA_DIR) + "/tokenizer";

// A BPE with continuing_subword_prefix, end_of_word_suffix and unk_token; expected ids below
// come from `tokenizers` 0.23.3 on this same JSON.
constexpr std::string_view kHandMade = R"({
  "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
  "normalizer": null,
  "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed",
                    "invert": false},
  "post_processor": null, "decoder": null,
  "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>", "fuse_unk": true,
            "byte_fallback": false, "ignore_merges": false,
            "vocab": {"<unk>": 0, "a": 1, "##b": 2, "##c</w>": 3, "ab": 4, "##b</w>": 5,
                      "abc</w>": 6, "a</w>": 7},
            "merges": ["a ##b", "ab ##c</w>"]}})";

JsonValue Parse(std::string_view text) {
  StatusOr<JsonValue> json = ParseJson(text, "test");
  EXPECT_TRUE(json.ok()) << json.status().ToString();
  return json.ok() ? *json : JsonValue();
}

JsonValue LoadJson(const std::string& name) {
  StatusOr<std::string> text = ReadFileToString(kDataDir + "/" + name + "/tokenizer.json");
  EXPECT_TRUE(text.ok());
  return text.ok() ? Parse(*text) : JsonValue();
}

Tokenizer MustLoad(const JsonValue& json) {
  StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(json.Dump(), "test.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  if (!tokenizer.ok()) std::abort();
  return std::move(tokenizer).value();
}

std::vector<int32_t> MustEncode(const Tokenizer& t, std::string_view text, bool special = false) {
  StatusOr<std::vector<int32_t>> ids = t.Encode(text, special);
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  return ids.ok() ? *ids : std::vector<int32_t>();
}

std::string MustDecode(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip = false) {
  StatusOr<std::string> text = t.Decode(ids, skip);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : std::string();
}

// The load error of `json`, or "" when it loads.
std::string LoadError(const JsonValue& json) {
  StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(json.Dump(), "test.json");
  return tokenizer.ok() ? std::string() : tokenizer.status().message();
}

TEST(BpeTest, SubwordPrefixSuffixAndFusedUnknownsMatchTokenizers) {
  const JsonValue json = Parse(kHandMade);
  const Tokenizer t = MustLoad(json);
  EXPECT_EQ(MustEncode(t, "abc ab axxb a"), (std::vector<int32_t>{6, 1, 5, 1, 0, 5, 7}));
  EXPECT_EQ(MustEncode(t, "xx"), (std::vector<int32_t>{0}));
  EXPECT_EQ(MustEncode(t, "abc  ab"), (std::vector<int32_t>{6, 1, 5}));
  EXPECT_EQ(MustEncode(t, ""), (std::vector<int32_t>{}));
  // No decoder: tokens joined with spaces.
  EXPECT_EQ(MustDecode(t, {6, 1, 5, 1, 0, 5, 7}), "abc</w> a ##b</w> a <unk> ##b</w> a</w>");

  JsonValue unfused = json;
  JsonValue model = *json.Find("model");
  model.Set("fuse_unk", JsonValue::Bool(false));
  unfused.Set("model", model);
  EXPECT_EQ(MustEncode(MustLoad(unfused), "abc ab axxb a"),
            (std::vector<int32_t>{6, 1, 5, 1, 0, 0, 5, 7}));
  EXPECT_EQ(MustEncode(MustLoad(unfused), "xx"), (std::vector<int32_t>{0, 0}));
}

TEST(BpeTest, MergesInStringAndPairFormGiveTheSameTokenizer) {
  JsonValue strings = LoadJson("qwen2");
  JsonValue model = *strings.Find("model");
  JsonValue::Array as_strings;
  for (const JsonValue& merge : model.Find("merges")->as_array()) {
    as_strings.push_back(
        JsonValue::String(merge.as_array()[0].as_string() + " " + merge.as_array()[1].as_string()));
  }
  model.Set("merges", JsonValue::MakeArray(as_strings));
  strings.Set("model", model);
  const Tokenizer pairs = MustLoad(LoadJson("qwen2"));
  const Tokenizer legacy = MustLoad(strings);
  const std::string text = "The quick brown fox, 12345 \xE4\xBD\xA0\xE5\xA5\xBD!";
  EXPECT_EQ(MustEncode(pairs, text), MustEncode(legacy, text));
  EXPECT_GT(MustEncode(pairs, text).size(), 3u);
}

TEST(TokenizerTest, InvalidUtf8IsAnErrorNamingTheByteOffset) {
  const Tokenizer t = MustLoad(LoadJson("qwen2"));
  struct Case {
    std::string text;
    size_t offset;
  };
  const std::vector<Case> cases = {
      {"ab\xC3", 2},                    // truncated 2-byte sequence
      {"a\xC0\xAF", 1},                 // overlong
      {"xy\xED\xA0\x80z", 2},           // UTF-16 surrogate
      {"\xF4\x90\x80\x80", 0},          // past U+10FFFF
      {"hello \xFF world", 6},          // stray byte
      {"\xE4\xBD\xA0\x80", 3},          // lone continuation byte
      {std::string("a\0b\x80", 4), 3},  // NUL is fine, 0x80 is not
  };
  for (const Case& c : cases) {
    StatusOr<std::vector<int32_t>> ids = t.Encode(c.text, /*add_special_tokens=*/true);
    ASSERT_FALSE(ids.ok()) << "offset " << c.offset;
    EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(
        ids.status().message().find("invalid UTF-8 at byte offset " + std::to_string(c.offset)),
        std::string::npos)
        << ids.status().message();
  }
}

TEST(TokenizerTest, DecodeRejectsIdsThatNoTokenHas) {
  const Tokenizer t = MustLoad(LoadJson("qwen2"));
  for (const int32_t bad : {-1, t.vocab_size(), t.vocab_size() + 1000}) {
    StatusOr<std::string> text = t.Decode(std::vector<int32_t>{1, bad}, false);
    ASSERT_FALSE(text.ok()) << bad;
    EXPECT_EQ(text.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(text.status().message().find("ids[1] = " + std::to_string(bad)), std::string::npos)
        << text.status().message();
  }
  IncrementalDecoder stream(t, false);
  EXPECT_FALSE(stream.Push(-5).ok());
}

TEST(TokenizerTest, AddedAndSpecialTokenLookups) {
  const Tokenizer t = MustLoad(LoadJson("qwen2"));
  ASSERT_TRUE(t.TokenToId("<|im_start|>").has_value());
  const int32_t im_start = *t.TokenToId("<|im_start|>");
  EXPECT_EQ(im_start, 1200);
  EXPECT_TRUE(t.IsSpecial(im_start));
  EXPECT_FALSE(t.IsSpecial(*t.TokenToId("<think>")));
  EXPECT_EQ(t.IdToToken(im_start), "<|im_start|>");
  EXPECT_EQ(t.vocab_size(), 1204);
  EXPECT_FALSE(t.IdToToken(1204).has_value());
  EXPECT_EQ(MustDecode(t, {im_start, *t.TokenToId("<think>")}, /*skip=*/true), "<think>");
}

TEST(TokenizerTest, ConcurrentEncodesAgreeWithOneThread) {
  // Encode is const and shares the word cache; 4 threads over the same lines must agree.
  const Tokenizer t = MustLoad(LoadJson("o200k"));
  StatusOr<std::string> corpus_text = ReadFileToString(kDataDir + "/corpus.json");
  ASSERT_TRUE(corpus_text.ok());
  const JsonValue corpus = Parse(*corpus_text);
  std::vector<std::string> lines;
  for (const JsonValue& line : corpus.Find("lines")->as_array())
    lines.push_back(line.as_string());
  std::vector<std::vector<int32_t>> want;
  for (const std::string& line : lines)
    want.push_back(MustEncode(t, line));
  const Tokenizer fresh = MustLoad(LoadJson("o200k"));  // cold cache
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < lines.size(); ++i) {
          const size_t k = (i * 7 + static_cast<size_t>(w) * 13) % lines.size();
          StatusOr<std::vector<int32_t>> ids = fresh.Encode(lines[k], false);
          failures[w] += !ids.ok() || *ids != want[k];
        }
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  EXPECT_EQ(failures, (std::vector<int>{0, 0, 0, 0}));
}

// ---- Malformed files -----------------------------------------------------------------------

struct Malformed {
  const char* what;
  const char* path;     // top-level member to replace
  const char* json;     // its new value
  const char* message;  // expected in the error
};

TEST(TokenizerTest, MalformedFilesGiveErrorsNamingTheField) {
  const JsonValue base = LoadJson("qwen2");
  const std::vector<Malformed> cases = {
      {"unknown pre-tokenizer", "pre_tokenizer", R"({"type": "Whitespace"})",
       "pre_tokenizer type 'Whitespace' is not supported (supported: ByteLevel, Split"},
      {"unknown nested pre-tokenizer", "pre_tokenizer",
       R"({"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "Punctuation"}]})",
       "pre_tokenizer.pretokenizers[1] type 'Punctuation' is not supported"},
      {"unknown normalizer", "normalizer", R"({"type": "BertNormalizer"})",
       "normalizer type 'BertNormalizer' is not supported"},
      {"unknown decoder", "decoder", R"({"type": "WordPiece"})",
       "decoder type 'WordPiece' is not supported"},
      {"unknown post-processor", "post_processor", R"({"type": "RobertaProcessing"})",
       "post_processor type 'RobertaProcessing' is not supported"},
      {"unknown model", "model", R"({"type": "Unigram", "vocab": []})",
       "model type 'Unigram' is not supported (supported: BPE)"},
      {"wrong field type", "pre_tokenizer", R"({"type": "ByteLevel", "add_prefix_space": "yes"})",
       "pre_tokenizer.add_prefix_space must be a bool, got a string"},
      {"unknown field", "pre_tokenizer", R"({"type": "Digits", "individual": true})",
       "pre_tokenizer has an unknown field 'individual'"},
      {"bad behavior", "pre_tokenizer",
       R"({"type": "Split", "pattern": {"String": "x"}, "behavior": "Glued", "invert": false})",
       "pre_tokenizer.behavior 'Glued' is not one of"},
      {"bad regex", "pre_tokenizer",
       R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})",
       "pre_tokenizer.pattern.Regex: invalid regex '(unclosed'"},
      {"bad pattern kind", "normalizer",
       R"({"type": "Replace", "pattern": {"Glob": "*"}, "content": ""})",
       "normalizer.pattern must be {\"String\": ...} or {\"Regex\": ...}"},
      {"template names an unknown special token", "post_processor",
       R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
          {"Sequence": {"id": "A", "type_id": 0}}], "pair": null, "special_tokens": {}})",
       "post_processor.single[0] names the special token '<bos>'"},
      {"metaspace replacement of two chars", "decoder",
       R"({"type": "Metaspace", "replacement": "ab", "prepend_scheme": "always", "split": true})",
       "decoder.replacement must be one character"},
      {"truncation", "truncation", R"({"max_length": 8})", "truncation is set"},
      {"added token field type", "added_tokens",
       R"([{"id": 5, "content": "<x>", "special": "true"}])",
       "added_tokens[0].special must be a bool, got a string"},
  };
  for (const Malformed& c : cases) {
    JsonValue json = base;
    json.Set(c.path, Parse(c.json));
    const std::string error = LoadError(json);
    EXPECT_NE(error.find(c.message), std::string::npos)
        << c.what << ": got '" << error << "', want '" << c.message << "'";
  }
}

TEST(TokenizerTest, MalformedModelsGiveErrorsNamingTheField) {
  const JsonValue base = LoadJson("qwen2");
  auto with_model_field = [&](const char* key, const char* value) {
    JsonValue json = base;
    JsonValue model = *base.Find("model");
    model.Set(key, Parse(value));
    json.Set("model", model);
    return LoadError(json);
  };
  EXPECT_NE(with_model_field("merges", R"(["a b", ["zzz_not_in_vocab", "b"]])")
                .find("model.merges[1] uses the token 'zzz_not_in_vocab', which is not in "
                      "model.vocab"),
            std::string::npos);
  EXPECT_NE(with_model_field("merges", R"(["a b c"])")
                .find("model.merges[0] must be two tokens separated by one space"),
            std::string::npos);
  EXPECT_NE(with_model_field("merges", R"([7])").find("model.merges[0] must be a string"),
            std::string::npos);
  EXPECT_NE(with_model_field("vocab", R"({"a": "one"})")
                .find("model.vocab['a'] must be a non-negative integer id, got a string"),
            std::string::npos);
  EXPECT_NE(with_model_field("vocab", "[]").find("model.vocab must be an object, got an array"),
            std::string::npos);
  EXPECT_NE(with_model_field("dropout", "0.1").find("dropout"), std::string::npos);
  EXPECT_NE(with_model_field("byte_fallback", "1")
                .find("model.byte_fallback must be a bool, got an integer"),
            std::string::npos);
  // The merged token itself must be in the vocabulary too.
  JsonValue json = Parse(kHandMade);
  JsonValue model = *json.Find("model");
  model.Set("merges", Parse(R"(["a ##c</w>"])"));
  json.Set("model", model);
  EXPECT_NE(LoadError(json).find("uses the token 'ac</w>', which is not in model.vocab"),
            std::string::npos)
      << LoadError(json);
  // Not JSON at all.
  StatusOr<Tokenizer> garbage = Tokenizer::FromJson("{\"model\": [1, 2", "garbage.json");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("garbage.json:1:"), std::string::npos);
  EXPECT_FALSE(Tokenizer::FromFile(kDataDir + "/does_not_exist.json").ok());
}

// ---- No component is silently ignored -------------------------------------------------------

// Every supported component, configured, changes what Encode or Decode returns on a probe text
// (so a component that loaded but did nothing fails here), and every unknown field is an error.
TEST(TokenizerTest, EveryComponentChangesTheResult) {
  JsonValue base = LoadJson("qwen2");
  base.Set("normalizer", JsonValue());
  base.Set("pre_tokenizer", Parse(R"({"type": "ByteLevel", "add_prefix_space": false,
                                       "use_regex": true})"));
  base.Set("post_processor", JsonValue());
  const std::string probe =
      "Hello WORLD  12345 e\xCC\x81 \xEF\xAC\x81 it's\tdone \xF0\x9F\x98\x80 caf\xC3\xA9 ";
  const Tokenizer baseline = MustLoad(base);
  const std::vector<int32_t> base_ids = MustEncode(baseline, probe, true);
  const std::string base_text = MustDecode(baseline, base_ids);
  EXPECT_EQ(base_text, probe);

  const std::vector<std::pair<const char*, const char*>> variants = {
      {"normalizer", R"({"type": "NFC"})"},
      {"normalizer", R"({"type": "NFD"})"},
      {"normalizer", R"({"type": "NFKC"})"},
      {"normalizer", R"({"type": "NFKD"})"},
      {"normalizer", R"({"type": "Lowercase"})"},
      {"normalizer", R"({"type": "Prepend", "prepend": "_"})"},
      {"normalizer", R"({"type": "Replace", "pattern": {"String": "l"}, "content": "L"})"},
      {"normalizer", R"({"type": "Replace", "pattern": {"Regex": "\\d"}, "content": "0"})"},
      {"normalizer", R"({"type": "Strip", "strip_left": true, "strip_right": true})"},
      {"normalizer", R"({"type": "Sequence", "normalizers": [{"type": "Lowercase"}]})"},
      {"pre_tokenizer", R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})"},
      {"pre_tokenizer", R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": false})"},
      {"pre_tokenizer", R"({"type": "Sequence", "pretokenizers": [
          {"type": "Digits", "individual_digits": true},
          {"type": "ByteLevel", "add_prefix_space": true, "use_regex": false}]})"},
      {"pre_tokenizer", R"({"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"String": "WORLD"}, "behavior": "Removed", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]})"},
      {"pre_tokenizer", R"({"type": "Sequence", "pretokenizers": [
          {"type": "Metaspace", "replacement": "_", "prepend_scheme": "always", "split": true},
          {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})"},
      {"post_processor", R"({"type": "TemplateProcessing",
          "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}}],
          "pair": null,
          "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1200],
                                             "tokens": ["<|im_start|>"]}}})"},
      {"post_processor", R"({"type": "Sequence", "processors": [
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false,
           "use_regex": false},
          {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                                   {"Sequence": {"id": "A", "type_id": 0}}],
           "pair": null, "special_tokens": {}}]})"},
      {"decoder", R"({"type": "Sequence", "decoders": [{"type": "ByteLevel"},
          {"type": "Replace", "pattern": {"String": "o"}, "content": "0"}]})"},
      {"decoder", R"({"type": "Sequence", "decoders": [{"type": "ByteLevel"},
          {"type": "Strip", "content": "H", "start": 1, "stop": 0}]})"},
      {"decoder", R"({"type": "Sequence", "decoders": [{"type": "ByteLevel"},
          {"type": "Metaspace", "replacement": "W", "prepend_scheme": "never", "split": true}]})"},
      {"decoder", R"({"type": "Fuse"})"},  // without ByteLevel the bytes stay mapped
      {"decoder", R"({"type": "ByteFallback"})"},
  };
  for (const auto& [key, value] : variants) {
    JsonValue json = base;
    json.Set(key, Parse(value));
    const Tokenizer t = MustLoad(json);
    const std::vector<int32_t> ids = MustEncode(t, probe, true);
    const std::string text = MustDecode(t, ids);
    EXPECT_TRUE(ids != base_ids || text != base_text) << key << " = " << value << " had no effect";
  }
  // An unknown top-level member is an error, not ignored.
  JsonValue extra = base;
  extra.Set("pre_tokenizers", JsonValue());
  EXPECT_NE(LoadError(extra).find("unknown field 'pre_tokenizers'"), std::string::npos);
}

TEST(TokenizerTest, DecodersMatchTokenizersSemantics) {
  // Hand-checked against `tokenizers`: ByteFallback turns invalid byte runs into one U+FFFD per
  // byte, Metaspace drops the replacement in the first token, Strip cuts `start` leading chars.
  JsonValue json = LoadJson("llama");
  const Tokenizer t = MustLoad(json);
  const int32_t b_e4 = *t.TokenToId("<0xE4>");
  const int32_t b_bd = *t.TokenToId("<0xBD>");
  const int32_t b_a0 = *t.TokenToId("<0xA0>");
  EXPECT_EQ(MustDecode(t, {b_e4, b_bd, b_a0}), "\xE4\xBD\xA0");
  EXPECT_EQ(MustDecode(t, {b_e4, b_bd}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  const int32_t hello = MustEncode(t, "Hello")[0];
  EXPECT_EQ(MustDecode(t, {b_e4, hello}).substr(0, 3), "\xEF\xBF\xBD");
}

// ---- Streaming decoder ----------------------------------------------------------------------

TEST(IncrementalDecoderTest, HoldsBackIncompleteUtf8AndByteFallbackPieces) {
  for (const char* name : {"llama", "qwen2"}) {
    SCOPED_TRACE(name);
    const Tokenizer t = MustLoad(LoadJson(name));
    const std::string text = "ok \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB \xE0\xA4\xA8 done";
    const std::vector<int32_t> ids = MustEncode(t, text);
    ASSERT_GT(ids.size(), 6u);
    IncrementalDecoder stream(t, /*skip_special_tokens=*/false);
    std::string streamed;
    int held = 0;
    for (const int32_t id : ids) {
      StatusOr<std::string> piece = stream.Push(id);
      ASSERT_TRUE(piece.ok()) << piece.status().ToString();
      EXPECT_TRUE(ValidateUtf8(*piece, "piece").ok());
      EXPECT_EQ(piece->find("\xEF\xBF\xBD"), std::string::npos);
      held += piece->empty();
      streamed += *piece;
    }
    StatusOr<std::string> rest = stream.Flush();
    ASSERT_TRUE(rest.ok());
    streamed += *rest;
    EXPECT_GT(held, 0) << "some ids are partial characters and must be held back";
    EXPECT_EQ(streamed, MustDecode(t, ids));
  }
  // A stream that ends mid-character flushes the lossy remainder.
  const Tokenizer llama = MustLoad(LoadJson("llama"));
  IncrementalDecoder stream(llama, false);
  StatusOr<std::string> first = stream.Push(*llama.TokenToId("<0xF0>"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "");
  StatusOr<std::string> rest = stream.Flush();
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(*rest, "\xEF\xBF\xBD");
}

TEST(IncrementalDecoderTest, RestartsInsteadOfFailingWhenAByteRunTurnsInvalid) {
  // "A" is emitted; then <0x80> makes the run "A\x80" invalid, so the full decode becomes
  // U+FFFD U+FFFD and no longer starts with the "A" already sent (HF's DecodeStream fails).
  const Tokenizer t = MustLoad(LoadJson("llama"));
  const std::vector<int32_t> ids = {*t.TokenToId("<0x41>"), *t.TokenToId("<0x80>"),
                                    MustEncode(t, "Hello")[0]};
  IncrementalDecoder stream(t, false);
  std::string streamed;
  for (const int32_t id : ids) {
    StatusOr<std::string> piece = stream.Push(id);
    ASSERT_TRUE(piece.ok()) << piece.status().ToString();
    EXPECT_TRUE(ValidateUtf8(*piece, "piece").ok());
    streamed += *piece;
  }
  EXPECT_EQ(stream.num_restarts(), 1);
  EXPECT_EQ(streamed.substr(0, 1), "A");
  EXPECT_EQ(MustDecode(t, ids).substr(0, 6), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

// Found by fuzz-tokenizer: a window that starts at <0x20> decodes to "" (the Strip decoder
// takes the leading space), so when <0xDE> turns the run invalid nothing emitted looks
// changed. HF's DecodeStream streams the same text ("do \uFFFD\uFFFD cr\u00e8", checked
// with tokenizers 0.23.3), which differs from the full decode ("do\uFFFD\uFFFD cr\u00e8"):
// streaming equals decoding only where no byte run is invalid.
TEST(IncrementalDecoderTest, AnInvalidByteRunAfterAStrippedSpaceStreamsAsTokenizersDoes) {
  const Tokenizer t = MustLoad(LoadJson("llama"));
  const std::vector<int32_t> ids = {1173, 35, 225, 740};  // do <0x20> <0xDE> ▁crè
  ASSERT_EQ(*t.IdToToken(35), "<0x20>");
  ASSERT_EQ(*t.IdToToken(225), "<0xDE>");
  IncrementalDecoder stream(t, false);
  std::string streamed;
  for (const int32_t id : ids) {
    StatusOr<std::string> piece = stream.Push(id);
    ASSERT_TRUE(piece.ok()) << piece.status().ToString();
    streamed += *piece;
  }
  StatusOr<std::string> rest = stream.Flush();
  ASSERT_TRUE(rest.ok());
  streamed += *rest;
  EXPECT_EQ(streamed, "do \xEF\xBF\xBD\xEF\xBF\xBD cr\xC3\xA8");
  EXPECT_EQ(MustDecode(t, ids), "do\xEF\xBF\xBD\xEF\xBF\xBD cr\xC3\xA8");
}

// ---- Regex translation ----------------------------------------------------------------------

TEST(RegexTest, WhitespaceClassIsOnigurumaWhiteSpace) {
  EXPECT_EQ(TranslateOnigurumaPattern(R"(\s+(?!\S)|[^\s\p{L}])"),
            R"([\t-\r\x{85}\p{Z}]+(?![^\t-\r\x{85}\p{Z}])|[^\t-\r\x{85}\p{Z}\p{L}])");
  EXPECT_EQ(TranslateOnigurumaPattern(R"(\\s[\]\s])"), R"(\\s[\]\t-\r\x{85}\p{Z}])");
  StatusOr<Regex> regex = Regex::Compile(R"(\s+)", "test");
  ASSERT_TRUE(regex.ok());
  std::vector<std::pair<size_t, size_t>> matches;
  regex->FindMatches(
      "a\xC2\x85"
      "b\xE3\x80\x80"
      "c\x1F",
      matches);  // NEL, ideographic space
  EXPECT_EQ(matches, (std::vector<std::pair<size_t, size_t>>{{1, 3}, {4, 7}}));
}

}  // namespace
}  // namespace moegraph::tokenizer
