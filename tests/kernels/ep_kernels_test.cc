// ep_dispatch / ep_combine on 2 and 3 ranks (threads over MakeLocalGroup),
// with the real moe_align / moe_permute between them and a stand-in expert:
// every token's result equals the single-rank formula sum_j w * f(x, id), and
// the layout, rx and rids are exactly what the contract says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/reference_kernels.h"
#include "kernels/local_communicator.h"
#include "tests/testing/tensors.h"

namespace moegraph {
namespace {

constexpr int64_t kH = 7;  // odd hidden size
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// The stand-in expert e applied to one value of a row.
float Expert(float v, int64_t e) {
  return v * (1.0f + 0.25f * static_cast<float>(e)) + static_cast<float>(e);
}

// One rank's chunk: T rows, the first num_tokens real.
struct RankInput {
  int64_t rows = 0;
  int32_t num_tokens = 0;
  std::vector<float> x;        // [rows, H]
  std::vector<int32_t> ids;    // [rows, k]
  std::vector<float> weights;  // [rows, k]
};

// Distinct ids per row, some -1; padding rows carry ids too (the kernel must
// skip them by num_tokens).
RankInput MakeInput(int64_t rows, int32_t num_tokens, int64_t experts, int64_t top_k,
                    uint32_t seed) {
  RankInput in;
  in.rows = rows;
  in.num_tokens = num_tokens;
  in.x = testing::RandomFloats(rows * kH, seed);
  in.weights = testing::RandomFloats(rows * top_k, seed + 1);
  std::mt19937 rng(seed + 2);
  for (int64_t t = 0; t < rows; ++t) {
    std::vector<int32_t> perm(experts);
    for (int64_t e = 0; e < experts; ++e)
      perm[e] = static_cast<int32_t>(e);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t j = 0; j < top_k; ++j)
      in.ids.push_back(rng() % 5 == 0 ? -1 : perm[j]);
  }
  return in;
}

bool Live(const RankInput& in, int64_t top_k, int64_t experts, int64_t pair) {
  const int32_t id = in.ids[pair];
  return pair / top_k < in.num_tokens && id >= 0 && id < experts;
}

struct RankOutput {
  std::vector<float> rx, y;
  std::vector<int32_t> rids, layout;
};

ForwardMetaView MetaOf(const RankInput& in) {
  ForwardMetaView meta;
  meta.num_tokens = in.num_tokens;
  meta.token_capacity = static_cast<int32_t>(in.rows);
  return meta;
}

// dispatch -> moe_align -> moe_permute -> the stand-in experts -> combine, as
// one rank of the program would run them.
RankOutput RunRank(const RankInput& in, Communicator* comm, const EpParams& params, int64_t top_k) {
  const int64_t capacity = params.capacity, num_pairs = in.rows * top_k;
  const ExpertRange local = params.local();
  const ForwardMetaView meta = MetaOf(in);
  RankOutput out;
  out.rx.assign(capacity * kH, kNaN);
  out.rids.assign(capacity, 12345);
  out.layout.assign(num_pairs + 2 * params.ep_size, 12345);

  TensorArg dispatch_in[] = {testing::HostArg(in.x.data(), DType::kF32, {in.rows, kH}),
                             testing::HostArg(in.ids.data(), DType::kI32, {in.rows, top_k})};
  TensorArg dispatch_out[] = {
      testing::HostArg(out.rx.data(), DType::kF32, {capacity, kH}),
      testing::HostArg(out.rids.data(), DType::kI32, {capacity, 1}),
      testing::HostArg(out.layout.data(), DType::kI32, {num_pairs + 2 * params.ep_size})};
  KernelArgs dispatch;
  dispatch.meta = &meta;
  dispatch.in = dispatch_in;
  dispatch.num_in = 2;
  dispatch.out = dispatch_out;
  dispatch.num_out = 3;
  dispatch.comm = comm;
  SetParams(dispatch, params);
  RefEpDispatch(dispatch);

  std::vector<int32_t> sorted(capacity), offsets(local.count + 1);
  TensorArg align_in[] = {testing::HostArg(out.rids.data(), DType::kI32, {capacity, 1})};
  TensorArg align_out[] = {testing::HostArg(sorted.data(), DType::kI32, {capacity}),
                           testing::HostArg(offsets.data(), DType::kI32, {local.count + 1})};
  KernelArgs align;
  align.in = align_in;
  align.num_in = 1;
  align.out = align_out;
  align.num_out = 2;
  SetParams(align, NumExpertsParams{.num_experts = local.count});
  RefMoeAlign(align);

  std::vector<float> xp(capacity * kH);
  TensorArg permute_in[] = {testing::HostArg(out.rx.data(), DType::kF32, {capacity, kH}),
                            testing::HostArg(sorted.data(), DType::kI32, {capacity})};
  TensorArg permute_out[] = {testing::HostArg(xp.data(), DType::kF32, {capacity, kH})};
  KernelArgs permute;
  permute.in = permute_in;
  permute.num_in = 2;
  permute.out = permute_out;
  permute.num_out = 1;
  SetParams(permute, TopKParams{.top_k = 1});
  RefMoePermute(permute);

  // grouped_matmul's order: row q is expert e's output for the rows of its
  // offsets range; rows past the live ones are NaN, which combine must not read.
  std::vector<float> yp(capacity * kH, kNaN);
  for (int64_t e = 0; e < local.count; ++e) {
    for (int64_t q = offsets[e]; q < offsets[e + 1]; ++q) {
      for (int64_t c = 0; c < kH; ++c)
        yp[q * kH + c] = Expert(xp[q * kH + c], local.first + e);
    }
  }

  out.y.assign(in.rows * kH, kNaN);
  TensorArg combine_in[] = {
      testing::HostArg(yp.data(), DType::kF32, {capacity, kH}),
      testing::HostArg(sorted.data(), DType::kI32, {capacity}),
      testing::HostArg(offsets.data(), DType::kI32, {local.count + 1}),
      testing::HostArg(in.weights.data(), DType::kF32, {in.rows, top_k}),
      testing::HostArg(out.layout.data(), DType::kI32, {num_pairs + 2 * params.ep_size})};
  TensorArg combine_out[] = {testing::HostArg(out.y.data(), DType::kF32, {in.rows, kH})};
  KernelArgs combine;
  combine.meta = &meta;
  combine.in = combine_in;
  combine.num_in = 5;
  combine.out = combine_out;
  combine.num_out = 1;
  combine.comm = comm;
  SetParams(combine, params);
  RefEpCombine(combine);
  return out;
}

struct Case {
  int64_t experts, top_k;
  std::vector<std::pair<int64_t, int32_t>> ranks;  // per rank: rows, num_tokens
};

void CheckCase(const Case& c) {
  const int world = static_cast<int>(c.ranks.size());
  const int64_t k = c.top_k, experts = c.experts;
  SCOPED_TRACE("E " + std::to_string(experts) + ", k " + std::to_string(k) + ", W " +
               std::to_string(world));
  std::vector<RankInput> inputs;
  for (int r = 0; r < world; ++r) {
    inputs.push_back(MakeInput(c.ranks[r].first, c.ranks[r].second, experts, k,
                               static_cast<uint32_t>(101 * (r + 1) + 7 * experts + k)));
  }
  // What each rank sends each other rank, from the ids alone.
  std::vector<std::vector<int64_t>> sent(world, std::vector<int64_t>(world, 0));
  for (int r = 0; r < world; ++r) {
    for (int64_t p = 0; p < inputs[r].rows * k; ++p) {
      if (Live(inputs[r], k, experts, p)) ++sent[r][ExpertOwner(experts, world, inputs[r].ids[p])];
    }
  }
  // A capacity of the largest receive plus padding rows.
  int64_t capacity = 0;
  for (int d = 0; d < world; ++d) {
    int64_t received = 0;
    for (int s = 0; s < world; ++s)
      received += sent[s][d];
    capacity = std::max(capacity, received);
  }
  capacity += 3;

  std::vector<std::unique_ptr<Communicator>> group = MakeLocalGroup(world);
  std::vector<RankOutput> outputs(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      const EpParams params{
          .num_experts = experts, .ep_size = world, .ep_rank = r, .capacity = capacity};
      outputs[r] = RunRank(inputs[r], group[r].get(), params, k);
    });
  }
  for (std::thread& t : threads)
    t.join();

  for (int r = 0; r < world; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const RankInput& in = inputs[r];
    const RankOutput& out = outputs[r];
    const int64_t num_pairs = in.rows * k;
    // Layout: slots by destination, then pair; the counts.
    std::vector<int32_t> expected_layout(num_pairs, -1);
    int32_t slot = 0;
    for (int d = 0; d < world; ++d) {
      for (int64_t p = 0; p < num_pairs; ++p) {
        if (Live(in, k, experts, p) && ExpertOwner(experts, world, in.ids[p]) == d) {
          expected_layout[p] = slot++;
        }
      }
    }
    for (int d = 0; d < world; ++d) {
      expected_layout.push_back(static_cast<int32_t>(sent[r][d]));
    }
    int64_t received = 0;
    for (int s = 0; s < world; ++s) {
      expected_layout.push_back(static_cast<int32_t>(sent[s][r]));
      received += sent[s][r];
    }
    EXPECT_EQ(out.layout, expected_layout);

    // rx / rids: the pairs from rank 0, then rank 1, ..., each in its send order.
    const ExpertRange local = ExpertRangeOf(experts, world, r);
    int64_t row = 0;
    for (int s = 0; s < world; ++s) {
      for (int64_t p = 0; p < inputs[s].rows * k; ++p) {
        if (!Live(inputs[s], k, experts, p) || ExpertOwner(experts, world, inputs[s].ids[p]) != r) {
          continue;
        }
        ASSERT_LT(row, received);
        EXPECT_EQ(out.rids[row], inputs[s].ids[p] - local.first) << "row " << row;
        for (int64_t c = 0; c < kH; ++c)
          EXPECT_EQ(out.rx[row * kH + c], inputs[s].x[(p / k) * kH + c]) << "row " << row;
        ++row;
      }
    }
    for (int64_t i = received; i < capacity; ++i) {
      EXPECT_EQ(out.rids[i], -1) << "padding row " << i;
      for (int64_t c = 0; c < kH; ++c)
        EXPECT_EQ(out.rx[i * kH + c], 0.0f) << "padding row " << i;
    }

    // y: the single-rank formula, in f32 like moe_unpermute_reduce (values
    // reach ~20, where an f32 ulp is 2e-6: a double sum would differ by that).
    for (int64_t t = 0; t < in.rows; ++t) {
      for (int64_t c = 0; c < kH; ++c) {
        float expected = 0.0f;
        for (int64_t j = 0; j < k; ++j) {
          if (!Live(in, k, experts, t * k + j)) continue;
          expected += in.weights[t * k + j] * Expert(in.x[t * kH + c], in.ids[t * k + j]);
        }
        EXPECT_NEAR(out.y[t * kH + c], expected, 1e-6) << "token " << t << " column " << c;
      }
    }
  }
}

