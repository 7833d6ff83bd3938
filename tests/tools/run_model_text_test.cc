// run-model with text prompts: the demo model's tokenizer, streaming, EOS, and the plan's
// record of the tokenizer files (missing, changed).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "support/strings.h"
#include "tests/tools/tool_util.h"
#include "tokenizer/tokenizer.h"

namespace moegraph {
namespace {

namespace fs = std::filesystem;
using testing::RunTool;
using testing::ToolRun;

const std::vector<std::string> kSmallKeys = {
    "--decode-buckets", "1,2", "--prefill-buckets", "8,16", "--chunk-size", "16", "-q"};

class RunModelTextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new std::string(::testing::TempDir() + "run_model_text_test_" + std::to_string(::getpid()));
    fs::create_directories(*dir_);
    ASSERT_EQ(Compile("demo", "demo.plan").exit_code, 0);
    ASSERT_TRUE(fs::exists(*dir_ + "/demo-model/tokenizer.json"));
    StatusOr<tokenizer::Tokenizer> tok =
        tokenizer::Tokenizer::FromFile(*dir_ + "/demo-model/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tokenizer_ = new tokenizer::Tokenizer(std::move(*tok));
  }
  static void TearDownTestSuite() {
    std::error_code ignored;
    fs::remove_all(*dir_, ignored);
    delete dir_;
    delete tokenizer_;
  }
  static ToolRun Compile(const std::string& model, const std::string& plan) {
    std::vector<std::string> args = {model, "-o", plan};
    args.insert(args.end(), kSmallKeys.begin(), kSmallKeys.end());
    ToolRun run = RunTool("compile-model", args, *dir_);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return run;
  }
  static ToolRun Run(const std::vector<std::string>& args) {
    return RunTool("run-model", args, *dir_);
  }
  // A copy of the demo model directory named `name`.
  static std::string CopyModel(const std::string& name) {
    const std::string copy = *dir_ + "/" + name;
    fs::remove_all(copy);
    fs::copy(*dir_ + "/demo-model", copy);
    return copy;
  }
  static std::string Decode(const std::vector<int32_t>& ids) {
    StatusOr<std::string> text = tokenizer_->Decode(ids, /*skip_special_tokens=*/true);
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    return text.ok() ? *text : "";
  }
  static size_t NumIds(const std::string& text) {
    StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, /*add_special_tokens=*/true);
    EXPECT_TRUE(ids.ok()) << ids.status().ToString();
    return ids.ok() ? ids->size() : 0;
  }
  static std::string* dir_;
  static tokenizer::Tokenizer* tokenizer_;
};
std::string* RunModelTextTest::dir_ = nullptr;
tokenizer::Tokenizer* RunModelTextTest::tokenizer_ = nullptr;

// What run-model printed for sequence `seq`: the text after "sequence N text: " up to the newline
// that ends it (the text itself may hold newlines: it ends where the next "sequence " line or
// the summary starts).
std::string PrintedText(const std::string& out, int seq) {
  const std::string tag = "sequence " + std::to_string(seq) + " text: ";
  const size_t at = out.find(tag);
  if (at == std::string::npos) return "<none>";
  const size_t begin = at + tag.size();
  size_t end = out.find("\nsequence ", begin);
  if (end == std::string::npos) end = out.size();
  return out.substr(begin, end - begin);
}

// The ids on sequence `seq`'s "prompt N tokens -> generated a,b,c" line.
std::vector<int32_t> PrintedIds(const std::string& out, int seq, size_t* prompt_tokens = nullptr) {
  const std::string tag = "\nsequence " + std::to_string(seq) + ": prompt ";
  const size_t at = out.find(tag);
  if (at == std::string::npos) return {};
  const std::string line = out.substr(at + 1, out.find('\n', at + 1) - at - 1);
  if (prompt_tokens) *prompt_tokens = std::stoul(line.substr(tag.size() - 1));
  const size_t ids_at = line.find("-> generated ");
  if (ids_at == std::string::npos) return {};
  std::vector<int32_t> ids;
  std::string rest = line.substr(ids_at + 13);
  rest = rest.substr(0, rest.find(' '));
  for (const std::string& id : SplitString(rest, ','))
    ids.push_back(std::stoi(id));
  return ids;
}

