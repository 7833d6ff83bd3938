// The kernel thread pool: every part runs exactly once whatever the thread count, callers on
// several threads and parts that call back in finish, and a forked child gets working threads.
#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

namespace moegraph {
namespace {

// Runs `num_parts` parts on `threads` threads and checks each ran once.
void ExpectEachPartOnce(int threads, int64_t num_parts) {
  std::vector<std::atomic<int>> runs(static_cast<size_t>(num_parts));
  RunParts(threads, num_parts, [&](int64_t part) { runs[static_cast<size_t>(part)]++; });
  for (int64_t p = 0; p < num_parts; ++p) {
    ASSERT_EQ(runs[static_cast<size_t>(p)].load(), 1)
        << "part " << p << " of " << num_parts << " on " << threads << " threads";
  }
}

TEST(ThreadPoolTest, EveryPartRunsOnce) {
  for (int threads : {1, 2, 3, 5, 8}) {
    for (int64_t parts : {0, 1, 2, 7, 64, 1000})
      ExpectEachPartOnce(threads, parts);
  }
}

TEST(ThreadPoolTest, ParallelForCoversTheRangeOnceInContiguousPieces) {
  for (int threads : {1, 2, 3}) {
    for (int64_t n : {1, 2, 5, 17, 4096}) {
      for (int64_t min_rows : {1, 3, 1000}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        std::atomic<int> pieces{0};
        ParallelFor(
            threads, n,
            [&](int64_t begin, int64_t end) {
              EXPECT_LT(begin, end);
              // Every piece but a whole range on the caller has at least min_rows rows.
              if (end - begin != n) {
                EXPECT_GE(end - begin, min_rows);
              }
              for (int64_t i = begin; i < end; ++i)
                seen[static_cast<size_t>(i)]++;
              pieces++;
            },
            min_rows);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(seen[static_cast<size_t>(i)].load(), 1);
        EXPECT_LE(pieces.load(), PartsFor(threads));
      }
    }
  }
}

TEST(ThreadPoolTest, SharesAreAllOfPartsFor) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(PartsFor(3)));
  ParallelShares(3, [&](int share, int num_shares) {
    EXPECT_EQ(num_shares, PartsFor(3));
    seen[static_cast<size_t>(share)]++;
  });
  for (const std::atomic<int>& s : seen)
    EXPECT_EQ(s.load(), 1);
  EXPECT_EQ(PartsFor(1), 1);
}

TEST(ThreadPoolTest, APartThatCallsBackRunsItsPartsInline) {
  std::atomic<int64_t> inner{0};
  RunParts(2, 8, [&](int64_t) { RunParts(2, 5, [&](int64_t) { inner++; }); });
  EXPECT_EQ(inner.load(), 40);
}

TEST(ThreadPoolTest, CallersOnSeveralThreadsAllFinish) {
  std::vector<std::thread> callers;
  std::atomic<int64_t> total{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int job = 0; job < 200; ++job) {
        std::atomic<int64_t> sum{0};
        RunParts(2, 9, [&](int64_t part) { sum += part; });
        EXPECT_EQ(sum.load(), 36);
        total += sum.load();
      }
    });
  }
  for (std::thread& t : callers)
    t.join();
  EXPECT_EQ(total.load(), 4 * 200 * 36);
}

TEST(ThreadPoolTest, AForkedChildHasWorkingThreads) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer does not support threads started after a multi-threaded fork";
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  GTEST_SKIP() << "ThreadSanitizer does not support threads started after a multi-threaded fork";
#endif
#endif
  ExpectEachPartOnce(2, 16);  // the parent's workers exist
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int> runs{0};
    RunParts(2, 16, [&](int64_t) { runs++; });
    _exit(runs.load() == 16 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace moegraph
