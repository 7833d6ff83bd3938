// Integer dot products for int8 and int4 weights (private to kernels/cpu): the decode rows
// of the matmul kernels whose weight rounds its input to int8 (RoundsInputToInt8 in
// ir/quant.h; the prefill rows' integer GEMM is q8_gemm.cc). Each input row is rounded once per
// kernel call (Q8Rows); each weight row's dot product then reads bytes and multiplies bytes, 32 per
// instruction: VNNI's vpdpbusd where the CPU has AVX512-VNNI and the AVX-512 path is selected,
// vpmaddubsw + vpmaddwd on AVX2. Both give the same exact integers, so results never depend on the
// ISA; each output is one weight row's dot product, so they never depend on the thread split
// either.
//
// Per weight row: for every block of 32 inputs an exact int32 product per group of 4
// inputs (a lane), converted to f32 and multiplied by the block's weight scale times its
// input scale into 8 f32 lane sums, added up by Hsum. The reference (WeightMatrix::MatmulDot)
// sums whole blocks in order: the two differ by f32 rounding only.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/simd_gemm.h"

namespace moegraph::simd {

// One input row rounded to int8 (RoundToQ8Block per block of 32), laid out for the dot
// products of one weight type:
//   kInt8: q[k] in input order;
//   kInt4: per pair of blocks (2p, 2p + 1) 64 bytes: the even inputs of block 2p (16), of
//          block 2p + 1 (16), then their odd inputs, as the low and high nibbles of the
//          weights' 32 bytes hold them; a last odd block has zeros for its partner, and
//          corr[8p + l] is 8 times the sum of the inputs lane l of the pair multiplies, the
//          weights' + 8 taken back out.
// d[b] is block b's scale, zero past the last block up to a multiple of 8; for kInt4,
// block_corr[b] is 8 times block b's input sum (its lanes' corr added up, for the GEMM).
struct Q8Row {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  const int32_t* corr = nullptr;        // kInt4 only
  const int32_t* block_corr = nullptr;  // kInt4 only
};

// Input rows rounded to int8 for weights of one type.
class Q8Rows {
 public:
  // Rounds rows [0, num_rows) of x (k values each, k a multiple of 32, rows k apart) for
  // weights of `wtype` (kInt8 or kInt4) on up to num_threads threads, with AVX2 (bit for bit
  // RoundToQ8Block) unless the reference kernels are selected.
  void Round(WType wtype, const float* x, int64_t num_rows, int64_t k, int num_threads);

  Q8Row Row(int64_t r) const {
    if (corr_.empty()) return {q_.data() + r * q_stride_, d_.data() + r * d_stride_};
    return {q_.data() + r * q_stride_, d_.data() + r * d_stride_, corr_.data() + r * corr_stride_,
            block_corr_.data() + r * d_stride_};
  }

 private:
  std::vector<int8_t> q_;
  std::vector<float> d_;
  std::vector<int32_t> corr_, block_corr_;
  int64_t q_stride_ = 0, d_stride_ = 0, corr_stride_ = 0;
};

// The calling thread's Q8Rows: kernels round their inputs into it before they split the
// work, and it keeps its capacity from call to call.
Q8Rows& ThreadQ8Rows();

// For a weight that rounds its input to int8 (RoundsInputToInt8(quant, k)): the num_rows
// rows of x rounded into ThreadQ8Rows() for `wtype`; else null (the input stays f32).
const Q8Rows* RoundedInputs(const WeightQuant& quant, WType wtype, const float* x, int64_t num_rows,
                            int64_t k, int num_threads);

// Columns [c0, c1) of out_rows[m][j] = x_rows[m] . wg[j], or silu(x_rows[m] . wg[j]) *
// (x_rows[m] . wu[j]) when wu is set, for m < mr, with int8 / int4 weights [n, k] of
// `wtype` and their scales, by integer dot products.
void GemvColumnsQ8(const Q8Row* x_rows, float* const* out_rows, int mr, WType wtype, const void* wg,
                   const void* wu, int64_t k, int64_t n, int64_t c0, int64_t c1,
                   const WeightScales& scales);

}  // namespace moegraph::simd
