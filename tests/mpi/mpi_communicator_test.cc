// The MPI communicator on every rank of an mpirun job (ctest runs it at -np 2
// and 3): each collective with exact expected values, AllToAllV with zero
// counts, the launcher's environment, and expert-parallel dispatch/combine
// over MPI. Its own main: MPI is initialized once, before the tests, and the
// job fails when any rank's tests fail.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cpu/reference_kernels.h"
#include "runtime/mpi_communicator.h"
#include "tests/testing/tensors.h"

namespace moegraph {
namespace {

Communicator* g_comm = nullptr;  // set by main for the whole job

TEST(MpiCommunicatorTest, KindRankAndTheLaunchersEnvironment) {
  EXPECT_STREQ(g_comm->kind(), "mpi");
  EXPECT_GE(g_comm->world_size(), 1);
  EXPECT_GE(g_comm->rank(), 0);
  EXPECT_LT(g_comm->rank(), g_comm->world_size());
  EXPECT_TRUE(LaunchedByMpirun());
  EXPECT_EQ(MpirunWorldSize(), g_comm->world_size());
}

TEST(MpiCommunicatorTest, AllReduceSum) {
  const int world = g_comm->world_size(), r = g_comm->rank();
  std::vector<float> f = {0.5f * r, -1.0f};
  std::vector<float> f_sum(2, 0.0f);
  ASSERT_TRUE(g_comm->AllReduceSum(f.data(), f_sum.data(), 2, DType::kF32, nullptr).ok());
  EXPECT_EQ(f_sum, (std::vector<float>{0.25f * world * (world - 1), -1.0f * world}));
  std::vector<int64_t> in_place = {r + 1, int64_t{1} << 40};
  ASSERT_TRUE(g_comm->AllReduceSum(in_place.data(), in_place.data(), 2, DType::kI64, nullptr).ok());
  EXPECT_EQ(in_place, (std::vector<int64_t>{world * (world + 1) / 2, world * (int64_t{1} << 40)}));
  int32_t i32 = 3;
  ASSERT_TRUE(g_comm->AllReduceSum(&i32, &i32, 1, DType::kI32, nullptr).ok());
  EXPECT_EQ(i32, 3 * world);
  // Errors every rank reaches alike, before any MPI call.
  EXPECT_EQ(g_comm->AllReduceSum(&i32, &i32, 1, DType::kBF16, nullptr).code(),
            StatusCode::kUnimplemented);
  int stream = 0;
  EXPECT_EQ(g_comm->AllReduceSum(&i32, &i32, 1, DType::kI32, &stream).code(),
            StatusCode::kInvalidArgument);
}

TEST(MpiCommunicatorTest, AllGatherAndAllGatherHost) {
  const int world = g_comm->world_size(), r = g_comm->rank();
  const int32_t send[2] = {r, 100 - r};
  std::vector<int32_t> recv(2 * world, -1), expected;
  for (int s = 0; s < world; ++s)
    expected.insert(expected.end(), {s, 100 - s});
  ASSERT_TRUE(g_comm->AllGather(send, recv.data(), 2, DType::kI32, nullptr).ok());
  EXPECT_EQ(recv, expected);
  std::fill(recv.begin(), recv.end(), -1);
  ASSERT_TRUE(g_comm->AllGatherHost(send, recv.data(), sizeof(send)).ok());
  EXPECT_EQ(recv, expected);
}

TEST(MpiCommunicatorTest, AllToAll) {
  const int world = g_comm->world_size(), r = g_comm->rank();
  std::vector<float> send, expected;
  for (int d = 0; d < world; ++d) {
    send.push_back(10.0f * r + d);
    expected.push_back(10.0f * d + r);
  }
  std::vector<float> recv(world, -1.0f);
  ASSERT_TRUE(g_comm->AllToAll(send.data(), recv.data(), 1, DType::kF32, nullptr).ok());
  EXPECT_EQ(recv, expected);
}

// Rank s sends (s + d) % 3 elements to rank d: zero counts at every size.
TEST(MpiCommunicatorTest, AllToAllVWithZeroCounts) {
  const int world = g_comm->world_size(), r = g_comm->rank();
  auto count = [](int s, int d) { return static_cast<int64_t>((s + d) % 3); };
  std::vector<int64_t> send_counts(world), recv_counts(world), send, expected;
  for (int d = 0; d < world; ++d) {
    send_counts[d] = count(r, d);
    recv_counts[d] = count(d, r);
    for (int64_t i = 0; i < send_counts[d]; ++i)
      send.push_back(1000 * r + 10 * d + i);
    for (int64_t i = 0; i < recv_counts[d]; ++i)
      expected.push_back(1000 * d + 10 * r + i);
  }
  std::vector<int64_t> recv(expected.size() + 1, -5);
  expected.push_back(-5);
  ASSERT_TRUE(g_comm
                  ->AllToAllV(send.data(), send_counts.data(), recv.data(), recv_counts.data(),
                              sizeof(int64_t), nullptr)
                  .ok());
  EXPECT_EQ(recv, expected);
  const std::vector<int64_t> zeros(world, 0);
  int64_t dummy = 0;
  EXPECT_TRUE(g_comm->AllToAllV(&dummy, zeros.data(), &dummy, zeros.data(), 8, nullptr).ok());
}

TEST(MpiCommunicatorTest, AllReduceMaxHost) {
  const int world = g_comm->world_size(), r = g_comm->rank();
  std::vector<int64_t> values = {r, -r, r == 0 ? 77 : 1};
  ASSERT_TRUE(g_comm->AllReduceMaxHost(values.data(), values.size()).ok());
  EXPECT_EQ(values, (std::vector<int64_t>{world - 1, 0, 77}));
}

// ep_dispatch then ep_combine over MPI with an identity expert: every token
// gets back sum_j w[t, j] * x[t] over its live pairs.
TEST(MpiCommunicatorTest, ExpertParallelRoundTrip) {
  const int world = g_comm->world_size(), r = g_comm->rank();
  if (world < 2) GTEST_SKIP() << "expert parallelism needs 2 ranks";
  constexpr int64_t kH = 5, kK = 2, kE = 5;
  const int64_t rows = 3 + r, capacity = 2 * kK * (3 + world);
  std::vector<float> x = testing::RandomFloats(rows * kH, 17 + r);
  std::vector<float> w = testing::RandomFloats(rows * kK, 29 + r);
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < rows; ++t)
    ids.insert(ids.end(), {static_cast<int32_t>((t + r) % kE), t == 1 ? -1 : int32_t{kE - 1}});
  const EpParams params{.num_experts = kE, .ep_size = world, .ep_rank = r, .capacity = capacity};
  ForwardMetaView meta;
  meta.num_tokens = static_cast<int32_t>(rows);
  std::vector<float> rx(capacity * kH);
  std::vector<int32_t> rids(capacity), layout(rows * kK + 2 * world);
  TensorArg d_in[] = {testing::HostArg(x.data(), DType::kF32, {rows, kH}),
                      testing::HostArg(ids.data(), DType::kI32, {rows, kK})};
  TensorArg d_out[] = {testing::HostArg(rx.data(), DType::kF32, {capacity, kH}),
                       testing::HostArg(rids.data(), DType::kI32, {capacity, 1}),
                       testing::HostArg(layout.data(), DType::kI32, {rows * kK + 2 * world})};
  KernelArgs dispatch;
  dispatch.meta = &meta;
  dispatch.in = d_in;
  dispatch.num_in = 2;
  dispatch.out = d_out;
  dispatch.num_out = 3;
  dispatch.comm = g_comm;
  SetParams(dispatch, params);
  RefEpDispatch(dispatch);

