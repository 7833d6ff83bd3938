// The persistent kernel thread pool (see thread_pool.h).
//
// One job at a time. Its state is one 64-bit word: generation (24 bits), number of parts
// (20 bits), next part (20 bits). A thread takes part i by moving the word from (g, n, i) to
// (g, n, i + 1) with a compare-and-swap, so it can only ever take a part of the job whose
// generation and size it saw in the same word: a worker that wakes late cannot take a part of a
// later job, nor run a part twice. The job's function is published before the word (release)
// and read after a successful swap (acquire); it stays valid until every part is done, which
// the caller waits for.
#include "kernels/cpu/thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace moegraph {
namespace {

constexpr int kGenBits = 24, kPartBits = 20;
constexpr uint64_t kPartMask = (uint64_t{1} << kPartBits) - 1;
constexpr uint64_t kGenMask = (uint64_t{1} << kGenBits) - 1;
constexpr int64_t kMaxParts = static_cast<int64_t>(kPartMask);

constexpr uint64_t Pack(uint64_t gen, uint64_t parts, uint64_t next) {
  return (gen << (2 * kPartBits)) | (parts << kPartBits) | next;
}
constexpr uint64_t GenOf(uint64_t s) {
  return s >> (2 * kPartBits);
}
constexpr int64_t PartsOf(uint64_t s) {
  return static_cast<int64_t>((s >> kPartBits) & kPartMask);
}
constexpr int64_t NextOf(uint64_t s) {
  return static_cast<int64_t>(s & kPartMask);
}

// Spin this long for new work or for stragglers before sleeping or yielding: longer than the
// gap between two kernels of a replayed step, shorter than an OS time slice.
constexpr auto kSpin = std::chrono::microseconds(50);
// A caller that waited longer than max(3 x its mean part time, this) saw a straggler.
constexpr auto kStraggler = std::chrono::microseconds(300);
constexpr auto kSoloFirst = std::chrono::milliseconds(20);
constexpr auto kSoloMax = std::chrono::milliseconds(1280);

using Clock = std::chrono::steady_clock;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

thread_local bool in_part = false;  // a part calling RunParts runs its parts inline

void RunInline(int64_t num_parts, PartFn fn) {
  for (int64_t p = 0; p < num_parts; ++p)
    fn(p);
}

class Pool;
// Never destroyed: workers may outlive static destructors. A forked child has none of the
// parent's workers, so it starts a pool of its own (the parent's is left as it was).
std::atomic<Pool*> the_pool{nullptr};

class Pool {
 public:
  static Pool& Get() {
    static const bool registered = [] {
      the_pool.store(new Pool);
      pthread_atfork(nullptr, nullptr, [] { the_pool.store(new Pool); });
      return true;
    }();
    (void)registered;
    return *the_pool.load();
  }

