// Reference dense kernels: embedding lookup, elementwise ops and matmuls.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::IsWeightDType;
using ref_detail::MatrixOf;
using ref_detail::NumRows;
using ref_detail::RowSize;
using ref_detail::Silu;

// RefMlp computes its [I] hidden row in chunks of this many values on the stack.
constexpr int64_t kMlpChunk = 4096;

// Checks that w is a weight [N, K] usable against rows of K values.
void CheckWeight(const char* kernel, const TensorArg& w, int64_t n, int64_t k) {
  MG_KERNEL_CONTRACT(
      ref_detail::IsMatmulWeight(w) && w.rank == 2 && w.shape[0] == n && w.shape[1] == k, kernel,
      "weight must be f32/bf16/f16 or block-scaled fp8 [N, K] matching x "
      "and out");
}

}  // namespace

void RefEmbedding(const KernelArgs& args) {
  const int32_t* tokens = args.in[0].as<const int32_t>();
  const TensorArg& table = args.in[1];
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  const int64_t vocab = table.dim(0);
  MG_KERNEL_CONTRACT(IsWeightDType(table.dtype) && table.rank == 2 && table.dim(1) == hidden &&
                         args.in[0].numel() == num_rows,
                     "embedding", "table must be [V, H] and tokens [T] for out [T, H]");
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* row = out + t * hidden;
      const int64_t id = tokens[t];
      if (id < 0 || id >= vocab) {
        std::fill(row, row + hidden, 0.0f);
        continue;
      }
      for (int64_t c = 0; c < hidden; ++c) {
        row[c] = ref_detail::LoadWeight(table.data, table.dtype, id * hidden + c);
      }
    }
  });
}

void RefAdd(const KernelArgs& args) {
  const float* a = args.in[0].as<const float>();
  const float* b = args.in[1].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t n = args.out[0].numel();
  ParallelFor(args.num_threads, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = a[i] + b[i];
  });
}

void RefBiasAdd(const KernelArgs& args) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& bias = args.in[1];
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  MG_KERNEL_CONTRACT(
      IsWeightDType(bias.dtype) && bias.rank == 1 && bias.shape[0] == n && RowSize(args.in[0]) == n,
      "bias_add", "bias must be f32/bf16/f16 [N] matching x and out [R, N]");
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        out[r * n + c] = x[r * n + c] + ref_detail::LoadWeight(bias.data, bias.dtype, c);
      }
    }
  });
}

void RefSigmoidGateMul(const KernelArgs& args) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& w = args.in[1];
  const float* y = args.in[2].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t k = RowSize(args.in[0]);
  CheckWeight("sigmoid_gate_mul", w, 1, k);
  MG_KERNEL_CONTRACT(NumRows(args.in[0]) == num_rows && NumRows(args.in[2]) == num_rows &&
                         RowSize(args.in[2]) == n,
                     "sigmoid_gate_mul", "x [R, K], y [R, N] and out [R, N] must share R");
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float gate = 1.0f / (1.0f + std::exp(-MatrixOf(w).Dot(x + r * k, 0, 0, k)));
      for (int64_t c = 0; c < n; ++c)
        out[r * n + c] = gate * y[r * n + c];
    }
  });
}

void RefSiluMul(const KernelArgs& args) {
  const float* a = args.in[0].as<const float>();
  const float* b = args.in[1].as<const float>();
  float* out = args.out[0].as<float>();
  const int64_t n = args.out[0].numel();
  ParallelFor(args.num_threads, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = Silu(a[i]) * b[i];
  });
}

void RefLinear(const KernelArgs& args) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& w = args.in[1];
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t k = RowSize(args.in[0]);
  CheckWeight("linear", w, n, k);
  const ref_detail::WeightMatrix wm = MatrixOf(w);
  // (row, output column) pairs so that a single decode row still uses every thread.
  ParallelFor(args.num_threads, num_rows * n, [&](int64_t begin, int64_t end) {
    for (int64_t i_flat = begin; i_flat < end; ++i_flat) {
      const int64_t r = i_flat / n, j = i_flat % n;
      out[r * n + j] = wm.MatmulDot(x + r * k, j, 0, k);
    }
  });
}

