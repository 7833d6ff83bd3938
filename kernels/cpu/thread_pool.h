// The CPU kernels' threads: one persistent pool instead of an OpenMP parallel region per kernel.
//
// A kernel splits its work into parts (more parts than threads); the calling thread and the
// pool's workers take parts from one shared counter until none are left. A worker the OS has
// descheduled therefore holds up a kernel only by the part it is running, never by a share
// fixed in advance, and a worker that has not woken up yet takes nothing. When the caller still
// waits for a straggler much longer than a part takes (another process has the core), the pool
// runs the following kernels on the calling thread alone for a while (20 ms, doubling up to
// 1.28 s while stalls keep coming back soon after), so two threads on a busy machine are not
// much slower than one.
//
// How work is split never changes a kernel's arithmetic: every kernel computes each output
// element the same way whichever part computes it (the thread-count equivalence tests check it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace moegraph {

// A non-owning reference to a callable `void(int64_t)`; it must outlive the call it is given to.
class PartFn {
 public:
  template <typename F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, PartFn>)
      PartFn(F&& f)  // NOLINT(google-explicit-constructor): passed as a lambda
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* object, int64_t part) {
          (*static_cast<std::remove_reference_t<F>*>(object))(part);
        }) {}
  void operator()(int64_t part) const { call_(object_, part); }

 private:
  void* object_;
  void (*call_)(void*, int64_t);
};

// Runs fn(part) once for every part in [0, num_parts), on up to num_threads threads (the
// caller included), and returns when all have run. num_threads <= 1, one part, a call from
// inside a part, or a second thread calling while the pool is busy: fn runs on the caller,
// parts in order.
void RunParts(int num_threads, int64_t num_parts, PartFn fn);

// How many parts a kernel splitting its work by SplitRange shares should use on num_threads
// threads: a few per thread, so a slow or late thread's share is small (1 for one thread).
int64_t PartsFor(int num_threads);

// fn(begin, end) over [0, n) in contiguous ranges of at least min_rows (the whole range on
// the caller when n < 2 * min_rows).
template <typename F>
void ParallelFor(int num_threads, int64_t n, F&& fn, int64_t min_rows = 1) {
  if (n <= 0) return;
  int64_t parts = PartsFor(num_threads);
  if (min_rows > 0) parts = std::min<int64_t>(parts, n / min_rows);
  if (parts <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  RunParts(num_threads, parts, [&](int64_t part) {
    const int64_t begin = n * part / parts, end = n * (part + 1) / parts;
    if (begin < end) fn(begin, end);
  });
}

// fn(share, num_shares) for every share of a kernel that splits its work with SplitRange:
// PartsFor(num_threads) shares taken dynamically by the threads.
template <typename F>
void ParallelShares(int num_threads, F&& fn) {
  const int64_t shares = PartsFor(num_threads);
  RunParts(num_threads, shares,
           [&](int64_t share) { fn(static_cast<int>(share), static_cast<int>(shares)); });
}

}  // namespace moegraph