  void Run(int num_threads, int64_t num_parts, PartFn fn) {
    std::unique_lock<std::mutex> lock(submit_, std::try_to_lock);
    if (!lock.owns_lock() || Clock::now() < solo_until_) return RunInline(num_parts, fn);
    const int helpers = std::min(num_threads - 1, kMaxWorkers);
    EnsureWorkers(helpers);
    fn_.store(&fn, std::memory_order_relaxed);
    helpers_.store(helpers, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    gen_ = (gen_ + 1) & kGenMask;
    state_.store(Pack(gen_, static_cast<uint64_t>(num_parts), 0), std::memory_order_release);
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_all();

    const auto busy_start = Clock::now();
    const int64_t mine = TakeParts(gen_);
    const auto waiting_start = Clock::now();
    // Spin briefly, then sleep: an idle core lets the scheduler move a preempted worker onto it.
    while (done_.load(std::memory_order_acquire) < num_parts) {
      if (Clock::now() - waiting_start < kSpin) {
        CpuRelax();
        continue;
      }
      const uint32_t finished = finished_.load(std::memory_order_acquire);
      if (done_.load(std::memory_order_acquire) >= num_parts) break;
      finished_.wait(finished, std::memory_order_acquire);
    }
    // A straggler: the caller ran parts and then waited far longer than its parts took.
    const auto waited = Clock::now() - waiting_start;
    const auto mean_part = mine > 0 ? (waiting_start - busy_start) / mine : Clock::duration{0};
    if (mine > 0 && waited > std::max<Clock::duration>(3 * mean_part, kStraggler)) {
      // Doubled while stalls come back soon after parallel running resumes (a busy machine
      // stays mostly solo); back to the first window after a quiet spell.
      const auto now = Clock::now();
      solo_for_ = now - last_stall_ < 4 * solo_for_
                      ? std::min<Clock::duration>(2 * solo_for_, kSoloMax)
                      : Clock::duration{kSoloFirst};
      last_stall_ = now;
      solo_until_ = now + solo_for_;
    }
  }

 private:
  static constexpr int kMaxWorkers = 255;

  // Takes parts of job `gen` until none are left; returns how many it ran.
  int64_t TakeParts(uint64_t gen) {
    int64_t ran = 0;
    uint64_t s = state_.load(std::memory_order_acquire);
    while (GenOf(s) == gen && NextOf(s) < PartsOf(s)) {
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        continue;
      }
      const PartFn* fn = fn_.load(std::memory_order_relaxed);
      in_part = true;
      (*fn)(NextOf(s));
      in_part = false;
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == PartsOf(s)) {
        finished_.fetch_add(1, std::memory_order_release);
        finished_.notify_one();
      }
      ++ran;
      s = state_.load(std::memory_order_acquire);
    }
    return ran;
  }

  void EnsureWorkers(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { WorkerLoop(index); });
      workers_.back().detach();
    }
  }

  void WorkerLoop(int index) {
    uint64_t seen_gen = GenOf(state_.load(std::memory_order_acquire));
    for (;;) {
      // Spin a little for the next job, then sleep until one is announced.
      const uint32_t wake = wake_.load(std::memory_order_acquire);
      const auto spin_start = Clock::now();
      uint64_t s = state_.load(std::memory_order_acquire);
      while (GenOf(s) == seen_gen && Clock::now() - spin_start < kSpin) {
        CpuRelax();
        s = state_.load(std::memory_order_acquire);
      }
      if (GenOf(s) == seen_gen) {
        wake_.wait(wake, std::memory_order_acquire);
        continue;
      }
      seen_gen = GenOf(s);
      if (index < helpers_.load(std::memory_order_relaxed)) TakeParts(seen_gen);
    }
  }

  std::mutex submit_;  // held by the one caller whose job is running
  std::atomic<uint64_t> state_{0};
  std::atomic<uint32_t> wake_{0};  // bumped per job; sleeping workers wait on it
  std::atomic<const PartFn*> fn_{nullptr};
  std::atomic<int> helpers_{0};  // workers [0, helpers) join the current job
  std::atomic<int64_t> done_{0};
  std::atomic<uint32_t> finished_{
      0};             // bumped when a job's last part is done; the caller waits on it
  uint64_t gen_ = 0;  // under submit_
  std::vector<std::thread> workers_;  // under submit_
  Clock::time_point solo_until_{};    // under submit_
  Clock::duration solo_for_{0};       // under submit_
  Clock::time_point last_stall_{};    // under submit_
};

}  // namespace

int64_t PartsFor(int num_threads) {
  return num_threads <= 1 ? 1 : int64_t{4} * num_threads;
}

void RunParts(int num_threads, int64_t num_parts, PartFn fn) {
  if (num_parts <= 0) return;
  if (num_threads <= 1 || num_parts == 1 || in_part || num_parts > kMaxParts) {
    return RunInline(num_parts, fn);
  }
  Pool::Get().Run(num_threads, num_parts, fn);
}

}  // namespace moegraph
