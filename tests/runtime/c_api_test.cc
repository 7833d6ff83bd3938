// The C API: generation runs under ids of its own and leaves nothing cached,
// even when it fails; argument errors are one status and a message naming the
// field; a handle shared by two threads gives each the single-threaded results.
#include "moegraph/moegraph_c.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "plan/plan_file.h"
#include "tokenizer/tokenizer.h"

namespace moegraph {
namespace {

namespace fs = std::filesystem;

// The demo model's plan with small buckets (prefill steps of at most 16
// tokens), its positions cut to 40 so that a 41-token prompt fails on its
// fourth prefill step, after three steps reserved KV blocks.
constexpr int32_t kMaxPositions = 40;

class CApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "moegraph-c-api-" + std::to_string(::getpid()));
    plan_path_ = new std::string(*dir_ + "/demo.plan");
    ASSERT_TRUE(WriteDemoModel(*dir_ + "/model").ok());
    StatusOr<HfModel> model = LoadHfModel(*dir_ + "/model");
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    CompileModelOptions options;
    options.keys.chunk_size = 16;
    options.keys.max_chunks = 1;
    options.keys.prefill_buckets = {8, 16};
    options.keys.decode_buckets = {1, 2};
    options.keys.max_prefill_seqs = 2;
    StatusOr<Plan> plan = CompileModel(*model, options);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    plan->model.max_position_embeddings = kMaxPositions;
    ASSERT_TRUE(WritePlanFile(*plan, *plan_path_).ok());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete plan_path_;
  }

  void SetUp() override {
    ASSERT_EQ(mg_engine_open(plan_path_->c_str(), /*num_threads=*/1, &engine_), MG_OK)
        << mg_last_error();
    vocab_ = mg_engine_vocab_size(engine_);
    ASSERT_GT(vocab_, 0);
  }
  void TearDown() override { mg_engine_close(engine_); }

  // Greedy generation of `max_new_tokens`; empty on failure.
  std::vector<int32_t> Generate(const std::vector<int32_t>& prompt, int32_t max_new_tokens = 6) {
    mg_sampling sampling = mg_sampling_default();
    sampling.max_new_tokens = max_new_tokens;
    std::vector<int32_t> out(static_cast<size_t>(max_new_tokens));
    size_t n = 0;
    const mg_status status =
        mg_generate(engine_, prompt.data(), prompt.size(), &sampling, out.data(), out.size(), &n);
    EXPECT_EQ(status, MG_OK) << mg_last_error();
    out.resize(status == MG_OK ? n : 0);
    return out;
  }

  std::vector<float> Step(int64_t seq_id, const std::vector<int32_t>& tokens) {
    std::vector<float> logits(static_cast<size_t>(vocab_));
    EXPECT_EQ(mg_engine_step(engine_, seq_id, tokens.data(), tokens.size(), logits.data()), MG_OK)
        << mg_last_error();
    return logits;
  }

  // Every KV block is free: nothing is left cached.
  void ExpectCacheEmpty() {
    int32_t num_free = -1, num_total = -1;
    ASSERT_EQ(mg_engine_kv_blocks(engine_, &num_free, &num_total), MG_OK) << mg_last_error();
    EXPECT_GT(num_total, 0);
    EXPECT_EQ(num_free, num_total);
  }

  // mg_generate fails with `expected` and a message containing `needle`; it
  // writes no tokens and sets *out_len to 0.
  void ExpectGenerateFails(const std::vector<int32_t>& prompt, const mg_sampling& sampling,
                           mg_status expected, const std::string& needle,
                           size_t out_capacity = 64) {
    std::vector<int32_t> out(out_capacity, -7);
    size_t n = 123;
    EXPECT_EQ(
        mg_generate(engine_, prompt.data(), prompt.size(), &sampling, out.data(), out_capacity, &n),
        expected);
    EXPECT_NE(std::string(mg_last_error()).find(needle), std::string::npos)
        << "message: " << mg_last_error() << "\nexpected to contain: " << needle;
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(out, std::vector<int32_t>(out_capacity, -7));
  }

  static std::string* dir_;
  static std::string* plan_path_;
  mg_engine* engine_ = nullptr;
  int32_t vocab_ = 0;
};
std::string* CApiTest::dir_ = nullptr;
std::string* CApiTest::plan_path_ = nullptr;

