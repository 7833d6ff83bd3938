// Yardstick measurements: STREAM-like bandwidth, peak FMA, OpenBLAS.
#include "bench/yardsticks.h"

#include "kernels/cpu/cpu_isa.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>

#ifdef MOEGRAPH_HAVE_OPENBLAS
#include <cblas.h>
#endif

#define MG_BENCH_AVX2 __attribute__((target("avx2,fma")))
#define MG_BENCH_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace moegraph::bench {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

// 64-byte aligned floats, first touched by the threads that will read them.
Buffer AllocateTouched(uint64_t count, int threads, float value) {
  Buffer buffer(static_cast<float*>(std::aligned_alloc(64, (count * 4 + 63) / 64 * 64)));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (uint64_t i = 0; i < count; ++i)
    buffer[i] = value;
  return buffer;
}

// Sum of data[begin, end) read as `streams` sequential streams side by side
// (each a contiguous 1/streams of the range), 64 bytes of each per step.
MG_BENCH_AVX2 float SumRange(const float* data, uint64_t begin, uint64_t end, int streams) {
  __m256 acc[8];
  for (auto& a : acc)
    a = _mm256_setzero_ps();
  const uint64_t per_stream = (end - begin) / streams / 16 * 16;
  for (uint64_t i = 0; i < per_stream; i += 16) {
    for (int s = 0; s < streams; ++s) {
      const float* p = data + begin + s * per_stream + i;
      acc[(2 * s) & 7] = _mm256_add_ps(acc[(2 * s) & 7], _mm256_load_ps(p));
      acc[(2 * s + 1) & 7] = _mm256_add_ps(acc[(2 * s + 1) & 7], _mm256_load_ps(p + 8));
    }
  }
  for (int j = 1; j < 8; ++j)
    acc[0] = _mm256_add_ps(acc[0], acc[j]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc[0]);
  float sum = 0;
  for (float v : lanes)
    sum += v;
  for (uint64_t i = begin + streams * per_stream; i < end; ++i)
    sum += data[i];
  return sum;
}

MG_BENCH_AVX2 void TriadRange(float* a, const float* b, const float* c, float s, uint64_t begin,
                              uint64_t end) {
  const __m256 sv = _mm256_set1_ps(s);
  uint64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    _mm256_store_ps(a + i, _mm256_fmadd_ps(sv, _mm256_load_ps(c + i), _mm256_load_ps(b + i)));
  }
  for (; i < end; ++i)
    a[i] = b[i] + s * c[i];
}

// Returns a value derived from the chains so the loop cannot be dropped.
MG_BENCH_AVX2 float FmaChains(int64_t iterations) {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j)
    acc[j] = _mm256_set1_ps(static_cast<float>(j));
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int j = 0; j < 12; ++j)
      acc[j] = _mm256_fmadd_ps(acc[j], b, c);
  }
  for (int j = 1; j < 12; ++j)
    acc[0] = _mm256_add_ps(acc[0], acc[j]);
  return _mm256_cvtss_f32(acc[0]);
}

MG_BENCH_AVX512 float FmaChainsAvx512(int64_t iterations) {
  __m512 acc[12];
  for (int j = 0; j < 12; ++j)
    acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int j = 0; j < 12; ++j)
      acc[j] = _mm512_fmadd_ps(acc[j], b, c);
  }
  for (int j = 1; j < 12; ++j)
    acc[0] = _mm512_add_ps(acc[0], acc[j]);
  return _mm512_cvtss_f32(acc[0]);
}

// GFLOP/s of `chains` (lanes * 2 flops per FMA * 12 chains per iteration), all threads.
double PeakOf(float (*chains)(int64_t), double flops_per_iteration, int threads, int reps) {
  const int64_t iterations = 20'000'000;
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    int used = 1;
    float total = 0;
    const double start = Now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      used = omp_get_num_threads();
      total += chains(iterations);
    }
    const double seconds = Now() - start;
    sink = sink + total;
    best = std::max(best,
                    used * static_cast<double>(iterations) * flops_per_iteration / seconds / 1e9);
  }
  return best;
}

// Thread t's share [begin, end) of count, in multiples of 64 elements.
void Share(uint64_t count, int t, int threads, uint64_t* begin, uint64_t* end) {
  const uint64_t blocks = count / 64;
  *begin = blocks * t / threads * 64;
  *end = t + 1 == threads ? count : blocks * (t + 1) / threads * 64;
}