void RefLinearSiluMul(const KernelArgs& args) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& wg = args.in[1];
  const TensorArg& wu = args.in[2];
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t n = RowSize(args.out[0]);
  const int64_t k = RowSize(args.in[0]);
  CheckWeight("linear_silu_mul", wg, n, k);
  CheckWeight("linear_silu_mul", wu, n, k);
  const ref_detail::WeightMatrix gm = MatrixOf(wg), um = MatrixOf(wu);
  ParallelFor(args.num_threads, num_rows * n, [&](int64_t begin, int64_t end) {
    for (int64_t i_flat = begin; i_flat < end; ++i_flat) {
      const int64_t r = i_flat / n, j = i_flat % n;
      {
        const float gate = gm.MatmulDot(x + r * k, j, 0, k);
        const float up = um.MatmulDot(x + r * k, j, 0, k);
        out[r * n + j] = Silu(gate) * up;
      }
    }
  });
}

void RefMlp(const KernelArgs& args) {
  const float* x = args.in[0].as<const float>();
  const TensorArg& gate = args.in[1];
  const TensorArg& up = args.in[2];
  const TensorArg& down = args.in[3];
  float* out = args.out[0].as<float>();
  const int64_t num_rows = NumRows(args.out[0]);
  const int64_t hidden = RowSize(args.out[0]);
  const int64_t inter = gate.dim(0);
  MG_KERNEL_CONTRACT(RowSize(args.in[0]) == hidden, "mlp", "x and out must have H columns");
  CheckWeight("mlp", gate, inter, hidden);
  CheckWeight("mlp", up, inter, hidden);
  CheckWeight("mlp", down, hidden, inter);
  const ref_detail::WeightMatrix gm = MatrixOf(gate), um = MatrixOf(up), dm = MatrixOf(down);
  const bool has_bias = args.num_in == 7;
  MG_KERNEL_CONTRACT(args.num_in == 4 || has_bias, "mlp",
                     "takes x, gate, up, down and no biases or all three");
  if (has_bias) {
    const TensorArg* biases[] = {&args.in[4], &args.in[5], &args.in[6]};
    for (int i = 0; i < 3; ++i) {
      const TensorArg& b = *biases[i];
      MG_KERNEL_CONTRACT(
          IsWeightDType(b.dtype) && b.rank == 1 && b.shape[0] == (i < 2 ? inter : hidden), "mlp",
          "biases must be f32/bf16/f16 gate [I], up [I], down [H]");
    }
  }
  // The bias of output index i, or 0 without biases.
  auto bias = [&](int which, int64_t i) {
    return has_bias ? ref_detail::LoadWeight(args.in[4 + which].data, args.in[4 + which].dtype, i)
                    : 0.0f;
  };
  // mlp needs ForwardMeta: its rows are tokens and padding rows stay zero.
  const int64_t num_real = ref_detail::NumRealRows(args, num_rows);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* out_row = out + r * hidden;
      std::fill(out_row, out_row + hidden, 0.0f);
      if (r >= num_real) continue;
      const float* x_row = x + r * hidden;
      // down(h) accumulated over chunks of h so the hidden row needs no heap.
      float h[kMlpChunk];
      for (int64_t i0 = 0; i0 < inter; i0 += kMlpChunk) {
        const int64_t len = std::min(kMlpChunk, inter - i0);
        for (int64_t i = 0; i < len; ++i) {
          const float g = gm.MatmulDot(x_row, i0 + i, 0, hidden) + bias(0, i0 + i);
          const float u = um.MatmulDot(x_row, i0 + i, 0, hidden) + bias(1, i0 + i);
          h[i] = Silu(g) * u;
        }
        for (int64_t c = 0; c < hidden; ++c) {
          out_row[c] += dm.MatmulDot(h, c, i0, len);
        }
      }
      if (has_bias) {
        for (int64_t c = 0; c < hidden; ++c)
          out_row[c] += bias(2, c);
      }
    }
  });
}

}  // namespace moegraph
