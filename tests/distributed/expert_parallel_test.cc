// Expert parallelism with data-parallel attention (EP x DP, DESIGN §9) on ranks that are
// threads of one process (kernels/local_communicator.h). On every golden MoE model, with 2
// and 3 ranks (3: the experts do not divide evenly), each rank's sequences get the same
// greedy tokens as one rank running the same batches, and logits within 1e-5 (the experts'
// sums run in another order: each token's k expert rows come back from their ranks and are
// summed in slot order, where one rank sums them in expert order). The ranks' batches differ
// on purpose: different chunk counts (so some run empty chunks), a rank that decodes while
// another prefills, and an idle rank (the empty forward).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "compiler/compile_model.h"
#include "kernels/local_communicator.h"
#include "plan/collectives.h"
#include "plan/plan_file.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "support/log.h"
#include "tests/golden/golden_util.h"
#include "tests/testing/engine_compare.h"

namespace moegraph {
namespace {

constexpr float kTolerance = 1e-5f;

CompileModelOptions SmallKeys(int32_t ranks) {
  CompileModelOptions options;
  options.keys.chunk_size = 8;
  options.keys.max_chunks = 8;
  options.keys.expert_parallel = ranks;
  options.kv_dtype = DType::kF32;
  options.keys.prefill_buckets = {8, 16, 32, 64};
  options.keys.decode_buckets = {1, 2, 4, 8};
  options.keys.max_prefill_seqs = 4;
  options.hash_checkpoint = false;
  return options;
}

// Runs fn(rank, engine) on `ranks` threads at once, each with its own engine of `plan` as one
// rank of a local group (one kernel thread each). A rank whose engine does not load gets that
// status in place of running fn (its peers' collectives then time out: no hang).
std::vector<Status> OnRanks(const Plan& plan, int ranks,
                            const std::function<Status(int, Engine&)>& fn) {
  std::vector<std::unique_ptr<Communicator>> group = MakeLocalGroup(ranks);
  std::vector<Status> results(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      EngineOptions options;
      options.num_threads = 1;
      options.kv_block_size = 8;
      options.communicator = group[static_cast<size_t>(r)].get();
      StatusOr<std::unique_ptr<Engine>> engine = Engine::Load(plan, options);
      results[static_cast<size_t>(r)] = engine.ok() ? fn(r, **engine) : engine.status();
    });
  }
  for (std::thread& t : threads)
    t.join();
  return results;
}

// One rank's script: the batch of each step (empty: the empty forward). Steps after the first
// feed each sequence the argmax of its last row (greedy), continuing what the script started.
struct RankScript {
  // Step index -> prompt lengths of the sequences that start at that step.
  std::vector<std::vector<int>> new_prompts;
  // Steps at which the rank's running sequences decode (else they wait).
  std::vector<bool> decodes;
};

struct RankTrace {
  std::vector<std::vector<SequenceStep>> batches;     // what the rank fed, step by step
  std::vector<std::vector<std::vector<float>>> rows;  // the logits rows it got
  std::vector<SpecKey> keys;
  Status status;
};

// Runs `script` on `engine`, feeding greedy tokens; on several ranks every rank calls this
// at once with the same number of steps.
RankTrace RunScript(Engine& engine, const RankScript& script, int64_t first_id) {
  RankTrace trace;
  const int vocab = engine.plan().model.vocab_size;
  std::vector<SequenceStep> running;  // each sequence's next step
  int64_t next_id = first_id;
  for (size_t step = 0; step < script.new_prompts.size(); ++step) {
    std::vector<SequenceStep> batch;
    if (script.decodes[step]) batch = running;
    const std::vector<SequenceStep> fresh =
        testing::PromptBatch(script.new_prompts[step], vocab, next_id);
    next_id += static_cast<int64_t>(fresh.size());
    if (!script.new_prompts[step].empty()) {
      // New prompts run alone in their step (with a decode batch the step is still prefill).
      batch.insert(batch.end(), fresh.begin(), fresh.end());
    }
    StatusOr<StepLogits> logits = engine.Step(batch);
    if (!logits.ok()) {
      trace.status = logits.status();
      return trace;
    }
    trace.batches.push_back(batch);
    trace.keys.push_back(engine.last_key());
    std::vector<std::vector<float>> rows;
    for (size_t s = 0; s < batch.size(); ++s) {
      const float* row = logits->row(static_cast<int32_t>(s));
      rows.emplace_back(row, row + vocab);
    }
    trace.rows.push_back(rows);
    testing::AdvanceGreedy(
        batch, [&](int32_t r) { return logits->row(r); }, vocab);
    // The batch's sequences continue; those that did not run keep their place.
    for (const SequenceStep& s : batch) {
      auto it = std::find_if(running.begin(), running.end(),
                             [&](const SequenceStep& r) { return r.seq_id == s.seq_id; });
      if (it == running.end()) {
        running.push_back(s);
      } else {
        *it = s;
      }
    }
  }
  return trace;
}