const std::vector<int32_t> kPrompt = {1, 2, 3, 4, 5};
const std::vector<int32_t> kOtherPrompt = {17, 301, 42, 9, 256, 77, 3};

// mg_generate used to run as sequence 0: it continued a sequence 0 started by
// mg_engine_step and released it afterwards.
TEST_F(CApiTest, GenerateLeavesStepSequencesAlone) {
  const std::vector<int32_t> expected = Generate(kPrompt);
  ASSERT_EQ(expected.size(), 6u);

  Step(/*seq_id=*/0, kOtherPrompt);
  EXPECT_EQ(Generate(kPrompt), expected) << "generation must not see sequence 0's tokens";
  const std::vector<float> continued = Step(/*seq_id=*/0, {11});

  // The same two steps on a sequence no generation ever ran next to.
  Step(/*seq_id=*/1, kOtherPrompt);
  const std::vector<float> reference = Step(/*seq_id=*/1, {11});
  EXPECT_EQ(continued, reference) << "sequence 0 must keep its cache across mg_generate";

  mg_engine_release(engine_, 0);
  mg_engine_release(engine_, 1);
  ExpectCacheEmpty();
}

TEST_F(CApiTest, StepRejectsTheIdsReservedForGeneration) {
  std::vector<float> logits(static_cast<size_t>(vocab_));
  for (int64_t id : {MG_MAX_SEQ_ID + 1, std::numeric_limits<int64_t>::max(), int64_t{-1}}) {
    EXPECT_EQ(mg_engine_step(engine_, id, kPrompt.data(), kPrompt.size(), logits.data()),
              MG_INVALID_ARGUMENT)
        << id;
    EXPECT_NE(std::string(mg_last_error()).find("reserved for mg_generate"), std::string::npos)
        << mg_last_error();
    mg_engine_release(engine_, id);  // names no sequence: does nothing
  }
  EXPECT_EQ(mg_engine_step(engine_, MG_MAX_SEQ_ID, kPrompt.data(), kPrompt.size(), logits.data()),
            MG_OK)
      << mg_last_error();
  mg_engine_release(engine_, MG_MAX_SEQ_ID);
  ExpectCacheEmpty();
}

// A failure after prefill steps reserved KV blocks used to leave the sequence
// cached: every later call then failed.
TEST_F(CApiTest, FailedGenerateReleasesWhatItReserved) {
  const std::vector<int32_t> expected = Generate(kPrompt);
  ASSERT_EQ(expected.size(), 6u);

  std::vector<int32_t> too_long(kMaxPositions + 1);
  for (size_t i = 0; i < too_long.size(); ++i)
    too_long[i] = static_cast<int32_t>((i * 37 + 5) % static_cast<size_t>(vocab_));
  mg_sampling sampling = mg_sampling_default();
  sampling.max_new_tokens = 4;
  // The Generator refuses it before any prefill step (it used to fail on the
  // fourth prefill step, holding the blocks of the first three).
  ExpectGenerateFails(too_long, sampling, MG_INVALID_ARGUMENT,
                      "does not fit the model's context of 40 positions");
  ExpectCacheEmpty();
  EXPECT_EQ(Generate(kPrompt), expected);

  // A prompt token outside the vocabulary fails before any step.
  const std::vector<int32_t> bad_token = {1, 2, vocab_};
  ExpectGenerateFails(bad_token, sampling, MG_INVALID_ARGUMENT, "outside the vocabulary");
  ExpectCacheEmpty();
  EXPECT_EQ(Generate(kPrompt), expected);
  ExpectCacheEmpty();
}

// 0 passed the capacity check and failed in the Generator; -1 was reported as
// "out_capacity is smaller than max_new_tokens (-1)".
TEST_F(CApiTest, NonPositiveMaxNewTokensIsOneError) {
  mg_sampling sampling = mg_sampling_default();
  for (int32_t n : {0, -1, std::numeric_limits<int32_t>::min()}) {
    sampling.max_new_tokens = n;
    ExpectGenerateFails(
        kPrompt, sampling, MG_INVALID_ARGUMENT,
        "INVALID_ARGUMENT: sampling->max_new_tokens must be >= 1, got " + std::to_string(n));
  }
  sampling.max_new_tokens = 8;
  ExpectGenerateFails(kPrompt, sampling, MG_INVALID_ARGUMENT,
                      "out_capacity (7) is smaller than sampling->max_new_tokens (8)",
                      /*out_capacity=*/7);
  ExpectCacheEmpty();
}

