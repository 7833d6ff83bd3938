// The in-process communicator group: every collective at 1, 2 and 3 ranks
// with exact expected values, AllToAllV with zero counts, disagreeing ranks,
// and a rank that never comes (the others fail within the timeout, no hang).
#include "kernels/local_communicator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace moegraph {
namespace {

// Runs body(rank, comm) on one thread per rank of a fresh group.
void OnEveryRank(int world, const std::function<void(int, Communicator&)>& body,
                 std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::vector<std::unique_ptr<Communicator>> group = MakeLocalGroup(world, timeout);
  ASSERT_EQ(group.size(), static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] { body(r, *group[r]); });
  for (std::thread& t : threads)
    t.join();
}

class LocalCommunicatorTest : public ::testing::TestWithParam<int> {};

TEST_P(LocalCommunicatorTest, RanksAndKind) {
  const int world = GetParam();
  OnEveryRank(world, [&](int r, Communicator& comm) {
    EXPECT_EQ(comm.rank(), r);
    EXPECT_EQ(comm.world_size(), world);
    EXPECT_STREQ(comm.kind(), "local");
  });
}

TEST_P(LocalCommunicatorTest, AllReduceSumOfEachDTypeAndInPlace) {
  const int world = GetParam();
  OnEveryRank(world, [&](int r, Communicator& comm) {
    std::vector<float> f = {0.5f * r, 1.0f + r, -2.0f};
    std::vector<float> f_sum(3, -1.0f);
    ASSERT_TRUE(comm.AllReduceSum(f.data(), f_sum.data(), 3, DType::kF32, nullptr).ok());
    float ranks = 0.0f;
    for (int s = 0; s < world; ++s)
      ranks += static_cast<float>(s);
    EXPECT_EQ(f_sum, (std::vector<float>{0.5f * ranks, world + ranks, -2.0f * world}));

    std::vector<int32_t> i32 = {r, 10 * r + 1};  // in place
    ASSERT_TRUE(comm.AllReduceSum(i32.data(), i32.data(), 2, DType::kI32, nullptr).ok());
    const int32_t rank_sum = world * (world - 1) / 2;
    EXPECT_EQ(i32, (std::vector<int32_t>{rank_sum, 10 * rank_sum + world}));

    std::vector<int64_t> i64 = {int64_t{1} << 40};
    ASSERT_TRUE(comm.AllReduceSum(i64.data(), i64.data(), 1, DType::kI64, nullptr).ok());
    EXPECT_EQ(i64[0], world * (int64_t{1} << 40));

    const Status bf16 = comm.AllReduceSum(f.data(), f.data(), 1, DType::kBF16, nullptr);
    EXPECT_EQ(bf16.code(), StatusCode::kUnimplemented);
  });
}

TEST_P(LocalCommunicatorTest, AllGatherInRankOrder) {
  const int world = GetParam();
  OnEveryRank(world, [&](int r, Communicator& comm) {
    const std::vector<int32_t> send = {r, -r, 100 + r};
    std::vector<int32_t> recv(3 * world, 7);
    ASSERT_TRUE(comm.AllGather(send.data(), recv.data(), 3, DType::kI32, nullptr).ok());
    std::vector<int32_t> expected;
    for (int s = 0; s < world; ++s)
      expected.insert(expected.end(), {s, -s, 100 + s});
    EXPECT_EQ(recv, expected);

    const char host[2] = {static_cast<char>('a' + r), 'z'};
    std::string gathered(2 * world, '?');
    ASSERT_TRUE(comm.AllGatherHost(host, gathered.data(), 2).ok());
    std::string expected_host;
    for (int s = 0; s < world; ++s)
      expected_host += std::string{static_cast<char>('a' + s), 'z'};
    EXPECT_EQ(gathered, expected_host);
  });
}

TEST_P(LocalCommunicatorTest, AllToAllSendsBlockRToRankR) {
  const int world = GetParam();
  OnEveryRank(world, [&](int r, Communicator& comm) {
    // Block d of rank r's send: {10 r + d, -(10 r + d)}.
    std::vector<float> send;
    for (int d = 0; d < world; ++d)
      send.insert(send.end(), {10.0f * r + d, -(10.0f * r + d)});
    std::vector<float> recv(2 * world, 0.5f);
    ASSERT_TRUE(comm.AllToAll(send.data(), recv.data(), 2, DType::kF32, nullptr).ok());
    std::vector<float> expected;
    for (int s = 0; s < world; ++s)
      expected.insert(expected.end(), {10.0f * s + r, -(10.0f * s + r)});
    EXPECT_EQ(recv, expected);
  });
}