float Silu(float a) {
  return a / (1.0f + std::exp(-a));
}

}  // namespace

double MeasureReadBandwidth(int threads, uint64_t bytes, int reps, int streams) {
  const uint64_t count = bytes / 4;
  Buffer data = AllocateTouched(count, threads, 1.0f);
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    float total = 0;
    const double start = Now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      uint64_t begin, end;
      Share(count, omp_get_thread_num(), omp_get_num_threads(), &begin, &end);
      total += SumRange(data.get(), begin, end, streams);
    }
    const double seconds = Now() - start;
    sink = sink + total;
    best = std::max(best, static_cast<double>(count) * 4 / seconds / 1e9);
  }
  return best;
}

double MeasureBestReadBandwidth(int threads, uint64_t bytes, int reps) {
  double best = 0;
  for (int streams : {1, 4, 8})
    best = std::max(best, MeasureReadBandwidth(threads, bytes, reps, streams));
  return best;
}

double MeasureTriadBandwidth(int threads, uint64_t bytes, int reps) {
  const uint64_t count = bytes / 4;
  Buffer a = AllocateTouched(count, threads, 0.0f);
  Buffer b = AllocateTouched(count, threads, 1.0f);
  Buffer c = AllocateTouched(count, threads, 2.0f);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double start = Now();
#pragma omp parallel num_threads(threads)
    {
      uint64_t begin, end;
      Share(count, omp_get_thread_num(), omp_get_num_threads(), &begin, &end);
      TriadRange(a.get(), b.get(), c.get(), 3.0f, begin, end);
    }
    const double seconds = Now() - start;
    best = std::max(best, 3.0 * static_cast<double>(count) * 4 / seconds / 1e9);
  }
  return best;
}

double MeasurePeakFma(int threads, int reps) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
  return PeakOf(FmaChains, 12 * 16, threads, reps);
}

double MeasurePeakFmaAvx512(int threads, int reps) {
  if (static_cast<int>(DetectedCpuIsa()) < static_cast<int>(CpuIsa::kAvx512)) return 0;
  return PeakOf(FmaChainsAvx512, 12 * 32, threads, reps);
}

#ifdef MOEGRAPH_HAVE_OPENBLAS
bool HaveOpenBlas() {
  return true;
}

double OpenBlasMoeSeconds(const std::vector<BlasExpert>& experts, const std::vector<float>& x,
                          int64_t hidden, int64_t inter, int threads, int reps) {
  openblas_set_num_threads(threads);
  int64_t max_rows = 0;
  for (const BlasExpert& e : experts)
    max_rows = std::max(max_rows, e.rows);
  std::vector<float> g(max_rows * inter), u(max_rows * inter), y(max_rows * hidden);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double start = Now();
    const float* xe = x.data();
    for (const BlasExpert& e : experts) {
      if (e.rows == 0) continue;
      const int m = static_cast<int>(e.rows), n = static_cast<int>(inter),
                k = static_cast<int>(hidden);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, xe, k, e.gate.data(), k,
                  0.0f, g.data(), n);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, xe, k, e.up.data(), k,
                  0.0f, u.data(), n);
      for (int64_t i = 0; i < e.rows * inter; ++i)
        g[i] = Silu(g[i]) * u[i];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0f, g.data(), n,
                  e.down.data(), n, 0.0f, y.data(), k);
      xe += e.rows * hidden;
    }
    best = std::min(best, Now() - start);
  }
  return best;
}

double OpenBlasSgemmSeconds(int64_t m, int64_t n, int64_t k, int threads, int reps) {
  openblas_set_num_threads(threads);
  std::vector<float> a(m * k, 0.5f), b(n * k, 0.25f), c(m * n);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double start = Now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a.data(), static_cast<int>(k), b.data(),
                static_cast<int>(k), 0.0f, c.data(), static_cast<int>(n));
    best = std::min(best, Now() - start);
  }
  return best;
}
#else
bool HaveOpenBlas() {
  return false;
}
double OpenBlasMoeSeconds(const std::vector<BlasExpert>&, const std::vector<float>&, int64_t,
                          int64_t, int, int) {
  return 0;
}
double OpenBlasSgemmSeconds(int64_t, int64_t, int64_t, int, int) {
  return 0;
}
#endif

}  // namespace moegraph::bench