TEST_F(CApiTest, BadSamplingIsInvalidArgumentNamingTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    float temperature;
    float top_p;
    int32_t top_k;
    const char* field;
  };
  const Case cases[] = {
      {nan, 1.0f, 0, "sampling->temperature"},  {inf, 1.0f, 0, "sampling->temperature"},
      {-inf, 1.0f, 0, "sampling->temperature"}, {-0.5f, 1.0f, 0, "sampling->temperature"},
      {0.8f, 0.0f, 0, "sampling->top_p"},       {0.8f, -0.1f, 0, "sampling->top_p"},
      {0.8f, 1.5f, 0, "sampling->top_p"},       {0.8f, nan, 0, "sampling->top_p"},
      {0.8f, 0.9f, -1, "sampling->top_k"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.field) + " temperature=" + std::to_string(c.temperature) +
                 " top_p=" + std::to_string(c.top_p) + " top_k=" + std::to_string(c.top_k));
    mg_sampling sampling = mg_sampling_default();
    sampling.temperature = c.temperature;
    sampling.top_p = c.top_p;
    sampling.top_k = c.top_k;
    ExpectGenerateFails(kPrompt, sampling, MG_INVALID_ARGUMENT, c.field);
  }
  mg_sampling sampling = mg_sampling_default();
  sampling.num_stop_tokens = 2;  // stop_tokens stays NULL
  ExpectGenerateFails(kPrompt, sampling, MG_INVALID_ARGUMENT, "sampling->stop_tokens is NULL");

  // The edges of the valid ranges pass: nucleus mass 1, any top_k, sampling.
  sampling = mg_sampling_default();
  sampling.temperature = 0.7f;
  sampling.top_p = 1.0f;
  sampling.top_k = 3;
  sampling.seed = 5;
  sampling.max_new_tokens = 4;
  int32_t out[4];
  size_t n = 0;
  EXPECT_EQ(mg_generate(engine_, kPrompt.data(), kPrompt.size(), &sampling, out, 4, &n), MG_OK)
      << mg_last_error();
  EXPECT_EQ(n, 4u);
  EXPECT_STREQ(mg_last_error(), "");
  ExpectCacheEmpty();
}

TEST_F(CApiTest, NullArgumentsAreErrors) {
  mg_sampling sampling = mg_sampling_default();
  int32_t out[16];
  size_t n = 0;
  EXPECT_EQ(mg_generate(nullptr, kPrompt.data(), kPrompt.size(), &sampling, out, 16, &n),
            MG_INVALID_ARGUMENT);
  EXPECT_EQ(mg_generate(engine_, kPrompt.data(), 0, &sampling, out, 16, &n), MG_INVALID_ARGUMENT);
  EXPECT_STREQ(mg_last_error(), "INVALID_ARGUMENT: prompt_len must be >= 1");
  float logits[1];
  EXPECT_EQ(mg_engine_step(nullptr, 0, kPrompt.data(), kPrompt.size(), logits),
            MG_INVALID_ARGUMENT);
  int32_t num_free = 0, num_total = 0;
  EXPECT_EQ(mg_engine_kv_blocks(nullptr, &num_free, &num_total), MG_INVALID_ARGUMENT);
  mg_engine* engine = reinterpret_cast<mg_engine*>(&n);  // must be overwritten
  EXPECT_EQ(mg_engine_open(plan_path_->c_str(), -1, &engine), MG_INVALID_ARGUMENT);
  EXPECT_EQ(engine, nullptr);
  EXPECT_EQ(mg_engine_open(nullptr, 0, &engine), MG_INVALID_ARGUMENT);
  EXPECT_EQ(mg_engine_open((*dir_ + "/missing.plan").c_str(), 0, &engine), MG_NOT_FOUND)
      << mg_last_error();
  EXPECT_EQ(engine, nullptr);
  mg_engine_close(nullptr);
  EXPECT_EQ(mg_engine_vocab_size(nullptr), 0);
}

TEST_F(CApiTest, LastErrorIsPerThread) {
  ExpectGenerateFails({vocab_}, mg_sampling_default(), MG_INVALID_ARGUMENT,
                      "outside the vocabulary");
  const std::string mine = mg_last_error();
  std::string theirs = "unset";
  std::thread other([&] {
    const std::vector<int32_t> bad = {-3};
    mg_sampling sampling = mg_sampling_default();
    int32_t out[16];
    size_t n = 0;
    mg_generate(engine_, bad.data(), bad.size(), &sampling, out, 16, &n);
    theirs = mg_last_error();
  });
  other.join();
  EXPECT_NE(theirs.find("token id -3"), std::string::npos) << theirs;
  EXPECT_EQ(mg_last_error(), mine);
}