TEST_F(RunModelTextTest, StreamedTextIsTheDecodeOfThePrintedIds) {
  const ToolRun run = Run(
      {"demo.plan", "--prompt", "Hello world", "--ids", "--max-new-tokens", "12", "--ignore-eos"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  size_t prompt_tokens = 0;
  const std::vector<int32_t> ids = PrintedIds(run.out, 0, &prompt_tokens);
  ASSERT_EQ(ids.size(), 12u) << run.out;
  EXPECT_EQ(prompt_tokens, NumIds("Hello world"));
  EXPECT_EQ(PrintedText(run.out, 0), Decode(ids)) << run.out;
  EXPECT_FALSE(Decode(ids).empty());

  // Without --ids: the same text and a count instead of the ids.
  const ToolRun plain =
      Run({"demo.plan", "--prompt", "Hello world", "--max-new-tokens", "12", "--ignore-eos"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(PrintedText(plain.out, 0), PrintedText(run.out, 0));
  EXPECT_NE(plain.out.find("sequence 0: prompt " + std::to_string(prompt_tokens) +
                           " tokens -> generated 12 tokens\n"),
            std::string::npos)
      << plain.out;
}

TEST_F(RunModelTextTest, SeveralPromptsPrintEachTextWholeWithItsIds) {
  const std::vector<std::string> prompts = {"Hello", "The quick brown fox jumps",
                                            "我们今天去公园散步"};
  const ToolRun run = Run({"demo.plan", "--prompt", prompts[0], "--prompt", prompts[1], "--prompt",
                           prompts[2], "--ids", "--max-new-tokens", "7", "--ignore-eos"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE(s);
    size_t prompt_tokens = 0;
    const std::vector<int32_t> ids = PrintedIds(run.out, s, &prompt_tokens);
    ASSERT_EQ(ids.size(), 7u) << run.out;
    EXPECT_EQ(prompt_tokens, NumIds(prompts[s]));
    EXPECT_EQ(PrintedText(run.out, s), Decode(ids));
    // Batched, each sequence generates what it generates alone.
    const ToolRun alone = Run(
        {"demo.plan", "--prompt", prompts[s], "--ids", "--max-new-tokens", "7", "--ignore-eos"});
    ASSERT_EQ(alone.exit_code, 0) << alone.err;
    EXPECT_EQ(PrintedIds(alone.out, 0), ids);
  }
}

TEST_F(RunModelTextTest, PromptFileIsOnePromptByteForByte) {
  const std::string text = "first line\nsecond line\n";
  std::ofstream(*dir_ + "/prompt.txt", std::ios::binary) << text;
  const ToolRun from_file =
      Run({"demo.plan", "--prompt-file", "prompt.txt", "--ids", "--max-new-tokens", "5"});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  const ToolRun from_flag = Run({"demo.plan", "--prompt", text, "--ids", "--max-new-tokens", "5"});
  ASSERT_EQ(from_flag.exit_code, 0) << from_flag.err;
  size_t prompt_tokens = 0;
  EXPECT_EQ(PrintedIds(from_file.out, 0, &prompt_tokens), PrintedIds(from_flag.out, 0));
  EXPECT_EQ(prompt_tokens, NumIds(text));
  EXPECT_FALSE(PrintedIds(from_file.out, 0).empty()) << from_file.out;

  // --prompt ones come first, then the files, in the order given.
  const ToolRun both = Run({"demo.plan", "--prompt-file", "prompt.txt", "--prompt", "Hello",
                            "--ids", "--max-new-tokens", "5"});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  size_t first = 0, second = 0;
  PrintedIds(both.out, 0, &first);
  PrintedIds(both.out, 1, &second);
  EXPECT_EQ(first, NumIds("Hello"));
  EXPECT_EQ(second, NumIds(text));

  const ToolRun missing = Run({"demo.plan", "--prompt-file", "no-such.txt"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("--prompt-file no-such.txt"), std::string::npos) << missing.err;
}

TEST_F(RunModelTextTest, StopsAtTheEosOfGenerationConfigUnlessIgnored) {
  // The token greedy decoding generates third becomes the eos of a copy of the model.
  const ToolRun free_run =
      Run({"demo.plan", "--prompt", "Hello", "--ids", "--max-new-tokens", "6", "--ignore-eos"});
  ASSERT_EQ(free_run.exit_code, 0) << free_run.err;
  const std::vector<int32_t> ids = PrintedIds(free_run.out, 0);
  ASSERT_EQ(ids.size(), 6u) << free_run.out;
  const size_t first_eos = std::find(ids.begin(), ids.end(), ids[2]) - ids.begin();

  for (const std::string& eos : {std::to_string(ids[2]), "[511, " + std::to_string(ids[2]) + "]"}) {
    SCOPED_TRACE(eos);
    const std::string model = CopyModel("eos-model");
    std::ofstream(model + "/generation_config.json") << "{\"eos_token_id\": " << eos << "}\n";
    ASSERT_EQ(Compile(model, "eos.plan").exit_code, 0);
    const ToolRun stopped =
        Run({"eos.plan", "--prompt", "Hello", "--ids", "--max-new-tokens", "6"});
    ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
    const std::vector<int32_t> expected(ids.begin(), ids.begin() + first_eos + 1);
    EXPECT_EQ(PrintedIds(stopped.out, 0), expected) << stopped.out;
    EXPECT_NE(stopped.out.find(" (eos)\n"), std::string::npos) << stopped.out;
    // The prompt's ids stop at the eos too.
    StatusOr<std::vector<int32_t>> hello = tokenizer_->Encode("Hello", true);
    ASSERT_TRUE(hello.ok());
    std::string hello_ids;
    for (int32_t id : *hello)
      hello_ids += (hello_ids.empty() ? "" : ",") + std::to_string(id);
    const ToolRun by_ids = Run({"eos.plan", "--prompt-ids", hello_ids, "--max-new-tokens", "6"});
    ASSERT_EQ(by_ids.exit_code, 0) << by_ids.err;
    EXPECT_EQ(PrintedIds(by_ids.out, 0), expected) << by_ids.out;
    const ToolRun ignored =
        Run({"eos.plan", "--prompt", "Hello", "--ids", "--max-new-tokens", "6", "--ignore-eos"});
    ASSERT_EQ(ignored.exit_code, 0) << ignored.err;
    EXPECT_EQ(PrintedIds(ignored.out, 0), ids);
    // --stop-ids still apply under --ignore-eos, and are reported as stop tokens.
    const ToolRun stop_ids = Run({"eos.plan", "--prompt", "Hello", "--ids", "--max-new-tokens", "6",
                                  "--ignore-eos", "--stop-ids", std::to_string(ids[0])});
    ASSERT_EQ(stop_ids.exit_code, 0) << stop_ids.err;
    EXPECT_EQ(PrintedIds(stop_ids.out, 0), std::vector<int32_t>{ids[0]});
    EXPECT_NE(stop_ids.out.find(" (stop token)\n"), std::string::npos) << stop_ids.out;
  }
}

TEST_F(RunModelTextTest, APlanWithoutATokenizerNeedsTokenIds) {
  const std::string model = CopyModel("no-tokenizer-model");
  fs::remove(model + "/tokenizer.json");
  fs::remove(model + "/tokenizer_config.json");
  ASSERT_EQ(Compile(model, "no-tokenizer.plan").exit_code, 0);
  const ToolRun text = Run({"no-tokenizer.plan", "--prompt", "Hello"});
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_NE(text.err.find("--prompt #1: the plan has no tokenizer (the model directory had no "
                          "tokenizer.json when it was compiled); give token ids instead"),
            std::string::npos)
      << text.err;
  const ToolRun ids = Run({"no-tokenizer.plan", "--prompt-ids", "1,2,3", "--max-new-tokens", "3"});
  EXPECT_EQ(ids.exit_code, 0) << ids.err;
  EXPECT_EQ(PrintedIds(ids.out, 0).size(), 3u) << ids.out;
}

TEST_F(RunModelTextTest, AChangedOrMissingTokenizerIsRefused) {
  const std::string model = CopyModel("changed-model");
  ASSERT_EQ(Compile(model, "changed.plan").exit_code, 0);
  ASSERT_EQ(Run({"changed.plan", "--prompt", "Hello", "--max-new-tokens", "2"}).exit_code, 0);
  std::ofstream(model + "/tokenizer.json", std::ios::app) << " ";
  ToolRun run = Run({"changed.plan", "--prompt", "Hello", "--max-new-tokens", "2"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(model + "/tokenizer.json changed since the plan was compiled (XXH64 0x"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("recompile the plan"), std::string::npos) << run.err;
  // Token ids do not need the tokenizer.
  EXPECT_EQ(Run({"changed.plan", "--prompt-ids", "1,2", "--max-new-tokens", "2"}).exit_code, 0);

  fs::remove(model + "/tokenizer.json");
  run = Run({"changed.plan", "--prompt", "Hello"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(model + "/tokenizer.json: the plan was compiled with this tokenizer "
                                 "file, but it is gone"),
            std::string::npos)
      << run.err;
}

TEST_F(RunModelTextTest, CompileModelRefusesATokenizerThatDoesNotFitTheModel) {
  const std::string model = CopyModel("bad-eos-model");
  std::ofstream(model + "/generation_config.json") << "{\"eos_token_id\": [0, 512]}\n";
  std::vector<std::string> args = {model, "-o", "bad.plan"};
  args.insert(args.end(), kSmallKeys.begin(), kSmallKeys.end());
  ToolRun run = RunTool("compile-model", args, *dir_);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(model + "/generation_config.json: eos_token_id 512 is outside "
                                 "config.json's vocab [0, 512)"),
            std::string::npos)
      << run.err;
  std::ofstream(model + "/generation_config.json") << "{\"eos_token_id\": 0}\n";
  std::ofstream(model + "/tokenizer.json") << "{\"model\": {\"type\": \"WordPiece\"}}";
  run = RunTool("compile-model", args, *dir_);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(model + "/tokenizer.json"), std::string::npos) << run.err;
  EXPECT_FALSE(fs::exists(*dir_ + "/bad.plan"));
}

TEST_F(RunModelTextTest, TextAndIdPromptsDoNotMixAndHelpSaysNoChatTemplate) {
  const ToolRun mixed = Run({"demo.plan", "--prompt", "Hello", "--prompt-ids", "1,2"});
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_NE(mixed.err.find("--prompt-ids cannot be combined with --prompt or --prompt-file"),
            std::string::npos)
      << mixed.err;
  const ToolRun help = Run({"--help"});
  ASSERT_EQ(help.exit_code, 0);
  for (const char* want : {"--prompt ", "--prompt-file", "--ids", "--ignore-eos", "Chat templates",
                           "out of scope", "eos_token_id"}) {
    EXPECT_NE(help.out.find(want), std::string::npos) << want << "\n" << help.out;
  }
}

}  // namespace
}  // namespace moegraph