  // Identity experts; sorted = the received rows in order, all under expert 0.
  const int64_t local_experts = params.local().count;
  int32_t received = 0;
  for (int s = 0; s < world; ++s)
    received += layout[rows * kK + world + s];
  std::vector<int32_t> sorted(capacity, -1), offsets(local_experts + 1, received);
  offsets[0] = 0;
  for (int32_t i = 0; i < received; ++i)
    sorted[i] = i;
  std::vector<float> y(rows * kH, -1.0f);
  TensorArg c_in[] = {testing::HostArg(rx.data(), DType::kF32, {capacity, kH}),
                      testing::HostArg(sorted.data(), DType::kI32, {capacity}),
                      testing::HostArg(offsets.data(), DType::kI32, {local_experts + 1}),
                      testing::HostArg(w.data(), DType::kF32, {rows, kK}),
                      testing::HostArg(layout.data(), DType::kI32, {rows * kK + 2 * world})};
  TensorArg c_out[] = {testing::HostArg(y.data(), DType::kF32, {rows, kH})};
  KernelArgs combine;
  combine.meta = &meta;
  combine.in = c_in;
  combine.num_in = 5;
  combine.out = c_out;
  combine.num_out = 1;
  combine.comm = g_comm;
  SetParams(combine, params);
  RefEpCombine(combine);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t c = 0; c < kH; ++c) {
      float expected = 0.0f;
      for (int64_t j = 0; j < kK; ++j) {
        if (ids[t * kK + j] >= 0) expected += w[t * kK + j] * x[t * kH + c];
      }
      EXPECT_EQ(y[t * kH + c], expected) << "token " << t << " column " << c;
    }
  }
}

}  // namespace
}  // namespace moegraph

int main(int argc, char** argv) {
  moegraph::StatusOr<std::unique_ptr<moegraph::Communicator>> comm =
      moegraph::CreateMpiCommunicator();
  if (!comm.ok()) {
    std::fprintf(stderr, "CreateMpiCommunicator: %s\n", comm.status().ToString().c_str());
    return 1;
  }
  moegraph::g_comm = comm->get();
  // One rank's full report is enough; the others print their failures only
  // (set before InitGoogleTest, which picks the printer).
  if (moegraph::g_comm->rank() != 0) GTEST_FLAG_SET(brief, true);
  ::testing::InitGoogleTest(&argc, argv);
  int64_t failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  const moegraph::Status agreed = moegraph::g_comm->AllReduceMaxHost(&failed, 1);
  if (!agreed.ok()) {
    std::fprintf(stderr, "AllReduceMaxHost: %s\n", agreed.ToString().c_str());
    failed = 1;
  }
  if (failed != 0) {
    std::fprintf(stderr, "rank %d: tests failed on some rank\n", moegraph::g_comm->rank());
  }
  comm->reset();
  return failed != 0 ? 1 : 0;
}