// Two threads share one handle: one generates, the other steps sequences of
// its own. Each must get exactly what it gets alone. Without the handle's
// lock they race on the KV cache tables, the ForwardMeta buffers and the
// arena (ThreadSanitizer reports it; without TSan the results differ).
TEST_F(CApiTest, TwoThreadsShareOneHandle) {
  const std::vector<int32_t> expected_tokens = Generate(kPrompt);
  Step(/*seq_id=*/7, kOtherPrompt);
  const std::vector<float> expected_logits = Step(/*seq_id=*/7, {11});
  mg_engine_release(engine_, 7);

  constexpr int kRounds = 6;
  int generate_mismatches = 0, step_mismatches = 0;
  std::string generate_error, step_error;
  std::thread generating([&] {
    mg_sampling sampling = mg_sampling_default();
    sampling.max_new_tokens = static_cast<int32_t>(expected_tokens.size());
    for (int round = 0; round < kRounds; ++round) {
      std::vector<int32_t> out(expected_tokens.size());
      size_t n = 0;
      if (mg_generate(engine_, kPrompt.data(), kPrompt.size(), &sampling, out.data(), out.size(),
                      &n) != MG_OK) {
        generate_error = mg_last_error();
        return;
      }
      out.resize(n);
      generate_mismatches += out != expected_tokens;
    }
  });
  std::thread stepping([&] {
    std::vector<float> logits(static_cast<size_t>(vocab_));
    const int32_t next[] = {11};
    for (int round = 0; round < kRounds; ++round) {
      const int64_t id = 100 + round;
      if (mg_engine_step(engine_, id, kOtherPrompt.data(), kOtherPrompt.size(), logits.data()) !=
              MG_OK ||
          mg_engine_step(engine_, id, next, 1, logits.data()) != MG_OK) {
        step_error = mg_last_error();
        return;
      }
      step_mismatches += logits != expected_logits;
      mg_engine_release(engine_, id);
    }
  });
  generating.join();
  stepping.join();
  EXPECT_EQ(generate_error, "");
  EXPECT_EQ(step_error, "");
  EXPECT_EQ(generate_mismatches, 0);
  EXPECT_EQ(step_mismatches, 0);
  ExpectCacheEmpty();
}

// ---- Text -----------------------------------------------------------------

tokenizer::Tokenizer DemoTokenizer(const std::string& model_dir) {
  StatusOr<tokenizer::Tokenizer> tok =
      tokenizer::Tokenizer::FromFile(model_dir + "/tokenizer.json");
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return std::move(*tok);
}