// One rank running `got`'s batches (the empty ones skipped: nothing to compare) on `single`
// gives the same logits within kTolerance and the same greedy tokens.
void ExpectMatchesOneRank(const Plan& single, const RankTrace& got) {
  EngineOptions options;
  options.num_threads = 1;
  options.kv_block_size = 8;
  StatusOr<std::unique_ptr<Engine>> base = Engine::Load(single, options);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  for (size_t step = 0; step < got.batches.size(); ++step) {
    if (got.batches[step].empty()) continue;
    StatusOr<StepLogits> want = (*base)->Step(got.batches[step]);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    for (size_t s = 0; s < got.batches[step].size(); ++s) {
      const float* w = want->row(static_cast<int32_t>(s));
      const std::vector<float>& g = got.rows[step][s];
      EXPECT_LE(testing::MaxAbsDiff(g.data(), w, want->vocab), kTolerance)
          << "step " << step << " (" << got.keys[step].ToString() << ") sequence " << s;
      EXPECT_EQ(testing::Argmax(g.data(), want->vocab), testing::Argmax(w, want->vocab))
          << "step " << step << " sequence " << s;
    }
  }
}

// The scripts of `ranks` ranks: rank 0 prefills 14 tokens (2 chunks of 8) then a 40-token
// prompt (5 chunks) while rank 1 decodes; rank 1 prefills 5 tokens (1 chunk: it runs the
// others' chunks empty); rank 2 is idle throughout (the empty forward).
std::vector<RankScript> Scripts(int ranks) {
  std::vector<RankScript> scripts(static_cast<size_t>(ranks));
  // step:                0            1    2    3     4     5
  scripts[0].new_prompts = {{9, 4, 1}, {}, {}, {40}, {}, {}};
  scripts[0].decodes = {false, true, true, false, true, true};
  scripts[1].new_prompts = {{5}, {}, {}, {}, {}, {}};
  scripts[1].decodes = {false, true, true, true, true, true};
  for (int r = 2; r < ranks; ++r) {
    scripts[static_cast<size_t>(r)].new_prompts.assign(6, {});
    scripts[static_cast<size_t>(r)].decodes.assign(6, false);
  }
  return scripts;
}

class ExpertParallelTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ExpertParallelTest, RanksMatchOneRank) {
  const auto& [name, ranks] = GetParam();
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(name));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<Plan> single = CompileModel(*model, SmallKeys(1));
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  StatusOr<Plan> plan = CompileModel(*model, SmallKeys(ranks));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_TRUE(CheckRanksAgree(*plan).ok());

  const std::vector<RankScript> scripts = Scripts(ranks);
  std::vector<RankTrace> traces(static_cast<size_t>(ranks));
  const std::vector<Status> ran = OnRanks(*plan, ranks, [&](int r, Engine& engine) {
    traces[static_cast<size_t>(r)] =
        RunScript(engine, scripts[static_cast<size_t>(r)], 1000 * (r + 1));
    return traces[static_cast<size_t>(r)].status;
  });

  bool saw_empty_chunks = false, saw_empty_forward = false, saw_decode_in_prefill = false;
  for (int r = 0; r < ranks; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const RankTrace& got = traces[static_cast<size_t>(r)];
    ASSERT_TRUE(ran[static_cast<size_t>(r)].ok()) << ran[static_cast<size_t>(r)].ToString();
    for (size_t step = 0; step < got.batches.size(); ++step) {
      const SpecKey& key = got.keys[step];
      saw_empty_chunks |= key.max_moe_num_chunk > key.moe_num_chunk;
      saw_empty_forward |= got.batches[step].empty();
      saw_decode_in_prefill |= key.phase == MoePhase::kPrefill && !got.batches[step].empty() &&
                               PhaseOf(got.batches[step]) == MoePhase::kDecode;
    }
    ExpectMatchesOneRank(*single, got);
  }
  EXPECT_TRUE(saw_empty_chunks);
  EXPECT_TRUE(saw_decode_in_prefill);
  EXPECT_EQ(saw_empty_forward, ranks > 2);
}

