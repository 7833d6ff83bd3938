// The NCCL communicator on one rank: all-reduce, all-gather and all-to-all(v)
// of a device buffer are identities, ordered on the backend's stream. Skips
// without a CUDA device or without NCCL in the build.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/cuda_backend.h"
#include "runtime/nccl_communicator.h"

namespace moegraph {
namespace {

TEST(NcclCommunicatorTest, SingleRankCollectivesAreIdentities) {
  std::string reason;
  if (!CudaDeviceAvailable(&reason)) GTEST_SKIP() << reason;
  StatusOr<NcclUniqueId> id = MakeNcclUniqueId();
  if (!id.ok() && id.status().code() == StatusCode::kUnimplemented) {
    GTEST_SKIP() << id.status().message();
  }
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  StatusOr<std::unique_ptr<Communicator>> comm = CreateNcclCommunicator(*id, 0, 1, 0);
  ASSERT_TRUE(comm.ok()) << comm.status().ToString();
  EXPECT_EQ((*comm)->rank(), 0);
  EXPECT_EQ((*comm)->world_size(), 1);

  StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(0);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  void* stream = CudaBackendStream(**backend);
  ASSERT_NE(stream, nullptr);
  constexpr size_t kCount = 37;
  std::vector<float> values(kCount);
  for (size_t i = 0; i < kCount; ++i)
    values[i] = 0.5f * i - 3.0f;
  StatusOr<std::byte*> send = (*backend)->Allocate(kCount * sizeof(float));
  StatusOr<std::byte*> recv = (*backend)->Allocate(kCount * sizeof(float));
  ASSERT_TRUE(send.ok() && recv.ok());
  ASSERT_TRUE((*backend)->Upload(*send, values.data(), kCount * sizeof(float)).ok());

  using Collective = Status (Communicator::*)(const void*, void*, size_t, DType, void*);
  for (Collective collective : {static_cast<Collective>(&Communicator::AllReduceSum),
                                static_cast<Collective>(&Communicator::AllGather),
                                static_cast<Collective>(&Communicator::AllToAll)}) {
    std::vector<float> zeros(kCount, 0.0f), got(kCount, -1.0f);
    ASSERT_TRUE((*backend)->Upload(*recv, zeros.data(), kCount * sizeof(float)).ok());
    ASSERT_TRUE(((**comm).*collective)(*send, *recv, kCount, DType::kF32, stream).ok());
    ASSERT_TRUE((*backend)->Download(got.data(), *recv, kCount * sizeof(float)).ok());
    EXPECT_EQ(got, values);
  }
  // One rank's AllToAllV sends its whole block to itself: an identity too.
  {
    const int64_t counts[1] = {static_cast<int64_t>(kCount)};
    std::vector<float> zeros(kCount, 0.0f), got(kCount, -1.0f);
    ASSERT_TRUE((*backend)->Upload(*recv, zeros.data(), kCount * sizeof(float)).ok());
    ASSERT_TRUE((*comm)->AllToAllV(*send, counts, *recv, counts, sizeof(float), stream).ok());
    ASSERT_TRUE((*backend)->Download(got.data(), *recv, kCount * sizeof(float)).ok());
    EXPECT_EQ(got, values);
  }
  EXPECT_STREQ((*comm)->kind(), "nccl");
  int64_t value = 1;
  EXPECT_EQ((*comm)->AllReduceMaxHost(&value, 1).code(), StatusCode::kUnimplemented);
  (*backend)->Free(*send);
  (*backend)->Free(*recv);
}

TEST(NcclCommunicatorTest, BadRanksAreErrors) {
  NcclUniqueId id;
  EXPECT_FALSE(CreateNcclCommunicator(id, 2, 2, 0).ok());
  EXPECT_FALSE(CreateNcclCommunicator(id, -1, 1, 0).ok());
  EXPECT_FALSE(CreateNcclCommunicator(id, 0, 0, 0).ok());
}

}  // namespace
}  // namespace moegraph