TEST_F(CApiTest, TokenizeAndDetokenizeMatchTheTokenizer) {
  const tokenizer::Tokenizer tok = DemoTokenizer(*dir_ + "/model");
  const std::string text = "Hello world, 我们 \xf0\x9f\x98\x80 <|endoftext|> x";
  StatusOr<std::vector<int32_t>> expected = tok.Encode(text, /*add_special_tokens=*/true);
  ASSERT_TRUE(expected.ok());
  std::vector<int32_t> ids(64, -7);
  size_t n = 0;
  ASSERT_EQ(mg_tokenize(engine_, text.data(), text.size(), ids.data(), ids.size(), &n), MG_OK)
      << mg_last_error();
  ids.resize(n);
  EXPECT_EQ(ids, *expected);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 0), ids.end()) << "<|endoftext|> is id 0";

  // Too small: nothing written, *out_len says how much room it needs.
  std::vector<int32_t> small(2, -7);
  EXPECT_EQ(mg_tokenize(engine_, text.data(), text.size(), small.data(), small.size(), &n),
            MG_INVALID_ARGUMENT);
  EXPECT_EQ(n, expected->size());
  EXPECT_EQ(small, std::vector<int32_t>(2, -7));
  EXPECT_NE(std::string(mg_last_error())
                .find("out_capacity (2) is smaller than the " + std::to_string(n) + " ids"),
            std::string::npos)
      << mg_last_error();
  EXPECT_EQ(mg_tokenize(engine_, text.data(), text.size(), nullptr, 0, &n), MG_INVALID_ARGUMENT);
  EXPECT_EQ(n, expected->size());

  // Back to text, with and without the special token.
  std::vector<char> out(256, 'x');
  size_t len = 0;
  ASSERT_EQ(mg_detokenize(engine_, ids.data(), ids.size(), /*skip_special_tokens=*/0, out.data(),
                          out.size(), &len),
            MG_OK)
      << mg_last_error();
  EXPECT_EQ(std::string(out.data(), len), text);
  EXPECT_EQ(out[len], '\0');
  ASSERT_EQ(mg_detokenize(engine_, ids.data(), ids.size(), /*skip_special_tokens=*/1, out.data(),
                          out.size(), &len),
            MG_OK);
  EXPECT_EQ(std::string(out.data()), *tok.Decode(ids, /*skip_special_tokens=*/true));
  EXPECT_EQ(std::string(out.data()).find("<|endoftext|>"), std::string::npos);
  // The NUL needs room too.
  std::vector<char> exact(len, 'x');
  const size_t needed = len;
  EXPECT_EQ(mg_detokenize(engine_, ids.data(), ids.size(), 1, exact.data(), exact.size(), &len),
            MG_INVALID_ARGUMENT);
  EXPECT_EQ(len, needed);
  EXPECT_EQ(exact, std::vector<char>(needed, 'x'));

  // Bad input is an error naming what is wrong.
  const char invalid[] = "ok\xff";
  EXPECT_EQ(mg_tokenize(engine_, invalid, 3, ids.data(), ids.size(), &n), MG_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mg_last_error()).find("mg_tokenize: text"), std::string::npos)
      << mg_last_error();
  EXPECT_EQ(n, 0u);
  const int32_t bad_id[] = {1, 99999};
  EXPECT_EQ(mg_detokenize(engine_, bad_id, 2, 1, out.data(), out.size(), &len),
            MG_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mg_last_error()).find("99999"), std::string::npos) << mg_last_error();
  EXPECT_EQ(mg_tokenize(nullptr, "a", 1, ids.data(), ids.size(), &n), MG_INVALID_ARGUMENT);
  EXPECT_EQ(mg_tokenize(engine_, nullptr, 1, ids.data(), ids.size(), &n), MG_INVALID_ARGUMENT);
  EXPECT_EQ(mg_detokenize(engine_, nullptr, 1, 1, out.data(), out.size(), &len),
            MG_INVALID_ARGUMENT);
}

struct Pieces {
  std::vector<std::string> pieces;
  size_t stop_after = 0;  // 0: never stop
  bool nul_terminated = true;
};

int CollectPiece(const char* piece, size_t piece_len, void* user_data) {
  auto* out = static_cast<Pieces*>(user_data);
  out->pieces.emplace_back(piece, piece_len);
  out->nul_terminated = out->nul_terminated && piece[piece_len] == '\0';
  return out->stop_after != 0 && out->pieces.size() >= out->stop_after ? 1 : 0;
}

std::string Join(const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces)
    out += p;
  return out;
}

TEST_F(CApiTest, GenerateTextStreamsTheDecodeOfTheGeneratedIds) {
  const tokenizer::Tokenizer tok = DemoTokenizer(*dir_ + "/model");
  for (const std::string prompt : {"Hello", "The quick brown fox", "\xe6\x88\x91"}) {
    SCOPED_TRACE(prompt);
    StatusOr<std::vector<int32_t>> prompt_ids = tok.Encode(prompt, true);
    ASSERT_TRUE(prompt_ids.ok());
    std::vector<int32_t> ids = Generate(*prompt_ids, /*max_new_tokens=*/10);
    ASSERT_EQ(ids.size(), 10u);
    // mg_generate_text stops at the demo's eos (<|endoftext|>, id 0); mg_generate does not.
    const auto eos = std::find(ids.begin(), ids.end(), 0);
    if (eos != ids.end()) ids.erase(eos + 1, ids.end());

    mg_sampling sampling = mg_sampling_default();
    sampling.max_new_tokens = 10;
    Pieces got;
    size_t num_tokens = 0;
    ASSERT_EQ(mg_generate_text(engine_, prompt.c_str(), &sampling, CollectPiece, &got, &num_tokens),
              MG_OK)
        << mg_last_error();
    EXPECT_EQ(num_tokens, ids.size());
    EXPECT_EQ(Join(got.pieces), *tok.Decode(ids, /*skip_special_tokens=*/true));
    EXPECT_TRUE(got.nul_terminated);
    for (const std::string& piece : got.pieces)
      EXPECT_FALSE(piece.empty());
    ExpectCacheEmpty();
  }
}

