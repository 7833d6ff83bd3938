// The machine's own limits, measured in the benchmark run that reports
// against them: streaming read and triad bandwidth, peak AVX2 and AVX-512 FMA throughput
// and OpenBLAS sgemm (the compute-bound baseline).
#pragma once

#include <cstdint>
#include <vector>

namespace moegraph::bench {

// GB/s (1e9 bytes/s) reading `bytes` of floats (a sum, all threads, each its
// own contiguous share read as `streams` interleaved sequential streams);
// best of `reps`. One stream per thread is STREAM's pattern; a GEMV reads
// several weight rows at once, which this machine serves faster.
double MeasureReadBandwidth(int threads, uint64_t bytes, int reps, int streams);

// The best of MeasureReadBandwidth over 1, 4 and 8 streams per thread: the
// read bandwidth a bandwidth-bound kernel is measured against.
double MeasureBestReadBandwidth(int threads, uint64_t bytes, int reps);

// GB/s of the STREAM triad a = b + s * c over three arrays of `bytes` each,
// counted as STREAM does (3 * bytes per pass, write-allocate not counted); best of `reps`.
double MeasureTriadBandwidth(int threads, uint64_t bytes, int reps);

// GFLOP/s of independent AVX2 FMA chains (12 per thread, registers only),
// all threads; best of `reps`. 0 when the processor has no AVX2/FMA.
double MeasurePeakFma(int threads, int reps);

// The same with AVX-512 (12 zmm chains per thread). 0 when the processor has no AVX-512.
double MeasurePeakFmaAvx512(int threads, int reps);

// One expert's routed rows and fp32 weight copies for the OpenBLAS baseline.
struct BlasExpert {
  int64_t rows = 0;             // tokens routed to the expert
  std::vector<float> gate, up;  // [inter, hidden]
  std::vector<float> down;      // [hidden, inter]
};

// True when built with OpenBLAS (cblas_sgemm).
bool HaveOpenBlas();

// Seconds for one pass of the per-expert OpenBLAS baseline: for each expert,
// G = X Wg^T, U = X Wu^T (sgemm, X its routed rows [rows, hidden]), H =
// silu(G) * U, Y = H Wd^T; `x` holds every expert's rows back to back. Best
// of `reps`; `threads` OpenBLAS threads.
double OpenBlasMoeSeconds(const std::vector<BlasExpert>& experts, const std::vector<float>& x,
                          int64_t hidden, int64_t inter, int threads, int reps);

// Seconds for one cblas_sgemm C[m, n] = A[m, k] B[n, k]^T, best of `reps`.
double OpenBlasSgemmSeconds(int64_t m, int64_t n, int64_t k, int threads, int reps);

}  // namespace moegraph::bench