TEST(EpKernelsTest, DispatchAndCombineMatchTheSingleRankFormula) {
  for (int64_t experts : {5, 8}) {
    for (int64_t top_k : {2, 3}) {
      // Full, empty and masked chunks (rows 3, 2 of them real).
      CheckCase({experts, top_k, {{5, 5}, {3, 2}}});
      CheckCase({experts, top_k, {{0, 0}, {5, 5}}});
      CheckCase({experts, top_k, {{5, 5}, {0, 0}, {3, 2}}});
    }
  }
}

// Every rank empty: the collectives still run, and nothing is received.
TEST(EpKernelsTest, AllRanksEmpty) {
  CheckCase({5, 2, {{0, 0}, {0, 0}, {0, 0}}});
}

// Padding rows carry -1 ids (topk_route) and are skipped by num_tokens too:
// a chunk whose real rows route nowhere sends nothing.
TEST(EpKernelsTest, MaskedRowsSendNothing) {
  CheckCase({8, 3, {{3, 0}, {4, 1}}});
}

// A kernel run without the group the plan was compiled for is a contract violation.
TEST(EpKernelsDeathTest, ACommunicatorOfTheWrongGroupAborts) {
  const RankInput in = MakeInput(2, 2, 5, 2, 1);
  const EpParams params{.num_experts = 5, .ep_size = 2, .ep_rank = 0, .capacity = 8};
  EXPECT_DEATH(RunRank(in, nullptr, params, 2), "ep_dispatch.*rank 0 of 2: no communicator");
  std::vector<std::unique_ptr<Communicator>> three = MakeLocalGroup(3);
  EXPECT_DEATH(RunRank(in, three[0].get(), params, 2),
               "the local communicator is rank 0 of 3, not the plan's");
}

// The compiler sizes capacity for every key: receiving more is a contract
// violation naming the op, the rank and both numbers.
TEST(EpKernelsDeathTest, ReceivingMoreThanCapacityAborts) {
  auto run = [] {
    std::vector<std::unique_ptr<Communicator>> group = MakeLocalGroup(2);
    const std::vector<RankInput> inputs = {MakeInput(5, 5, 5, 2, 3), MakeInput(5, 5, 5, 2, 4)};
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        const EpParams params{.num_experts = 5, .ep_size = 2, .ep_rank = r, .capacity = 1};
        RunRank(inputs[r], group[r].get(), params, 2);
      });
    }
    for (std::thread& t : threads)
      t.join();
  };
  EXPECT_DEATH(run(), "ep_dispatch.*rank [01] of 2: received [0-9]+ pairs, more than capacity 1");
}

}  // namespace
}  // namespace moegraph