TEST_F(CApiTest, GenerateTextStopsWhenTheCallbackSaysSo) {
  mg_sampling sampling = mg_sampling_default();
  sampling.max_new_tokens = 12;
  Pieces all;
  size_t all_tokens = 0;
  ASSERT_EQ(mg_generate_text(engine_, "Hello", &sampling, CollectPiece, &all, &all_tokens), MG_OK);
  ASSERT_GE(all.pieces.size(), 2u) << "the test needs a text of several pieces";
  Pieces first;
  first.stop_after = 1;
  size_t first_tokens = 0;
  ASSERT_EQ(mg_generate_text(engine_, "Hello", &sampling, CollectPiece, &first, &first_tokens),
            MG_OK)
      << mg_last_error();
  EXPECT_EQ(first.pieces, std::vector<std::string>{all.pieces[0]});
  EXPECT_LT(first_tokens, all_tokens);
  EXPECT_GE(first_tokens, 1u);
  ExpectCacheEmpty();

  EXPECT_EQ(mg_generate_text(engine_, "Hello", &sampling, nullptr, nullptr, nullptr),
            MG_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mg_last_error()).find("on_text must not be NULL"), std::string::npos);
  sampling.max_new_tokens = 0;
  EXPECT_EQ(mg_generate_text(engine_, "Hello", &sampling, CollectPiece, &all, nullptr),
            MG_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mg_last_error()).find("sampling->max_new_tokens"), std::string::npos);
}

// Compiles `model_dir` with small keys into `plan_path` and opens it.
mg_engine* OpenSmallPlan(const std::string& model_dir, const std::string& plan_path) {
  StatusOr<HfModel> model = LoadHfModel(model_dir);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  CompileModelOptions options;
  options.keys.chunk_size = 16;
  options.keys.max_chunks = 1;
  options.keys.prefill_buckets = {16};
  options.keys.decode_buckets = {1};
  options.keys.max_prefill_seqs = 1;
  StatusOr<Plan> plan = CompileModel(*model, options);
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  if (!plan.ok() || !WritePlanFile(*plan, plan_path).ok()) return nullptr;
  mg_engine* engine = nullptr;
  EXPECT_EQ(mg_engine_open(plan_path.c_str(), 1, &engine), MG_OK) << mg_last_error();
  return engine;
}

TEST_F(CApiTest, TextCallsNeedTheTokenizerThePlanRecorded) {
  const std::string model = *dir_ + "/text-model";
  ASSERT_TRUE(WriteDemoModel(model).ok());
  fs::remove(model + "/tokenizer.json");
  mg_engine* without = OpenSmallPlan(model, *dir_ + "/no-tokenizer.plan");
  ASSERT_NE(without, nullptr);
  int32_t ids[8];
  size_t n = 0;
  EXPECT_EQ(mg_tokenize(without, "Hi", 2, ids, 8, &n), MG_FAILED_PRECONDITION);
  EXPECT_NE(std::string(mg_last_error()).find("the plan has no tokenizer"), std::string::npos)
      << mg_last_error();
  mg_sampling sampling = mg_sampling_default();
  Pieces pieces;
  EXPECT_EQ(mg_generate_text(without, "Hi", &sampling, CollectPiece, &pieces, nullptr),
            MG_FAILED_PRECONDITION);
  // Ids still work.
  const int32_t prompt[] = {1, 2, 3};
  int32_t out[16];
  EXPECT_EQ(mg_generate(without, prompt, 3, &sampling, out, 16, &n), MG_OK) << mg_last_error();
  mg_engine_close(without);

  ASSERT_TRUE(WriteDemoModel(model).ok());
  mg_engine* with = OpenSmallPlan(model, *dir_ + "/tokenizer.plan");
  ASSERT_NE(with, nullptr);
  std::ofstream(model + "/tokenizer.json", std::ios::app) << "\n";
  EXPECT_EQ(mg_tokenize(with, "Hi", 2, ids, 8, &n), MG_FAILED_PRECONDITION);
  EXPECT_NE(std::string(mg_last_error())
                .find(model + "/tokenizer.json changed since the plan was compiled"),
            std::string::npos)
      << mg_last_error();
  mg_engine_close(with);
}

}  // namespace
}  // namespace moegraph