INSTANTIATE_TEST_SUITE_P(Goldens, ExpertParallelTest,
                         ::testing::Combine(::testing::ValuesIn(testing::MoeGoldenCases()),
                                            ::testing::Values(2, 3)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_ep" +
                                  std::to_string(std::get<1>(info.param));
                         });

// The scene at the default chunk size: in one step rank 0 prefills a 700-token prompt
// (3 MoE chunks of 256), rank 1 decodes one token and rank 2 is idle; then rank 1 prefills a
// short prompt while rank 0 decodes. Each rank's logits match one rank's.
TEST(ExpertParallel, ALongPrefillBesideADecodeAndAnIdleRank) {
  const std::string dir = ::testing::TempDir() + "ep_demo_" + std::to_string(::getpid());
  StatusOr<std::string> demo = ResolveModelArgument("demo", dir);
  ASSERT_TRUE(demo.ok()) << demo.status().ToString();
  StatusOr<HfModel> model = LoadHfModel(*demo);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto compile = [&](int32_t ranks) {
    CompileModelOptions options;
    options.keys.expert_parallel = ranks;
    options.keys.prefill_buckets = {16, 1024};
    options.keys.decode_buckets = {1, 2};
    options.kv_dtype = DType::kF32;
    options.hash_checkpoint = false;
    return CompileModel(*model, options);
  };
  StatusOr<Plan> single = compile(1);
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  StatusOr<Plan> plan = compile(3);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::vector<RankScript> scripts(3);
  scripts[0].new_prompts = {{5}, {700}, {}};
  scripts[0].decodes = {false, false, true};
  scripts[1].new_prompts = {{3}, {}, {9}};
  scripts[1].decodes = {false, true, false};
  scripts[2].new_prompts.assign(3, {});
  scripts[2].decodes.assign(3, false);
  std::vector<RankTrace> traces(3);
  const std::vector<Status> ran = OnRanks(*plan, 3, [&](int r, Engine& engine) {
    traces[static_cast<size_t>(r)] =
        RunScript(engine, scripts[static_cast<size_t>(r)], 100 * (r + 1));
    return traces[static_cast<size_t>(r)].status;
  });
  for (int r = 0; r < 3; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_TRUE(ran[static_cast<size_t>(r)].ok()) << ran[static_cast<size_t>(r)].ToString();
    const RankTrace& got = traces[static_cast<size_t>(r)];
    // Step 1: every rank runs 3 chunks, rank 0 on its 700 tokens, the others on none.
    EXPECT_EQ(got.keys[1].max_moe_num_chunk, 3);
    EXPECT_EQ(got.keys[1].phase, MoePhase::kPrefill);
    EXPECT_EQ(got.keys[1].moe_num_chunk, r == 0 ? 3 : 1);
    ExpectMatchesOneRank(*single, got);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

// A bad token on one rank fails the step on every rank, with that rank's message, and no rank
// hangs or runs the step.
TEST(ExpertParallel, OneRanksBadInputFailsEveryRank) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("odd_norm_topk"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<Plan> plan = CompileModel(*model, SmallKeys(3));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const std::vector<Status> results = OnRanks(*plan, 3, [](int r, Engine& engine) {
    const int vocab = engine.plan().model.vocab_size;
    std::vector<SequenceStep> batch = {SequenceStep{r, {1, 2, 3}, 0}};
    if (r == 1) batch[0].tokens[1] = vocab + 7;  // out of range on rank 1 only
    const Status failed = engine.Step(batch).status();
    // The step ran nowhere: every rank may go on with a good batch.
    if (r == 1) batch[0].tokens[1] = 2;
    const Status again = engine.Step(batch).status();
    return again.ok() ? failed : again.WithContext("the retry");
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(results[static_cast<size_t>(r)].code(), StatusCode::kInvalidArgument) << r;
    EXPECT_EQ(results[static_cast<size_t>(r)].message(), results[0].message()) << r;
  }
  EXPECT_NE(results[0].message().find("rank 1 of 3: sequence 1: token id"), std::string::npos)
      << results[0].message();
}

// A rank that opens another plan, or fails to open its own, fails every rank's open: none is
// left to wait for it in a step.
TEST(ExpertParallel, EveryRankOpensTheSamePlanOrNoneDoes) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("mixtral_top2"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<Plan> plan = CompileModel(*model, SmallKeys(2));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  CompileModelOptions other_keys = SmallKeys(2);
  other_keys.keys.decode_buckets = {1, 2};
  StatusOr<Plan> other = CompileModel(*model, other_keys);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  for (const bool bad_dir : {false, true}) {
    SCOPED_TRACE(bad_dir ? "rank 1's checkpoint is missing" : "rank 1 opens another plan");
    std::vector<std::unique_ptr<Communicator>> group = MakeLocalGroup(2);
    std::vector<Status> results(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        EngineOptions options;
        options.num_threads = 1;
        options.communicator = group[static_cast<size_t>(r)].get();
        if (bad_dir && r == 1) options.model_dir = "/nonexistent/model";
        const Plan& mine = (!bad_dir && r == 1) ? *other : *plan;
        results[static_cast<size_t>(r)] = Engine::Load(mine, options).status();
      });
    }
    for (std::thread& t : threads)
      t.join();
    for (int r = 0; r < 2; ++r) {
      EXPECT_FALSE(results[static_cast<size_t>(r)].ok()) << r;
      EXPECT_EQ(results[static_cast<size_t>(r)].message(), results[0].message()) << r;
    }
    const std::string expected =
        bad_dir ? "rank 1 of 2: " : "rank 1 opened a plan that is not rank 0's";
    EXPECT_NE(results[0].message().find(expected), std::string::npos) << results[0].message();
  }
}

TEST(ExpertParallel, PlanNeedsACommunicatorOfItsRanks) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("mixtral_top2"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<Plan> plan = CompileModel(*model, SmallKeys(2));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  StatusOr<std::unique_ptr<Engine>> alone = Engine::Load(*plan, EngineOptions{});
  ASSERT_FALSE(alone.ok());
  EXPECT_NE(alone.status().message().find("the plan is for 2 expert-parallel ranks"),
            std::string::npos)
      << alone.status().ToString();
  EXPECT_NE(alone.status().message().find("mpirun -np 2"), std::string::npos);
  // Opened by every rank of a group of 3 (an open is collective): every rank refuses it.
  const std::vector<Status> wrong =
      OnRanks(*plan, 3, [](int, Engine&) { return Internal("opened a 2-rank plan on 3 ranks"); });
  for (const Status& status : wrong) {
    EXPECT_NE(
        status.message().find("rank 0 of 3: the plan is for 2 expert-parallel ranks "
                              "(compile-model --ep 2) but the local communicator has 3 ranks"),
        std::string::npos)
        << status.ToString();
  }
}

TEST(ExpertParallel, EachRankMapsOnlyItsExperts) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("mixtral_top2"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<Plan> plan = CompileModel(*model, SmallKeys(3));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  // The stacked expert weights each rank's programs read: their checkpoint experts.
  std::map<std::string, std::map<int, std::pair<int64_t, int64_t>>> read;  // name -> rank -> range
  for (const KeyProgram& p : plan->programs) {
    for (const KernelStep& step : p.steps) {
      for (const ArgRef& in : step.inputs) {
        if (in.kind != ArgKind::kWeight) continue;
        const PlanWeight& w = plan->weights[static_cast<size_t>(in.index)];
        if (w.experts == 0) continue;
        EXPECT_EQ(static_cast<int64_t>(w.slices.size()), w.experts) << w.name;
        auto [it, fresh] = read[w.name].emplace(p.rank, std::make_pair(w.first_expert, w.experts));
        EXPECT_EQ(it->second, std::make_pair(w.first_expert, w.experts))
            << w.name << ": rank " << p.rank << " reads two expert ranges";
      }
    }
  }
  ASSERT_FALSE(read.empty());
  for (const auto& [name, by_rank] : read) {
    ASSERT_EQ(by_rank.size(), 3u) << name;
    const int64_t experts = by_rank.at(2).first + by_rank.at(2).second;
    for (const auto& [rank, range] : by_rank) {
      const ExpertRange mine = ExpertRangeOf(experts, 3, rank);
      EXPECT_EQ(range, std::make_pair(mine.first, mine.count)) << name << " rank " << rank;
    }
  }
}

// A plan whose ranks would issue different collectives (here rank 1's first dispatch is
// edited to another expert count) could deadlock: the plan reader refuses it.
TEST(ExpertParallel, PlanWhoseRanksCollectivesDifferIsRefused) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("mixtral_top2"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<Plan> plan = CompileModel(*model, SmallKeys(2));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_TRUE(DeserializePlan(SerializePlan(*plan), "ep2.mgplan").ok());
  bool edited = false;
  for (KeyProgram& p : plan->programs) {
    if (p.rank != 1 || edited) continue;
    for (KernelStep& step : p.steps) {
      if (step.kernel != "ep_dispatch") continue;
      step.ints[0] += 1;  // num_experts
      edited = true;
      break;
    }
  }
  ASSERT_TRUE(edited);
  StatusOr<Plan> read = DeserializePlan(SerializePlan(*plan), "ep2.mgplan");
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("ranks 0 and 1 issue different collectives (a deadlock): "
                                         "collective #0 is ep_dispatch("),
            std::string::npos)
      << read.status().ToString();
  const Status direct = CheckRanksAgree(*plan);
  EXPECT_EQ(direct.code(), StatusCode::kFailedPrecondition);
}