// Rank s sends (s + d) % 3 elements to rank d, with value 1000 s + 10 d + i:
// zero counts included at every world size above 1.
TEST_P(LocalCommunicatorTest, AllToAllVWithZeroCounts) {
  const int world = GetParam();
  auto count = [](int s, int d) { return static_cast<int64_t>((s + d) % 3); };
  OnEveryRank(world, [&](int r, Communicator& comm) {
    std::vector<int64_t> send_counts(world), recv_counts(world);
    std::vector<int64_t> send;
    for (int d = 0; d < world; ++d) {
      send_counts[d] = count(r, d);
      recv_counts[d] = count(d, r);
      for (int64_t i = 0; i < send_counts[d]; ++i)
        send.push_back(1000 * r + 10 * d + i);
    }
    std::vector<int64_t> expected;
    for (int s = 0; s < world; ++s) {
      for (int64_t i = 0; i < count(s, r); ++i)
        expected.push_back(1000 * s + 10 * r + i);
    }
    std::vector<int64_t> recv(expected.size() + 1, -5);  // one past the end: untouched
    ASSERT_TRUE(comm.AllToAllV(send.data(), send_counts.data(), recv.data(), recv_counts.data(),
                               sizeof(int64_t), nullptr)
                    .ok());
    expected.push_back(-5);
    EXPECT_EQ(recv, expected);

    // Nothing at all: still a collective, still fine.
    const std::vector<int64_t> zeros(world, 0);
    ASSERT_TRUE(comm.AllToAllV(nullptr, zeros.data(), nullptr, zeros.data(), 12, nullptr).ok());
  });
}

TEST_P(LocalCommunicatorTest, AllReduceMaxHostInPlace) {
  const int world = GetParam();
  OnEveryRank(world, [&](int r, Communicator& comm) {
    std::vector<int64_t> values = {r, -r, r == world - 1 ? 99 : 3};
    ASSERT_TRUE(comm.AllReduceMaxHost(values.data(), values.size()).ok());
    EXPECT_EQ(values, (std::vector<int64_t>{world - 1, 0, 99}));
  });
}

// Many collectives back to back: the barrier generations never mix two calls.
TEST_P(LocalCommunicatorTest, ManyCallsInARow) {
  const int world = GetParam();
  OnEveryRank(world, [&](int r, Communicator& comm) {
    for (int64_t i = 0; i < 200; ++i) {
      int64_t value = i * (r + 1);
      ASSERT_TRUE(comm.AllReduceMaxHost(&value, 1).ok());
      ASSERT_EQ(value, i * world);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, LocalCommunicatorTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "W" + std::to_string(info.param);
                         });

TEST(LocalCommunicatorErrorsTest, CountsThatDisagreeAreAnErrorOnEveryRank) {
  OnEveryRank(2, [&](int r, Communicator& comm) {
    // Rank 0 sends rank 1 two elements, rank 1 expects one.
    const std::vector<int64_t> send_counts =
        r == 0 ? std::vector<int64_t>{0, 2} : std::vector<int64_t>{0, 0};
    const std::vector<int64_t> recv_counts =
        r == 0 ? std::vector<int64_t>{0, 0} : std::vector<int64_t>{1, 0};
    int32_t send[2] = {1, 2}, recv[2] = {0, 0};
    const Status s = comm.AllToAllV(send, send_counts.data(), recv, recv_counts.data(),
                                    sizeof(int32_t), nullptr);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("rank 0 sends 2 elements to rank 1, which expects 1"),
              std::string::npos)
        << s.message();
    EXPECT_EQ(recv[0], 0);
  });
}

TEST(LocalCommunicatorErrorsTest, DifferentCollectivesAreAnError) {
  OnEveryRank(2, [&](int r, Communicator& comm) {
    int64_t value = r;
    const Status s =
        r == 0 ? comm.AllReduceMaxHost(&value, 1) : comm.AllGatherHost(&value, nullptr, 0);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("disagree"), std::string::npos) << s.message();
  });
}

// Rank 2 never calls: ranks 0 and 1 fail within about the timeout, naming the
// operation and the missing rank; the group stays broken afterwards.
TEST(LocalCommunicatorErrorsTest, AMissingRankIsADeadlineNotAHang) {
  constexpr auto kTimeout = std::chrono::milliseconds(200);
  std::vector<std::unique_ptr<Communicator>> group = MakeLocalGroup(3, kTimeout);
  std::vector<Status> results(2);
  std::vector<double> seconds(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      const auto start = std::chrono::steady_clock::now();
      int64_t value = r;
      results[r] = group[r]->AllReduceMaxHost(&value, 1);
      seconds[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
  }
  for (std::thread& t : threads)
    t.join();
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(results[r].code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(results[r].message().find("deadline exceeded"), std::string::npos)
        << results[r].message();
    EXPECT_NE(results[r].message().find("AllReduceMaxHost waited 200 ms for rank(s) 2 of 3"),
              std::string::npos)
        << results[r].message();
    EXPECT_GE(seconds[r], 0.15);
    EXPECT_LT(seconds[r], 5.0);
  }
  // The late rank, and every later call, get the same error at once.
  int64_t value = 2;
  const Status late = group[2]->AllReduceMaxHost(&value, 1);
  EXPECT_EQ(late.message(), results[0].message());
}

TEST(LocalCommunicatorErrorsTest, NoRanksGiveAnEmptyGroup) {
  EXPECT_TRUE(MakeLocalGroup(0).empty());
  EXPECT_TRUE(MakeLocalGroup(-1).empty());
}

}  // namespace
}  // namespace moegraph
