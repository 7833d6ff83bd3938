// The C API's expert-parallel rank (mg_engine_open_rank) on every rank of an mpirun job:
// each rank's prompt gets the tokens one process gives it, a rank without a prompt takes
// part in every step, and one rank's bad prompt fails the call on every rank.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "moegraph/moegraph.h"
#include "moegraph/moegraph_c.h"
#include "tests/golden/golden_util.h"

namespace moegraph {
namespace {

// Plans of one golden model for `ranks` ranks and for one, in this process's own directory.
struct Plans {
  std::string ep, one;
};

Plans WritePlans(int ranks) {
  const std::string dir = ::testing::TempDir() + "mpi_c_api_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("odd_norm_topk"));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  CompileModelOptions options;
  options.keys.chunk_size = 8;
  options.keys.prefill_buckets = {8, 32};
  options.keys.decode_buckets = {1, 2};
  options.keys.max_prefill_seqs = 2;
  options.kv_dtype = DType::kF32;
  Plans plans{dir + "/ep.plan", dir + "/one.plan"};
  for (int r : {ranks, 1}) {
    options.keys.expert_parallel = r;
    StatusOr<Plan> plan = CompileModel(*model, options);
    EXPECT_TRUE(plan.ok()) << plan.status().ToString();
    EXPECT_TRUE(WritePlanFile(*plan, r == 1 ? plans.one : plans.ep).ok());
  }
  return plans;
}

TEST(CApiRank, RanksGenerateOneProcesssTokens) {
  const int ranks = MpirunWorldSize();
  ASSERT_GE(ranks, 2) << "run under mpirun -np 2 or more";
  const Plans plans = WritePlans(ranks);
  mg_engine* ep = nullptr;
  ASSERT_EQ(mg_engine_open_rank(plans.ep.c_str(), 1, &ep), MG_OK) << mg_last_error();
  const int rank = mg_engine_rank(ep);
  EXPECT_EQ(mg_engine_ranks(ep), ranks);
  mg_sampling sampling = mg_sampling_default();
  sampling.max_new_tokens = 6;
  // Rank r's prompt has 3 + 9 r tokens (chunks of 8: rank 2's needs 4); the last rank of 3
  // has none.
  std::vector<int32_t> prompt;
  if (!(ranks == 3 && rank == 2)) {
    for (int i = 0; i < 3 + 9 * rank; ++i)
      prompt.push_back((i * 5 + rank) % 40);
  }
  std::vector<int32_t> got(6), want(6);
  size_t got_len = 0, want_len = 0;
  ASSERT_EQ(
      mg_generate(ep, prompt.data(), prompt.size(), &sampling, got.data(), got.size(), &got_len),
      MG_OK)
      << mg_last_error();
  if (!prompt.empty()) {
    mg_engine* one = nullptr;
    ASSERT_EQ(mg_engine_open(plans.one.c_str(), 1, &one), MG_OK) << mg_last_error();
    ASSERT_EQ(mg_generate(one, prompt.data(), prompt.size(), &sampling, want.data(), want.size(),
                          &want_len),
              MG_OK)
        << mg_last_error();
    EXPECT_EQ(got_len, want_len);
    EXPECT_EQ(got, want);
    mg_engine_close(one);
  } else {
    EXPECT_EQ(got_len, 0u);
  }
  // Rank 1's prompt holds an id past the vocabulary: every rank's call fails, with its message.
  std::vector<int32_t> bad = {1, 2, 3};
  if (rank == 1) bad[1] = mg_engine_vocab_size(ep) + 5;
  size_t len = 0;
  EXPECT_EQ(mg_generate(ep, bad.data(), bad.size(), &sampling, got.data(), got.size(), &len),
            MG_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mg_last_error()).find("rank 1 of " + std::to_string(ranks) + ": "),
            std::string::npos)
      << mg_last_error();
  // And the ranks go on together.
  EXPECT_EQ(
      mg_generate(ep, prompt.data(), prompt.size(), &sampling, got.data(), got.size(), &got_len),
      MG_OK)
      << mg_last_error();
  mg_engine_close(ep);
}

}  // namespace
}  // namespace moegraph