// The generator on every rank: a rank's requests finish with the tokens one rank gives them;
// idle ranks step (the empty forward) until every rank is done.
TEST(ExpertParallel, GeneratorsOnEveryRankFinishTogether) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("qwen2_moe_sparse2"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<Plan> single = CompileModel(*model, SmallKeys(1));
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  StatusOr<Plan> plan = CompileModel(*model, SmallKeys(3));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const int vocab = plan->model.vocab_size;
  // Rank r's prompts: rank 0 two (one long, 30 tokens), rank 1 one, rank 2 none.
  const std::vector<std::vector<std::vector<int32_t>>> prompts = {
      {testing::PromptTokens(30, vocab, 1), testing::PromptTokens(3, vocab, 2)},
      {testing::PromptTokens(6, vocab, 3)},
      {}};
  SamplingParams sampling;
  sampling.max_new_tokens = 5;
  std::vector<StatusOr<std::vector<GenerationResult>>> results(
      3, StatusOr<std::vector<GenerationResult>>(Internal("not run")));
  const std::vector<Status> ran = OnRanks(*plan, 3, [&](int r, Engine& engine) {
    Generator generator(engine);
    for (size_t i = 0; i < prompts[static_cast<size_t>(r)].size(); ++i) {
      MG_RETURN_IF_ERROR(generator.Add(GenerationRequest{
          static_cast<int64_t>(i), prompts[static_cast<size_t>(r)][i], sampling}));
    }
    results[static_cast<size_t>(r)] = generator.RunToCompletion();
    return results[static_cast<size_t>(r)].status();
  });
  for (int r = 0; r < 3; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_TRUE(ran[static_cast<size_t>(r)].ok()) << ran[static_cast<size_t>(r)].ToString();
    EngineOptions options;
    options.num_threads = 1;
    StatusOr<std::unique_ptr<Engine>> base = Engine::Load(*single, options);
    ASSERT_TRUE(base.ok()) << base.status().ToString();
    Generator reference(**base);
    for (size_t i = 0; i < prompts[static_cast<size_t>(r)].size(); ++i) {
      ASSERT_TRUE(reference
                      .Add(GenerationRequest{static_cast<int64_t>(i),
                                             prompts[static_cast<size_t>(r)][i], sampling})
                      .ok());
    }
    StatusOr<std::vector<GenerationResult>> want = reference.RunToCompletion();
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    ASSERT_EQ(results[static_cast<size_t>(r)]->size(), want->size());
    for (size_t i = 0; i < want->size(); ++i) {
      EXPECT_EQ((*results[static_cast<size_t>(r)])[i].tokens, (*want)[i].tokens) << i;
    }
  }
}

}  // namespace
}  // namespace moegraph
