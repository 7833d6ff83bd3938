// Checks every reference CPU kernel against a few-line naive implementation
// (double accumulation) at odd sizes, including padding rows, invalid ids and
// the agreement of the fused MoE/MLP kernels with their decompositions.
#include "kernels/cpu/reference_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "support/half.h"
#include "tests/testing/kv_cache_view.h"
#include "tests/testing/tensors.h"

namespace moegraph {
namespace {

// Odd sizes so that no loop hides behind a power of two.
constexpr int64_t kT = 7;     // token rows (capacity)
constexpr int64_t kReal = 5;  // real tokens among them
constexpr int64_t kH = 19;
constexpr int64_t kK = 37;
constexpr int64_t kN = 23;
constexpr int64_t kI = 11;
constexpr int64_t kE = 5;
constexpr int64_t kTopK = 3;
constexpr int kThreads = 3;
constexpr double kTol = 1e-4;

const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int32_t kUnwritten = 12345;

// ---- Tensors, weights, metadata ----------------------------------------------

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  return testing::RandomFloats(n, seed, scale);
}

// Output buffers start poisoned so a kernel must write every element.
std::vector<float> Poisoned(int64_t n) {
  return std::vector<float>(n, kNaN);
}
std::vector<int32_t> PoisonedI32(int64_t n) {
  return std::vector<int32_t>(n, kUnwritten);
}

TensorArg Arg(const void* data, DType dtype, std::initializer_list<int64_t> shape) {
  return testing::HostArg(data, dtype, shape);
}
TensorArg F32(const std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Arg(v.data(), DType::kF32, shape);
}
TensorArg I32(const std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  return Arg(v.data(), DType::kI32, shape);
}

// A weight stored as f32, bf16 or f16; `values` holds what the kernel reads
// after widening, for the naive references.
struct Weight {
  DType dtype = DType::kF32;
  std::vector<float> values;
  std::vector<uint16_t> bits;

  const void* data() const {
    return dtype == DType::kF32 ? static_cast<const void*>(values.data()) : bits.data();
  }
  TensorArg arg(std::initializer_list<int64_t> shape) const { return Arg(data(), dtype, shape); }
};

Weight MakeWeight(int64_t n, DType dtype, uint32_t seed, float scale = 0.5f) {
  Weight w{dtype, Random(n, seed, scale), {}};
  if (dtype == DType::kF32) return w;
  w.bits.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::kBF16) {
      w.bits[i] = F32ToBf16(w.values[i]);
      w.values[i] = Bf16ToF32(w.bits[i]);
    } else {
      w.bits[i] = F32ToF16(w.values[i]);
      w.values[i] = F16ToF32(w.bits[i]);
    }
  }
  return w;
}

// A stacked [E, N, K] weight with each expert in its own allocation.
struct StackedWeight {
  int64_t num_experts = 0, rows = 0, cols = 0;
  std::vector<Weight> experts;
  mutable std::vector<const void*> pointers;

  TensorArg arg() const {
    pointers.clear();
    for (const Weight& w : experts)
      pointers.push_back(w.data());
    TensorArg a = Arg(nullptr, experts[0].dtype, {num_experts, rows, cols});
    a.expert_data = pointers.data();
    return a;
  }
  float at(int64_t e, int64_t r, int64_t c) const { return experts[e].values[r * cols + c]; }
};

StackedWeight MakeStacked(int64_t e, int64_t n, int64_t k, DType dtype, uint32_t seed) {
  StackedWeight w{e, n, k, {}, {}};
  for (int64_t i = 0; i < e; ++i)
    w.experts.push_back(MakeWeight(n * k, dtype, seed + 97 * i));
  return w;
}

// One sequence of a step: tokens already cached, tokens new this step and the
// cache blocks it owns (in block-table order).
struct SeqSpec {
  int32_t num_cached = 0;
  int32_t num_new = 0;
  std::vector<int32_t> blocks;
};

// Owns the arrays behind a ForwardMetaView.
class Meta {
 public:
  Meta(int32_t token_capacity, int32_t seq_capacity, int32_t max_blocks_per_seq, int32_t block_size,
       const std::vector<SeqSpec>& seqs)
      : token_capacity_(token_capacity),
        seq_capacity_(seq_capacity),
        max_blocks_per_seq_(max_blocks_per_seq),
        num_seqs_(static_cast<int32_t>(seqs.size())),
        seq_lens_this_time(seq_capacity, 0),
        seq_lens_encoder(seq_capacity, 0),
        seq_lens_decoder(seq_capacity, 0),
        cu_seqlens_q(seq_capacity + 1, 0),
        batch_id_per_token(token_capacity, -1),
        positions(token_capacity, 0),
        block_tables(static_cast<size_t>(seq_capacity) * max_blocks_per_seq, 0),
        slot_mapping(token_capacity, -1) {
    int32_t t = 0;
    for (int32_t s = 0; s < num_seqs_; ++s) {
      const SeqSpec& seq = seqs[s];
      seq_lens_this_time[s] = seq.num_new;
      seq_lens_encoder[s] = seq.num_cached == 0 ? seq.num_new : 0;
      seq_lens_decoder[s] = seq.num_cached;
      cu_seqlens_q[s + 1] = cu_seqlens_q[s] + seq.num_new;
      for (size_t b = 0; b < seq.blocks.size() && b < size_t(max_blocks_per_seq); ++b) {
        block_tables[s * max_blocks_per_seq + b] = seq.blocks[b];
      }
      for (int32_t i = 0; i < seq.num_new; ++i, ++t) {
        const int32_t position = seq.num_cached + i;
        batch_id_per_token[t] = s;
        positions[t] = position;
        if (block_size > 0 && size_t(position / block_size) < seq.blocks.size()) {
          slot_mapping[t] = seq.blocks[position / block_size] * block_size + position % block_size;
        }
      }
    }
    for (int32_t s = num_seqs_; s < seq_capacity; ++s)
      cu_seqlens_q[s + 1] = cu_seqlens_q[s];
    num_tokens_ = t;
  }

  // A single sequence of `num_tokens` prompt tokens, no cache.
  static Meta Tokens(int32_t num_tokens, int32_t token_capacity) {
    return Meta(token_capacity, 1, 0, 0, {{0, num_tokens, {}}});
  }

  const ForwardMetaView* view() {
    view_ = ForwardMetaView{num_tokens_,
                            num_seqs_,
                            token_capacity_,
                            seq_capacity_,
                            max_blocks_per_seq_,
                            seq_lens_this_time.data(),
                            seq_lens_encoder.data(),
                            seq_lens_decoder.data(),
                            cu_seqlens_q.data(),
                            batch_id_per_token.data(),
                            positions.data(),
                            block_tables.data(),
                            slot_mapping.data()};
    return &view_;
  }

 private:
  int32_t token_capacity_, seq_capacity_, max_blocks_per_seq_, num_seqs_, num_tokens_ = 0;
  ForwardMetaView view_;

 public:
  std::vector<int32_t> seq_lens_this_time, seq_lens_encoder, seq_lens_decoder, cu_seqlens_q,
      batch_id_per_token, positions, block_tables, slot_mapping;
};

// What a kernel call sees besides its tensors and parameters.
struct CallContext {
  const ForwardMetaView* meta = nullptr;
  const KvCacheView* kv = nullptr;
};

KernelArgs MakeArgs(const std::vector<TensorArg>& in, const std::vector<TensorArg>& out,
                    const CallContext& context) {
  KernelArgs args;
  args.meta = context.meta;
  args.kv = context.kv;
  args.in = in.data();
  args.num_in = static_cast<int>(in.size());
  args.out = out.data();
  args.num_out = static_cast<int>(out.size());
  args.num_threads = kThreads;
  return args;
}

// A kernel of an op without parameters.
void RunKernel(KernelFn kernel, const std::vector<TensorArg>& in, const std::vector<TensorArg>& out,
               const CallContext& context = {}) {
  kernel(MakeArgs(in, out, context));
}

template <OpParamsStruct P>
void RunKernel(KernelFn kernel, const std::vector<TensorArg>& in, const std::vector<TensorArg>& out,
               const P& params, const CallContext& context = {}) {
  KernelArgs args = MakeArgs(in, out, context);
  SetParams(args, params);
  kernel(args);
}

// ---- Comparisons -------------------------------------------------------------

// Reports the first element outside tolerance (relative, absolute near zero).
template <typename Want>
void ExpectClose(const std::vector<float>& got, const std::vector<Want>& want, double tol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double w = static_cast<double>(want[i]);
    if (!(std::abs(got[i] - w) <= tol * (1.0 + std::abs(w)))) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", want " << w;
      return;
    }
  }
}

void ExpectZeroRows(const std::vector<float>& v, int64_t row_begin, int64_t row_end,
                    int64_t row_size, const std::string& what) {
  for (int64_t i = row_begin * row_size; i < row_end * row_size; ++i) {
    if (v[i] != 0.0f) {
      ADD_FAILURE() << what << ": padding element " << i << " is " << v[i] << ", want 0";
      return;
    }
  }
}

// ---- Naive references (double) ------------------------------------------------

double NaiveSilu(double a) {
  return a / (1.0 + std::exp(-a));
}

// y[r, n] = sum_k x[r, k] w[n, k] for the first `rows` rows; other rows 0.
std::vector<double> NaiveLinear(const std::vector<float>& x, const std::vector<float>& w,
                                int64_t total_rows, int64_t rows, int64_t k, int64_t n) {
  std::vector<double> y(total_rows * n, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t c = 0; c < k; ++c)
        y[r * n + j] += double(x[r * k + c]) * w[j * k + c];
    }
  }
  return y;
}

std::vector<double> NaiveRmsNorm(const std::vector<float>& x, const std::vector<float>& w,
                                 int64_t total_rows, int64_t rows, int64_t row_size, float eps) {
  const int64_t d = static_cast<int64_t>(w.size());
  std::vector<double> y(total_rows * row_size, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = r * row_size; g < (r + 1) * row_size; g += d) {
      double sum_sq = 0.0;
      for (int64_t i = 0; i < d; ++i)
        sum_sq += double(x[g + i]) * x[g + i];
      const double inv_rms = 1.0 / std::sqrt(sum_sq / d + eps);
      for (int64_t i = 0; i < d; ++i)
        y[g + i] = x[g + i] * inv_rms * w[i];
    }
  }
  return y;
}

// HF routing: softmax, top-k by descending probability (ties: lower id).
struct Routes {
  std::vector<int32_t> ids;
  std::vector<double> weights;
};

Routes NaiveRoute(const std::vector<double>& logits, int64_t top_k, bool norm) {
  const int64_t e = static_cast<int64_t>(logits.size());
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(e);
  double sum = 0.0;
  for (int64_t i = 0; i < e; ++i)
    sum += p[i] = std::exp(logits[i] - max_logit);
  for (double& v : p)
    v /= sum;
  std::vector<int32_t> order(e);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  Routes routes{std::vector<int32_t>(top_k, -1), std::vector<double>(top_k, 0.0)};
  double chosen = 0.0;
  for (int64_t j = 0; j < std::min(top_k, e); ++j) {
    routes.ids[j] = order[j];
    chosen += routes.weights[j] = p[order[j]];
  }
  if (norm) {
    for (double& w : routes.weights)
      w /= chosen;
  }
  return routes;
}

// TopkRouteParams' rule written out directly, in double: scores, choice = scores + bias, the
// kept groups by a stable sort of the group scores, a stable sort of the kept experts.
Routes NaiveGeneralRoute(const std::vector<double>& logits, const std::vector<float>& bias,
                         const TopkRouteParams& p) {
  const int64_t e = static_cast<int64_t>(logits.size());
  std::vector<double> score(e);
  if (p.scoring == static_cast<int64_t>(RouteScoring::kSigmoid)) {
    for (int64_t i = 0; i < e; ++i)
      score[i] = 1.0 / (1.0 + std::exp(-logits[i]));
  } else {
    const double max_logit = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (int64_t i = 0; i < e; ++i)
      sum += score[i] = std::exp(logits[i] - max_logit);
    for (double& v : score)
      v /= sum;
  }
  std::vector<double> choice = score;
  for (int64_t i = 0; i < static_cast<int64_t>(bias.size()); ++i)
    choice[i] += bias[i];
  const int64_t groups = p.num_groups, size = e / groups;
  const int64_t kept = p.top_k_groups > 0 ? p.top_k_groups : groups;
  std::vector<double> group_score(groups);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<double> members(choice.begin() + g * size, choice.begin() + (g + 1) * size);
    std::sort(members.rbegin(), members.rend());
    group_score[g] = size >= 2 ? members[0] + members[1] : members[0];
  }
  std::vector<int64_t> group_order(groups);
  std::iota(group_order.begin(), group_order.end(), 0);
  std::stable_sort(group_order.begin(), group_order.end(),
                   [&](int64_t a, int64_t b) { return group_score[a] > group_score[b]; });
  std::vector<bool> allowed(e, false);
  for (int64_t r = 0; r < kept; ++r) {
    for (int64_t i = 0; i < size; ++i)
      allowed[group_order[r] * size + i] = true;
  }
  std::vector<int32_t> order;
  for (int32_t i = 0; i < e; ++i) {
    if (allowed[i]) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return choice[a] > choice[b]; });
  Routes routes{std::vector<int32_t>(p.top_k, -1), std::vector<double>(p.top_k, 0.0)};
  double chosen = 0.0;
  for (int64_t j = 0; j < std::min<int64_t>(p.top_k, order.size()); ++j) {
    routes.ids[j] = order[j];
    chosen += routes.weights[j] = score[order[j]];
  }
  for (double& w : routes.weights) {
    if (p.norm_topk_prob) w /= std::max(chosen, p.norm_min);
    w *= p.routed_scaling_factor;
  }
  return routes;
}

// h = silu(gate_e x) * (up_e x), y = down_e h for one row of x.
std::vector<double> NaiveExpert(const float* x, const StackedWeight& gate, const StackedWeight& up,
                                const StackedWeight& down, int64_t e) {
  const int64_t hidden = gate.cols, inter = gate.rows;
  std::vector<double> h(inter, 0.0), y(hidden, 0.0);
  for (int64_t i = 0; i < inter; ++i) {
    double g = 0.0, u = 0.0;
    for (int64_t c = 0; c < hidden; ++c) {
      g += double(x[c]) * gate.at(e, i, c);
      u += double(x[c]) * up.at(e, i, c);
    }
    h[i] = NaiveSilu(g) * u;
  }
  for (int64_t c = 0; c < hidden; ++c) {
    for (int64_t i = 0; i < inter; ++i)
      y[c] += down.at(e, c, i) * h[i];
  }
  return y;
}

class RefDTypeTest : public ::testing::TestWithParam<DType> {};

INSTANTIATE_TEST_SUITE_P(Weights, RefDTypeTest,
                         ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

// ---- Embedding, norms, elementwise --------------------------------------------

TEST_P(RefDTypeTest, EmbeddingLooksUpEveryRowAndZeroesInvalidIds) {
  constexpr int64_t kVocab = 11;
  const Weight table = MakeWeight(kVocab * kH, GetParam(), 1);
  const std::vector<int32_t> tokens = {3, 10, -1, 0, kVocab, 7, 2};  // -1, kVocab invalid
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefEmbedding, {I32(tokens, {kT}), table.arg({kVocab, kH})}, {F32(out, {kT, kH})});
  std::vector<double> want(kT * kH, 0.0);
  for (int64_t t = 0; t < kT; ++t) {
    if (tokens[t] < 0 || tokens[t] >= kVocab) continue;
    for (int64_t c = 0; c < kH; ++c)
      want[t * kH + c] = table.values[tokens[t] * kH + c];
  }
  ExpectClose(out, want, 0.0, "embedding");
}

TEST_P(RefDTypeTest, RmsNormNormalisesEachGroup) {
  constexpr int64_t kRow = 2 * kH;  // two groups of kH, as a per-head q/k norm
  constexpr float kEps = 1e-6f;
  const std::vector<float> x = Random(kT * kRow, 2, 3.0f);
  const Weight w = MakeWeight(kH, GetParam(), 3);
  std::vector<float> out = Poisoned(kT * kRow);
  RunKernel(RefRmsNorm, {F32(x, {kT, kRow}), w.arg({kH})}, {F32(out, {kT, kRow})},
            RmsNormParams{.eps = kEps});
  ExpectClose(out, NaiveRmsNorm(x, w.values, kT, kT, kRow, kEps), kTol, "rms_norm");

  // Without metadata every row is real, and rank 3 rows work the same way.
  std::vector<float> all = Poisoned(kT * kRow);
  RunKernel(RefRmsNorm, {F32(x, {kT, 2, kH}), w.arg({kH})}, {F32(all, {kT, 2, kH})},
            RmsNormParams{.eps = kEps});
  ExpectClose(all, NaiveRmsNorm(x, w.values, kT, kT, kRow, kEps), kTol, "rms_norm, no meta");
}

TEST_P(RefDTypeTest, AddRmsNormWritesSumAndNorm) {
  constexpr float kEps = 1e-5f;
  const std::vector<float> x = Random(kT * kK, 4);
  const std::vector<float> residual = Random(kT * kK, 5);
  const Weight w = MakeWeight(kK, GetParam(), 6);
  std::vector<float> sum = Poisoned(kT * kK), y = Poisoned(kT * kK);
  RunKernel(RefAddRmsNorm, {F32(x, {kT, kK}), F32(residual, {kT, kK}), w.arg({kK})},
            {F32(sum, {kT, kK}), F32(y, {kT, kK})}, RmsNormParams{.eps = kEps});
  std::vector<float> want_sum(kT * kK, 0.0f);
  for (int64_t i = 0; i < kT * kK; ++i)
    want_sum[i] = x[i] + residual[i];
  ExpectClose(sum, want_sum, 0.0, "sum");
  ExpectClose(y, NaiveRmsNorm(want_sum, w.values, kT, kT, kK, kEps), kTol, "norm");
}

TEST(RefKernelsTest, AddAndSiluMulAreElementwiseOverEveryRow) {
  std::vector<float> a = Random(kT * kN, 7, 30.0f), b = Random(kT * kN, 8);
  a[0] = -200.0f;  // exp overflow must still give silu = -0
  std::vector<float> sum = Poisoned(kT * kN), prod = Poisoned(kT * kN);
  RunKernel(RefAdd, {F32(a, {kT, kN}), F32(b, {kT, kN})}, {F32(sum, {kT, kN})});
  RunKernel(RefSiluMul, {F32(a, {kT, kN}), F32(b, {kT, kN})}, {F32(prod, {kT, kN})});
  std::vector<double> want_sum(kT * kN, 0.0), want_prod(kT * kN, 0.0);
  for (int64_t i = 0; i < kT * kN; ++i) {
    want_sum[i] = double(a[i]) + b[i];
    want_prod[i] = NaiveSilu(a[i]) * b[i];
  }
  ExpectClose(sum, want_sum, kTol, "add");
  ExpectClose(prod, want_prod, kTol, "silu_mul");
}

TEST_P(RefDTypeTest, BiasAddAddsTheBiasToEveryRow) {
  const std::vector<float> x = Random(kT * kN, 9, 3.0f);
  const Weight bias = MakeWeight(kN, GetParam(), 10);
  std::vector<float> out = Poisoned(kT * kN);
  // No metadata: bias_add has no padding rule, so every row (real or not) is x + b.
  RunKernel(RefBiasAdd, {F32(x, {kT, kN}), bias.arg({kN})}, {F32(out, {kT, kN})});
  std::vector<double> want(kT * kN, 0.0);
  for (int64_t r = 0; r < kT; ++r) {
    for (int64_t c = 0; c < kN; ++c)
      want[r * kN + c] = double(x[r * kN + c]) + bias.values[c];
  }
  ExpectClose(out, want, 1e-6, "bias_add");
}

TEST_P(RefDTypeTest, SigmoidGateMulScalesEveryRowByItsGate) {
  const std::vector<float> x = Random(kT * kK, 11, 2.0f);
  const Weight w = MakeWeight(kK, GetParam(), 12);
  const std::vector<float> y = Random(kT * kN, 13, 3.0f);
  std::vector<float> out = Poisoned(kT * kN);
  // No metadata: every row (real or not) is gated.
  RunKernel(RefSigmoidGateMul, {F32(x, {kT, kK}), w.arg({1, kK}), F32(y, {kT, kN})},
            {F32(out, {kT, kN})});
  std::vector<double> want(kT * kN, 0.0);
  for (int64_t r = 0; r < kT; ++r) {
    double dot = 0.0;
    for (int64_t c = 0; c < kK; ++c)
      dot += double(x[r * kK + c]) * w.values[c];
    const double gate = 1.0 / (1.0 + std::exp(-dot));
    for (int64_t c = 0; c < kN; ++c)
      want[r * kN + c] = gate * y[r * kN + c];
  }
  ExpectClose(out, want, 1e-5, "sigmoid_gate_mul");
}

// ---- Dense matmuls ------------------------------------------------------------

TEST_P(RefDTypeTest, LinearMatchesNaive) {
  const std::vector<float> x = Random(kT * kK, 9);
  const Weight w = MakeWeight(kN * kK, GetParam(), 10);
  std::vector<float> out = Poisoned(kT * kN);
  RunKernel(RefLinear, {F32(x, {kT, kK}), w.arg({kN, kK})}, {F32(out, {kT, kN})});
  ExpectClose(out, NaiveLinear(x, w.values, kT, kT, kK, kN), kTol, "linear");

  std::vector<float> all = Poisoned(kT * kN);
  RunKernel(RefLinear, {F32(x, {kT, kK}), w.arg({kN, kK})}, {F32(all, {kT, kN})});
  ExpectClose(all, NaiveLinear(x, w.values, kT, kT, kK, kN), kTol, "linear, no meta");
}

TEST_P(RefDTypeTest, LinearSiluMulMatchesNaiveAndDecomposition) {
  const std::vector<float> x = Random(kT * kK, 11);
  const Weight wg = MakeWeight(kN * kK, GetParam(), 12);
  const Weight wu = MakeWeight(kN * kK, GetParam(), 13);
  std::vector<float> fused = Poisoned(kT * kN);
  RunKernel(RefLinearSiluMul, {F32(x, {kT, kK}), wg.arg({kN, kK}), wu.arg({kN, kK})},
            {F32(fused, {kT, kN})});

  const std::vector<double> g = NaiveLinear(x, wg.values, kT, kT, kK, kN);
  const std::vector<double> u = NaiveLinear(x, wu.values, kT, kT, kK, kN);
  std::vector<double> want(kT * kN);
  for (size_t i = 0; i < want.size(); ++i)
    want[i] = NaiveSilu(g[i]) * u[i];
  ExpectClose(fused, want, kTol, "linear_silu_mul");

  std::vector<float> gate = Poisoned(kT * kN), up = Poisoned(kT * kN), h = Poisoned(kT * kN);
  RunKernel(RefLinear, {F32(x, {kT, kK}), wg.arg({kN, kK})}, {F32(gate, {kT, kN})});
  RunKernel(RefLinear, {F32(x, {kT, kK}), wu.arg({kN, kK})}, {F32(up, {kT, kN})});
  RunKernel(RefSiluMul, {F32(gate, {kT, kN}), F32(up, {kT, kN})}, {F32(h, {kT, kN})});
  ExpectClose(fused, h, 1e-6, "linear_silu_mul vs decomposition");
}

// I = 4099 crosses RefMlp's 4096-value hidden chunk.
class RefMlpTest : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(RefMlpTest, MatchesNaiveAndLinearChain) {
  const auto [dtype, inter] = GetParam();
  const std::vector<float> x = Random(kT * kH, 14);
  const Weight gate = MakeWeight(inter * kH, dtype, 15);
  const Weight up = MakeWeight(inter * kH, dtype, 16);
  const Weight down = MakeWeight(kH * inter, dtype, 17);
  Meta meta = Meta::Tokens(kReal, kT);
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefMlp,
            {F32(x, {kT, kH}), gate.arg({inter, kH}), up.arg({inter, kH}), down.arg({kH, inter})},
            {F32(out, {kT, kH})}, {.meta = meta.view()});

  const std::vector<double> g = NaiveLinear(x, gate.values, kT, kReal, kH, inter);
  const std::vector<double> u = NaiveLinear(x, up.values, kT, kReal, kH, inter);
  std::vector<double> want(kT * kH, 0.0);
  for (int64_t t = 0; t < kReal; ++t) {
    for (int64_t c = 0; c < kH; ++c) {
      for (int64_t i = 0; i < inter; ++i) {
        want[t * kH + c] +=
            down.values[c * inter + i] * NaiveSilu(g[t * inter + i]) * u[t * inter + i];
      }
    }
  }
  ExpectClose(out, want, kTol, "mlp");

  std::vector<float> gl = Poisoned(kT * inter), ul = Poisoned(kT * inter);
  std::vector<float> h = Poisoned(kT * inter), chain = Poisoned(kT * kH);
  RunKernel(RefLinear, {F32(x, {kT, kH}), gate.arg({inter, kH})}, {F32(gl, {kT, inter})});
  RunKernel(RefLinear, {F32(x, {kT, kH}), up.arg({inter, kH})}, {F32(ul, {kT, inter})});
  RunKernel(RefSiluMul, {F32(gl, {kT, inter}), F32(ul, {kT, inter})}, {F32(h, {kT, inter})});
  RunKernel(RefLinear, {F32(h, {kT, inter}), down.arg({kH, inter})}, {F32(chain, {kT, kH})});
  // mlp takes ForwardMeta and zeroes padding token rows; the chain's ops have
  // no ForwardMeta and compute every row.
  std::fill(chain.begin() + kReal * kH, chain.end(), 0.0f);
  ExpectClose(out, chain, 1e-5, "mlp vs linear chain");
}

// With biases: down(silu(gate x + bg) * (up x + bu)) + bd on the real rows, zeros on the
// padding rows, and the same as the moe-lower chain linear, bias_add, ... on the real rows.
TEST_P(RefMlpTest, BiasesMatchNaiveAndLinearBiasChain) {
  const auto [dtype, inter] = GetParam();
  const std::vector<float> x = Random(kT * kH, 24);
  const Weight gate = MakeWeight(inter * kH, dtype, 25);
  const Weight up = MakeWeight(inter * kH, dtype, 26);
  const Weight down = MakeWeight(kH * inter, dtype, 27);
  const Weight gate_bias = MakeWeight(inter, dtype, 28, 2.0f);
  const Weight up_bias = MakeWeight(inter, dtype, 29, 2.0f);
  const Weight down_bias = MakeWeight(kH, dtype, 30, 2.0f);
  Meta meta = Meta::Tokens(kReal, kT);
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefMlp,
            {F32(x, {kT, kH}), gate.arg({inter, kH}), up.arg({inter, kH}), down.arg({kH, inter}),
             gate_bias.arg({inter}), up_bias.arg({inter}), down_bias.arg({kH})},
            {F32(out, {kT, kH})}, {.meta = meta.view()});

  const std::vector<double> g = NaiveLinear(x, gate.values, kT, kReal, kH, inter);
  const std::vector<double> u = NaiveLinear(x, up.values, kT, kReal, kH, inter);
  std::vector<double> want(kT * kH, 0.0);
  for (int64_t t = 0; t < kReal; ++t) {
    for (int64_t c = 0; c < kH; ++c) {
      double sum = down_bias.values[c];
      for (int64_t i = 0; i < inter; ++i) {
        sum += down.values[c * inter + i] * NaiveSilu(g[t * inter + i] + gate_bias.values[i]) *
               (u[t * inter + i] + up_bias.values[i]);
      }
      want[t * kH + c] = sum;
    }
  }
  ExpectClose(out, want, kTol, "mlp with biases");

  std::vector<float> gl = Poisoned(kT * inter), ul = Poisoned(kT * inter);
  std::vector<float> h = Poisoned(kT * inter), dl = Poisoned(kT * kH), chain = Poisoned(kT * kH);
  RunKernel(RefLinear, {F32(x, {kT, kH}), gate.arg({inter, kH})}, {F32(gl, {kT, inter})});
  RunKernel(RefBiasAdd, {F32(gl, {kT, inter}), gate_bias.arg({inter})}, {F32(gl, {kT, inter})});
  RunKernel(RefLinear, {F32(x, {kT, kH}), up.arg({inter, kH})}, {F32(ul, {kT, inter})});
  RunKernel(RefBiasAdd, {F32(ul, {kT, inter}), up_bias.arg({inter})}, {F32(ul, {kT, inter})});
  RunKernel(RefSiluMul, {F32(gl, {kT, inter}), F32(ul, {kT, inter})}, {F32(h, {kT, inter})});
  RunKernel(RefLinear, {F32(h, {kT, inter}), down.arg({kH, inter})}, {F32(dl, {kT, kH})});
  RunKernel(RefBiasAdd, {F32(dl, {kT, kH}), down_bias.arg({kH})}, {F32(chain, {kT, kH})});
  std::fill(chain.begin() + kReal * kH, chain.end(), 0.0f);  // padding rows, as above
  ExpectClose(out, chain, 1e-5, "mlp with biases vs linear + bias_add chain");
}

INSTANTIATE_TEST_SUITE_P(Weights, RefMlpTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16),
                                            ::testing::Values<int64_t>(kI, 4099)),
                         [](const auto& info) {
                           return std::string(DTypeName(std::get<0>(info.param))) + "_I" +
                                  std::to_string(std::get<1>(info.param));
                         });

// ---- Rope, attention, gather-last --------------------------------------------

TEST(RefKernelsTest, RopeRotatesHalvesAtEachPosition) {
  constexpr int64_t kHeadDim = 12, kHeads = 3, kRow = kHeads * kHeadDim;
  constexpr float kTheta = 10000.0f;
  const std::vector<float> x = Random(kT * kRow, 18);
  Meta meta = Meta::Tokens(kReal, kT);
  meta.positions = {0, 1, 17, 42, 5, 0, 0};
  std::vector<float> out = Poisoned(kT * kRow);
  RunKernel(RefRope, {F32(x, {kT, kRow})}, {F32(out, {kT, kRow})},
            RopeParams{.head_dim = kHeadDim, .theta = kTheta}, {.meta = meta.view()});

  std::vector<double> want(kT * kRow, 0.0);
  for (int64_t t = 0; t < kReal; ++t) {
    for (int64_t h = 0; h < kHeads; ++h) {
      for (int64_t i = 0; i < kHeadDim / 2; ++i) {
        const float inv_freq = float(1.0 / std::pow(double(kTheta), 2.0 * i / kHeadDim));
        const double angle = double(meta.positions[t]) * inv_freq;
        const int64_t a = t * kRow + h * kHeadDim + i, b = a + kHeadDim / 2;
        want[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
        want[b] = x[b] * std::cos(angle) + x[a] * std::sin(angle);
      }
    }
  }
  ExpectClose(out, want, kTol, "rope");

  std::vector<float> in_place = x;  // y may alias x
  RunKernel(RefRope, {F32(in_place, {kT, kRow})}, {F32(in_place, {kT, kRow})},
            RopeParams{.head_dim = kHeadDim, .theta = kTheta}, {.meta = meta.view()});
  ExpectClose(in_place, out, 0.0, "rope in place");
}

// Partial and interleaved RoPE against transformers' formulation: cos/sin laid out per value
// (emb = cat(freqs, freqs) for NeoX, each frequency repeated twice when interleaved), then
// x * cos + rotate_half(x) * sin over the first rotary_dim values, the rest passed through.
// Scaled cases (scaling 1 linear, 2 yarn, 3 llama3) compute inv_freq as transformers'
// _compute_linear/yarn/llama3_parameters do, from the ramp bounds the frontends derive.
struct RopeCase {
  int64_t head_dim, rotary_dim, interleaved;
  int64_t scaling = 0;
  double factor = 1, ramp_low = 0, ramp_high = 0, attention_factor = 1;
};

// The test-name suffix of a scaling.
std::string RopeScalingSuffix(int64_t scaling) {
  switch (scaling) {
    case 1:
      return "_linear";
    case 2:
      return "_yarn";
    case 3:
      return "_llama3";
  }
  return "";
}

// transformers' inv_freq of pair `i` for `c`, written independently of ir/rope_freq.h.
double TransformersInvFreq(const RopeCase& c, double theta, int64_t rd, int64_t i) {
  const double base = 1.0 / std::pow(theta, 2.0 * double(i) / double(rd));
  switch (c.scaling) {
    case 1:
      return base / c.factor;
    case 2: {  // yarn: inv_freq_interpolation * (1 - extrapolation_factor) + ...
      const double ramp =
          std::clamp((double(i) - c.ramp_low) / (c.ramp_high - c.ramp_low), 0.0, 1.0);
      const double extrapolation = 1 - ramp;
      return base / c.factor * (1 - extrapolation) + base * extrapolation;
    }
    case 3: {  // llama3, with old_context and the freq factors recovered from the ramp bounds
      const double old_context = 64, low_freq_factor = 1, high_freq_factor = 4;
      const double wavelen = 2 * std::numbers::pi / base;
      if (wavelen > old_context / low_freq_factor) return base / c.factor;
      if (wavelen < old_context / high_freq_factor) return base;
      const double smooth =
          (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      return (1 - smooth) * base / c.factor + smooth * base;
    }
  }
  return base;
}

class RefRopeVariantsTest : public ::testing::TestWithParam<RopeCase> {};

TEST_P(RefRopeVariantsTest, MatchesTransformersFormula) {
  const RopeCase c = GetParam();
  const int64_t kHeads = 3, kRow = kHeads * c.head_dim;
  const int64_t rd = c.rotary_dim != 0 ? c.rotary_dim : c.head_dim;
  constexpr double kTheta = 500000.0;
  const std::vector<float> x = Random(kT * kRow, 19);
  Meta meta = Meta::Tokens(kReal, kT);
  meta.positions = {0, 3, 29, 101, 7, 0, 0};
  const RopeParams params{.head_dim = c.head_dim,
                          .theta = kTheta,
                          .rotary_dim = c.rotary_dim,
                          .interleaved = c.interleaved,
                          .scaling = c.scaling,
                          .factor = c.factor,
                          .ramp_low = c.ramp_low,
                          .ramp_high = c.ramp_high,
                          .attention_factor = c.attention_factor};
  std::vector<float> out = Poisoned(kT * kRow);
  RunKernel(RefRope, {F32(x, {kT, kRow})}, {F32(out, {kT, kRow})}, params, {.meta = meta.view()});

  std::vector<double> want(kT * kRow, 0.0);  // padding rows are zeros
  for (int64_t t = 0; t < kReal; ++t) {
    for (int64_t h = 0; h < kHeads; ++h) {
      const float* xh = x.data() + t * kRow + h * c.head_dim;
      double* wh = want.data() + t * kRow + h * c.head_dim;
      for (int64_t j = 0; j < rd; ++j) {
        const int64_t freq = c.interleaved ? j / 2 : j % (rd / 2);
        const auto inv_freq = float(TransformersInvFreq(c, kTheta, rd, freq));
        const double angle = double(meta.positions[t]) * inv_freq;
        double rotated;  // rotate_half(x)[j]
        if (c.interleaved) {
          rotated = j % 2 == 0 ? -xh[j + 1] : xh[j - 1];
        } else {
          rotated = j < rd / 2 ? -xh[j + rd / 2] : xh[j - rd / 2];
        }
        wh[j] = (xh[j] * std::cos(angle) + rotated * std::sin(angle)) * c.attention_factor;
      }
      for (int64_t j = rd; j < c.head_dim; ++j)
        wh[j] = xh[j];
    }
  }
  ExpectClose(out, want, kTol, "rope");

  std::vector<float> in_place = x;  // y may alias x
  RunKernel(RefRope, {F32(in_place, {kT, kRow})}, {F32(in_place, {kT, kRow})}, params,
            {.meta = meta.view()});
  ExpectClose(in_place, out, 0.0, "rope in place");
}

INSTANTIATE_TEST_SUITE_P(Rope, RefRopeVariantsTest,
                         ::testing::Values(RopeCase{18, 10, 0}, RopeCase{18, 10, 1},
                                           RopeCase{6, 6, 1}, RopeCase{6, 0, 1}, RopeCase{18, 2, 0},
                                           // linear; yarn over a 2..5 ramp (DeepSeek-style
                                           // interleaved too); llama3 with old_context 64,
                                           // freq factors 1 and 4: ramp 2 pi [1, 4] / 64.
                                           RopeCase{18, 0, 0, 1, 4.0},
                                           RopeCase{18, 14, 0, 2, 4.0, 2, 5, 1.1386},
                                           RopeCase{6, 0, 1, 2, 40.0, 0, 1.001, 1.37},
                                           RopeCase{18, 0, 0, 3, 8.0, 2 * std::numbers::pi / 64,
                                                    8 * std::numbers::pi / 64}),
                         [](const auto& info) {
                           return "hd" + std::to_string(info.param.head_dim) + "_rd" +
                                  std::to_string(info.param.rotary_dim) +
                                  (info.param.interleaved ? "_interleaved" : "_halves") +
                                  RopeScalingSuffix(info.param.scaling);
                         });

// rotary_dim = head_dim is the whole head, bit for bit.
TEST(RefKernelsTest, RopeRotaryDimOfTheWholeHeadIsTheDefault) {
  constexpr int64_t kHeadDim = 10, kRow = 2 * kHeadDim;
  const std::vector<float> x = Random(kT * kRow, 20);
  Meta meta = Meta::Tokens(kReal, kT);
  meta.positions = {4, 8, 15, 16, 23, 0, 0};
  for (int64_t interleaved : {0, 1}) {
    std::vector<float> whole = Poisoned(kT * kRow), set = Poisoned(kT * kRow);
    RunKernel(RefRope, {F32(x, {kT, kRow})}, {F32(whole, {kT, kRow})},
              RopeParams{.head_dim = kHeadDim, .theta = 1e4, .interleaved = interleaved},
              {.meta = meta.view()});
    RunKernel(
        RefRope, {F32(x, {kT, kRow})}, {F32(set, {kT, kRow})},
        RopeParams{
            .head_dim = kHeadDim, .theta = 1e4, .rotary_dim = kHeadDim, .interleaved = interleaved},
        {.meta = meta.view()});
    ExpectClose(set, whole, 0.0, "rotary_dim = head_dim");
  }
}

// Two sequences in a paged cache; every q/k/v row of a sequence is fixed up
// front so a naive full causal attention over the whole sequence is the oracle.
class AttentionFixture : public ::testing::Test {
 protected:
  static constexpr int64_t kHeads = 4, kKvHeads = 2, kHeadDim = 12, kBlockSize = 4;
  static constexpr int64_t kBlocks = 8, kLayers = 2, kLayer = 1, kMaxBlocks = 3;
  static constexpr int64_t kQRow = kHeads * kHeadDim, kKvRow = kKvHeads * kHeadDim;

  void SetUp() override {
    for (int s = 0; s < 2; ++s) {
      q_[s] = Random(kLens[s] * kQRow, 30 + s);
      k_[s] = Random(kLens[s] * kKvRow, 40 + s);
      v_[s] = Random(kLens[s] * kKvRow, 50 + s);
    }
    const size_t cache_size = kLayers * kBlocks * kBlockSize * kKvRow;
    k_cache_.assign(cache_size, kNaN);  // a read of an unwritten slot poisons the output
    v_cache_.assign(cache_size, kNaN);
    kv_.num_layers = kLayers;
    kv_.num_blocks = kBlocks;
    kv_.block_size = kBlockSize;
    kv_.num_kv_heads = kKvHeads;
    kv_.head_dim = kHeadDim;
    kv_.Bind(k_cache_.data(), v_cache_.data());
  }

  // Runs one step of `meta`, feeding each real token of sequences 0 and 1 its
  // fixed q/k/v row (others get random rows); returns the output.
  std::vector<float> RunStep(Meta& meta) {
    const int64_t capacity = meta.view()->token_capacity;
    std::vector<float> q = Random(capacity * kQRow, 60), k = Random(capacity * kKvRow, 61),
                       v = Random(capacity * kKvRow, 62);
    for (int64_t t = 0; t < meta.view()->num_tokens; ++t) {
      const int s = meta.batch_id_per_token[t], p = meta.positions[t];
      if (s > 1) continue;
      std::copy_n(q_[s].begin() + p * kQRow, kQRow, q.begin() + t * kQRow);
      std::copy_n(k_[s].begin() + p * kKvRow, kKvRow, k.begin() + t * kKvRow);
      std::copy_n(v_[s].begin() + p * kKvRow, kKvRow, v.begin() + t * kKvRow);
    }
    std::vector<float> out = Poisoned(capacity * kQRow);
    std::vector<TensorArg> in = {F32(q, {capacity, kQRow}), F32(k, {capacity, kKvRow}),
                                 F32(v, {capacity, kKvRow})};
    if (!sinks_.empty()) in.push_back(F32(sinks_, {kHeads}));
    RunKernel(RefAttention, in, {F32(out, {capacity, kQRow})},
              AttentionParams{.layer = kLayer,
                              .num_heads = kHeads,
                              .num_kv_heads = kKvHeads,
                              .head_dim = kHeadDim,
                              .scale = kScale,
                              .window = window_},
              {.meta = meta.view(), .kv = &kv_.view});
    return out;
  }

  // Naive causal attention of sequence s's position p, all heads: over keys
  // (p - window_, p] when window_ > 0, every key up to p otherwise.
  std::vector<double> Naive(int s, int64_t p) const {
    std::vector<double> o(kQRow, 0.0);
    for (int64_t h = 0; h < kHeads; ++h) {
      const int64_t kv_head = h / (kHeads / kKvHeads);
      std::vector<double> scores(p + 1, -std::numeric_limits<double>::infinity());
      for (int64_t j = 0; j <= p; ++j) {
        if (window_ > 0 && j <= p - window_) continue;
        double dot = 0.0;
        for (int64_t d = 0; d < kHeadDim; ++d) {
          dot += double(q_[s][p * kQRow + h * kHeadDim + d]) *
                 k_[s][j * kKvRow + kv_head * kHeadDim + d];
        }
        scores[j] = kScale * dot;
      }
      // softmax over [scores, sink], the sink's probability dropped.
      double max_score = *std::max_element(scores.begin(), scores.end());
      if (!sinks_.empty()) max_score = std::max<double>(max_score, sinks_[h]);
      double sum = sinks_.empty() ? 0.0 : std::exp(sinks_[h] - max_score);
      for (double& sc : scores)
        sum += sc = std::exp(sc - max_score);
      for (int64_t j = 0; j <= p; ++j) {
        for (int64_t d = 0; d < kHeadDim; ++d) {
          o[h * kHeadDim + d] += scores[j] / sum * v_[s][j * kKvRow + kv_head * kHeadDim + d];
        }
      }
    }
    return o;
  }

  // Expected output rows for a step: oracle for real tokens of sequences in
  // `valid_seqs`, zeros elsewhere.
  std::vector<double> Want(Meta& meta, int64_t capacity, std::vector<int> valid_seqs) {
    std::vector<double> want(capacity * kQRow, 0.0);
    for (int64_t t = 0; t < meta.view()->num_tokens; ++t) {
      const int s = meta.batch_id_per_token[t];
      if (std::find(valid_seqs.begin(), valid_seqs.end(), s) == valid_seqs.end()) continue;
      const std::vector<double> o = Naive(s, meta.positions[t]);
      std::copy(o.begin(), o.end(), want.begin() + t * kQRow);
    }
    return want;
  }

  const float kScale = 1.0f / std::sqrt(float(kHeadDim));
  const int64_t kLens[2] = {8, 4};  // positions each sequence reaches after decode
  const std::vector<int32_t> kBlocksA = {5, 2, 7}, kBlocksB = {0, 6};
  std::vector<float> q_[2], k_[2], v_[2];
  std::vector<float> sinks_;  // [kHeads] or empty: no sinks operand
  int64_t window_ = 0;        // the op's window
  std::vector<float> k_cache_, v_cache_;
  testing::UniformKvCacheView kv_;
};

TEST_F(AttentionFixture, PrefillThenDecodeMatchesFullAttention) {
  // Prefill: A's 7 prompt tokens and B's 3, with 2 padding rows.
  Meta prefill(12, 3, kMaxBlocks, kBlockSize, {{0, 7, kBlocksA}, {0, 3, kBlocksB}});
  std::vector<float> out = RunStep(prefill);
  ExpectClose(out, Want(prefill, 12, {0, 1}), kTol, "prefill");
  ExpectZeroRows(out, 10, 12, kQRow, "prefill");

  // The step's keys landed in layer 1 at their slots; layer 0 is untouched.
  const int64_t layer_stride = kv_.LayerElements();
  for (int64_t t = 0; t < 10; ++t) {
    const int s = prefill.batch_id_per_token[t];
    const float* cached = k_cache_.data() + layer_stride + prefill.slot_mapping[t] * kKvRow;
    EXPECT_EQ(std::vector<float>(cached, cached + kKvRow),
              std::vector<float>(k_[s].begin() + prefill.positions[t] * kKvRow,
                                 k_[s].begin() + (prefill.positions[t] + 1) * kKvRow))
        << "token " << t;
  }
  EXPECT_TRUE(std::all_of(k_cache_.begin(), k_cache_.begin() + layer_stride,
                          [](float x) { return std::isnan(x); }));

  // Decode: one token each, at positions 7 (crossing into A's second block) and 3.
  Meta decode(4, 3, kMaxBlocks, kBlockSize, {{7, 1, kBlocksA}, {3, 1, kBlocksB}});
  out = RunStep(decode);
  ExpectClose(out, Want(decode, 4, {0, 1}), kTol, "decode");
  ExpectZeroRows(out, 2, 4, kQRow, "decode");
}

// Sinks (one per head, large enough to take a real share of each softmax): the
// prefill and decode rows against the naive softmax over [scores, sink].
TEST_F(AttentionFixture, SinksJoinEachSoftmaxsDenominatorOnly) {
  sinks_ = {1.5f, -0.75f, 0.25f, 3.0f};
  Meta prefill(12, 3, kMaxBlocks, kBlockSize, {{0, 7, kBlocksA}, {0, 3, kBlocksB}});
  std::vector<float> out = RunStep(prefill);
  ExpectClose(out, Want(prefill, 12, {0, 1}), kTol, "prefill with sinks");
  ExpectZeroRows(out, 10, 12, kQRow, "prefill with sinks");
  Meta decode(4, 3, kMaxBlocks, kBlockSize, {{7, 1, kBlocksA}, {3, 1, kBlocksB}});
  out = RunStep(decode);
  ExpectClose(out, Want(decode, 4, {0, 1}), kTol, "decode with sinks");
  // A sink of 3 takes most of a short softmax: the rows differ from sink-free ones.
  const std::vector<float> with_sinks = out;
  sinks_.clear();
  out = RunStep(decode);
  double max_diff = 0.0;
  for (int64_t c = 3 * kHeadDim; c < kQRow; ++c)  // token 0's head 3
    max_diff = std::max<double>(max_diff, std::abs(with_sinks[c] - out[c]));
  EXPECT_GT(max_diff, 1e-2);
}

// A window of 3 over blocks of 4: A's prompt in two chunks (0..4, then 5..7),
// each crossing a window and a block boundary, then decode; with sinks too.
TEST_F(AttentionFixture, SlidingWindowReadsOnlyTheLastWindowPositions) {
  for (const bool sinks : {false, true}) {
    SCOPED_TRACE(sinks ? "with sinks" : "without sinks");
    window_ = 3;
    sinks_ = sinks ? std::vector<float>{0.5f, -1.0f, 2.0f, 0.0f} : std::vector<float>{};
    Meta first(8, 3, kMaxBlocks, kBlockSize, {{0, 5, kBlocksA}, {0, 3, kBlocksB}});
    std::vector<float> out = RunStep(first);
    ExpectClose(out, Want(first, 8, {0, 1}), kTol, "first chunk");
    Meta chunk(4, 3, kMaxBlocks, kBlockSize, {{5, 3, kBlocksA}});
    out = RunStep(chunk);
    ExpectClose(out, Want(chunk, 4, {0}), kTol, "second chunk");
    ExpectZeroRows(out, 3, 4, kQRow, "second chunk");
    Meta decode(4, 3, kMaxBlocks, kBlockSize, {{8, 0, kBlocksA}, {3, 1, kBlocksB}});
    out = RunStep(decode);
    ExpectClose(out, Want(decode, 4, {1}), kTol, "decode");
    ExpectZeroRows(out, 1, 4, kQRow, "decode");
    // The window changes the result: full attention at B's position 3 differs.
    const std::vector<float> windowed = out;
    window_ = 0;
    out = RunStep(decode);
    double max_diff = 0.0;
    for (int64_t c = 0; c < kQRow; ++c)
      max_diff = std::max<double>(max_diff, std::abs(windowed[c] - out[c]));
    EXPECT_GT(max_diff, 1e-2);
  }
}

TEST_F(AttentionFixture, InvalidBlocksZeroOnlyTheirTokens) {
  // B's first block id is out of range; C's position 12 needs a 4th block
  // (max_blocks_per_seq = 3). A is unaffected.
  Meta meta(12, 3, kMaxBlocks, kBlockSize, {{0, 7, kBlocksA}, {0, 3, {99, 6}}, {12, 1, {1, 3, 4}}});
  std::vector<float> out = RunStep(meta);
  ExpectClose(out, Want(meta, 12, {0}), kTol, "invalid blocks");
  ExpectZeroRows(out, 7, 12, kQRow, "invalid blocks");
}

// MLA in the absorbed form against the expanded form transformers runs: per head
// k = [Wk_h latent, k_pe], v = Wv_h latent, q = [q_nope, q_pe]. One sequence: a
// prefill of 6 tokens, then a decode at position 6 reading the latent cache.
TEST_P(RefDTypeTest, MlaAttentionMatchesExpandedAttention) {
  constexpr int64_t kMlaHeads = 3, kRank = 10, kRope = 4, kNope = 5, kV = 3;
  constexpr int64_t kRow = kRank + kRope, kLen = 7, kMlaBlockSize = 4;
  const double scale = 0.4;
  const Weight kv_b = MakeWeight(kMlaHeads * (kNope + kV) * kRank, GetParam(), 90);
  const std::vector<float> q_nope = Random(kLen * kMlaHeads * kNope, 91);
  const std::vector<float> q_pe = Random(kLen * kMlaHeads * kRope, 92);
  const std::vector<float> latent = Random(kLen * kRank, 93);
  const std::vector<float> k_pe = Random(kLen * kRope, 94);
  auto w = [&](int64_t h, int64_t r, int64_t c) {
    return double(kv_b.values[(h * (kNope + kV) + r) * kRank + c]);
  };
  auto naive = [&](int64_t p) {
    std::vector<double> o(kMlaHeads * kV, 0.0);
    for (int64_t h = 0; h < kMlaHeads; ++h) {
      std::vector<double> scores(p + 1);
      for (int64_t j = 0; j <= p; ++j) {
        double dot = 0.0;
        for (int64_t d = 0; d < kNope; ++d) {
          double k = 0.0;
          for (int64_t c = 0; c < kRank; ++c)
            k += w(h, d, c) * latent[j * kRank + c];
          dot += double(q_nope[(p * kMlaHeads + h) * kNope + d]) * k;
        }
        for (int64_t d = 0; d < kRope; ++d)
          dot += double(q_pe[(p * kMlaHeads + h) * kRope + d]) * k_pe[j * kRope + d];
        scores[j] = scale * dot;
      }
      const double max_score = *std::max_element(scores.begin(), scores.end());
      double sum = 0.0;
      for (double& sc : scores)
        sum += sc = std::exp(sc - max_score);
      for (int64_t j = 0; j <= p; ++j) {
        for (int64_t e = 0; e < kV; ++e) {
          double v = 0.0;
          for (int64_t c = 0; c < kRank; ++c)
            v += w(h, kNope + e, c) * latent[j * kRank + c];
          o[h * kV + e] += scores[j] / sum * v;
        }
      }
    }
    return o;
  };
  std::vector<float> cache(2 * 4 * kMlaBlockSize * kRow, kNaN);
  testing::UniformKvCacheView kv;
  kv.num_layers = 2;
  kv.num_blocks = 4;
  kv.block_size = kMlaBlockSize;
  kv.num_kv_heads = 1;
  kv.head_dim = kRow;
  kv.kind = KvLayerKind::kLatent;
  kv.Bind(cache.data(), nullptr);
  const std::vector<int32_t> blocks = {3, 1};
  const MlaAttentionParams params{.layer = 1,
                                  .num_heads = kMlaHeads,
                                  .kv_lora_rank = kRank,
                                  .qk_nope_head_dim = kNope,
                                  .qk_rope_head_dim = kRope,
                                  .v_head_dim = kV,
                                  .scale = scale};
  // Rows [first, first + count) of the sequence as one step of `capacity` rows.
  auto run = [&](Meta& meta, int64_t first, int64_t count, int64_t capacity) {
    auto rows = [&](const std::vector<float>& x, int64_t width) {
      std::vector<float> out = Random(capacity * width, 95);  // padding rows: noise
      std::copy_n(x.begin() + first * width, count * width, out.begin());
      return out;
    };
    const std::vector<float> qn = rows(q_nope, kMlaHeads * kNope),
                             qp = rows(q_pe, kMlaHeads * kRope), lat = rows(latent, kRank),
                             kp = rows(k_pe, kRope);
    std::vector<float> out = Poisoned(capacity * kMlaHeads * kV);
    RunKernel(RefMlaAttention,
              {F32(qn, {capacity, kMlaHeads * kNope}), F32(qp, {capacity, kMlaHeads * kRope}),
               F32(lat, {capacity, kRank}), F32(kp, {capacity, kRope}),
               kv_b.arg({kMlaHeads * (kNope + kV), kRank})},
              {F32(out, {capacity, kMlaHeads * kV})}, params,
              {.meta = meta.view(), .kv = &kv.view});
    std::vector<double> want(capacity * kMlaHeads * kV, 0.0);
    for (int64_t t = 0; t < count; ++t) {
      const std::vector<double> o = naive(first + t);
      std::copy(o.begin(), o.end(), want.begin() + t * kMlaHeads * kV);
    }
    return std::pair{out, want};
  };
  Meta prefill(8, 2, 2, kMlaBlockSize, {{0, 6, blocks}});
  auto [out, want] = run(prefill, 0, 6, 8);
  ExpectClose(out, want, kTol, "mla prefill");
  ExpectZeroRows(out, 6, 8, kMlaHeads * kV, "mla prefill");
  // Position 4 landed in block 1, slot 0, of layer 1: [latent, k_pe]; layer 0 untouched.
  const float* cached = cache.data() + kv.LayerElements() + (1 * kMlaBlockSize + 0) * kRow;
  EXPECT_EQ(std::vector<float>(cached, cached + kRank),
            std::vector<float>(latent.begin() + 4 * kRank, latent.begin() + 5 * kRank));
  EXPECT_EQ(std::vector<float>(cached + kRank, cached + kRow),
            std::vector<float>(k_pe.begin() + 4 * kRope, k_pe.begin() + 5 * kRope));
  EXPECT_TRUE(std::all_of(cache.begin(), cache.begin() + kv.LayerElements(),
                          [](float x) { return std::isnan(x); }));
  Meta decode(2, 2, 2, kMlaBlockSize, {{6, 1, blocks}});
  auto [decode_out, decode_want] = run(decode, 6, 1, 2);
  ExpectClose(decode_out, decode_want, kTol, "mla decode");
  ExpectZeroRows(decode_out, 1, 2, kMlaHeads * kV, "mla decode");
}

TEST(RefKernelsTest, SplitColsSplitsEveryGroup) {
  // 2 rows of 3 groups of 5: the first 2 of each group, then the other 3.
  std::vector<float> x(2 * 15);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(i);
  std::vector<float> a = Poisoned(2 * 6), b = Poisoned(2 * 9);
  RunKernel(RefSplitCols, {F32(x, {2, 15})}, {F32(a, {2, 6}), F32(b, {2, 9})},
            SplitColsParams{.group = 5, .first = 2});
  EXPECT_EQ(a, (std::vector<float>{0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26}));
  EXPECT_EQ(b,
            (std::vector<float>{2, 3, 4, 7, 8, 9, 12, 13, 14, 17, 18, 19, 22, 23, 24, 27, 28, 29}));
}

TEST(RefKernelsTest, GatherLastTakesEachSequencesLastToken) {
  const std::vector<float> x = Random(kT * kH, 19);
  Meta meta(static_cast<int32_t>(kT), 3, 0, 0, {{0, 4, {}}, {2, 0, {}}, {0, 2, {}}});
  std::vector<float> out = Poisoned(4 * kH);  // one row past seq_capacity too
  RunKernel(RefGatherLast, {F32(x, {kT, kH})}, {F32(out, {4, kH})}, {.meta = meta.view()});
  std::vector<float> want(4 * kH, 0.0f);
  std::copy_n(x.begin() + 3 * kH, kH, want.begin());           // seq 0: tokens 0..3
  std::copy_n(x.begin() + 5 * kH, kH, want.begin() + 2 * kH);  // seq 2: tokens 4..5
  ExpectClose(out, want, 0.0, "gather_last");  // seq 1 has no token this step: zeros
}

// ---- Routing ------------------------------------------------------------------

TEST(RefKernelsTest, TopkRouteMatchesNaiveAndMasksByRowOffset) {
  const std::vector<float> logits = Random(kT * kE, 20, 2.0f);
  for (int norm = 0; norm <= 1; ++norm) {
    // Chunk rows 0..6 are tokens 4..10 of 9: rows 5 and 6 are padding.
    Meta meta = Meta::Tokens(9, 16);
    std::vector<int32_t> ids = PoisonedI32(kT * kTopK);
    std::vector<float> weights = Poisoned(kT * kTopK);
    RunKernel(RefTopkRoute, {F32(logits, {kT, kE})},
              {I32(ids, {kT, kTopK}), F32(weights, {kT, kTopK})},
              TopkRouteParams{.top_k = kTopK, .norm_topk_prob = norm, .row_offset = 4},
              {.meta = meta.view()});
    for (int64_t t = 0; t < kT; ++t) {
      Routes want{std::vector<int32_t>(kTopK, -1), std::vector<double>(kTopK, 0.0)};
      if (t < 5) {
        want = NaiveRoute({logits.begin() + t * kE, logits.begin() + (t + 1) * kE}, kTopK, norm);
      }
      for (int64_t j = 0; j < kTopK; ++j) {
        EXPECT_EQ(ids[t * kTopK + j], want.ids[j]) << "row " << t << " route " << j;
        EXPECT_NEAR(weights[t * kTopK + j], want.weights[j], kTol) << "row " << t;
      }
    }
  }
}

TEST(RefKernelsTest, TopkRouteBreaksTiesByLowerIdAndPadsPastExperts) {
  const std::vector<float> logits = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f,   // all tied
                                     1.0f, 3.0f, 3.0f, 0.0f, 3.0f};  // three tied at the top
  std::vector<int32_t> ids = PoisonedI32(2 * 3);
  std::vector<float> weights = Poisoned(2 * 3);
  RunKernel(RefTopkRoute, {F32(logits, {2, kE})}, {I32(ids, {2, 3}), F32(weights, {2, 3})},
            TopkRouteParams{.top_k = 3, .norm_topk_prob = 1, .row_offset = 0});
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1, 2, 1, 2, 4}));
  for (float w : weights)
    EXPECT_NEAR(w, 1.0 / 3.0, 1e-6);

  // top_k 6 > 5 experts: the last route is -1 with weight 0.
  std::vector<int32_t> ids6 = PoisonedI32(6);
  std::vector<float> weights6 = Poisoned(6);
  RunKernel(RefTopkRoute, {F32(logits, {1, kE})}, {I32(ids6, {1, 6}), F32(weights6, {1, 6})},
            TopkRouteParams{.top_k = 6, .norm_topk_prob = 0, .row_offset = 0});
  EXPECT_EQ(ids6, (std::vector<int32_t>{0, 1, 2, 3, 4, -1}));
  EXPECT_EQ(weights6[5], 0.0f);
  EXPECT_NEAR(weights6[0], 0.2, 1e-6);
}

// The routing modes against NaiveGeneralRoute, on odd sizes, with padding rows.
struct RouteCase {
  const char* name;
  int64_t num_experts;
  TopkRouteParams params;
  bool bias;
};

const RouteCase kRouteCases[] = {
    {"E=12, 4 groups keep 2, top_k 3, sigmoid, bias, norm, scaling 2.5", 12,
     TopkRouteParams{.top_k = 3,
                     .norm_topk_prob = 1,
                     .scoring = 1,
                     .num_groups = 4,
                     .top_k_groups = 2,
                     .routed_scaling_factor = 2.5},
     true},
    {"E=7 sigmoid ungrouped, top_k 3", 7, TopkRouteParams{.top_k = 3, .scoring = 1}, false},
    {"E=7 sigmoid ungrouped, bias, norm", 7,
     TopkRouteParams{.top_k = 2, .norm_topk_prob = 1, .scoring = 1}, true},
    {"E=7 softmax, bias, norm_min 0.6", 7,
     TopkRouteParams{.top_k = 2, .norm_topk_prob = 1, .norm_min = 0.6}, true},
    {"E=15, 5 groups keep all (top_k_groups absent), softmax, top_k 4", 15,
     TopkRouteParams{.top_k = 4, .num_groups = 5}, true},
};

void PrintTo(const RouteCase& c, std::ostream* os) {
  *os << c.name;
}

class RefTopkRouteModes : public ::testing::TestWithParam<RouteCase> {};

TEST_P(RefTopkRouteModes, MatchNaiveRouteAndMaskPadding) {
  const RouteCase& c = GetParam();
  const int64_t e = c.num_experts, k = c.params.top_k;
  const std::vector<float> logits = Random(kT * e, 21, 2.0f);
  const std::vector<float> bias = c.bias ? Random(e, 22, 0.5f) : std::vector<float>{};
  Meta meta = Meta::Tokens(kReal, kT);
  std::vector<int32_t> ids = PoisonedI32(kT * k);
  std::vector<float> weights = Poisoned(kT * k);
  std::vector<TensorArg> in = {F32(logits, {kT, e})};
  if (c.bias) in.push_back(F32(bias, {e}));
  RunKernel(RefTopkRoute, in, {I32(ids, {kT, k}), F32(weights, {kT, k})}, c.params,
            {.meta = meta.view()});
  for (int64_t t = 0; t < kT; ++t) {
    Routes want{std::vector<int32_t>(k, -1), std::vector<double>(k, 0.0)};
    if (t < kReal) {
      want =
          NaiveGeneralRoute({logits.begin() + t * e, logits.begin() + (t + 1) * e}, bias, c.params);
    }
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(ids[t * k + j], want.ids[j]) << c.name << " row " << t << " route " << j;
      EXPECT_NEAR(weights[t * k + j], want.weights[j], kTol) << c.name << " row " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, RefTopkRouteModes, ::testing::ValuesIn(kRouteCases));

// The bias moves the choice, never the weights: with and without it some row picks other
// experts, and every weight is the unbiased sigmoid of its expert's logit.
TEST(RefKernelsTest, TopkRouteBiasChangesTheChoiceNotTheWeights) {
  constexpr int64_t e = 12, k = 3;
  const std::vector<float> logits = Random(kT * e, 23, 2.0f);
  const std::vector<float> bias = Random(e, 24, 0.5f);
  const TopkRouteParams params{.top_k = k, .scoring = 1, .num_groups = 4, .top_k_groups = 2};
  std::vector<int32_t> biased_ids = PoisonedI32(kT * k), plain_ids = PoisonedI32(kT * k);
  std::vector<float> biased_w = Poisoned(kT * k), plain_w = Poisoned(kT * k);
  RunKernel(RefTopkRoute, {F32(logits, {kT, e}), F32(bias, {e})},
            {I32(biased_ids, {kT, k}), F32(biased_w, {kT, k})}, params);
  RunKernel(RefTopkRoute, {F32(logits, {kT, e})}, {I32(plain_ids, {kT, k}), F32(plain_w, {kT, k})},
            params);
  EXPECT_NE(biased_ids, plain_ids);
  for (int64_t p = 0; p < kT * k; ++p) {
    for (const auto& [ids, w] :
         {std::pair{&biased_ids, &biased_w}, std::pair{&plain_ids, &plain_w}}) {
      const int64_t t = p / k;
      const float logit = logits[t * e + (*ids)[p]];
      EXPECT_FLOAT_EQ((*w)[p], 1.0f / (1.0f + std::exp(-logit))) << "pair " << p;
    }
  }
}

// The softmax + norm_min case of kRouteCases reaches both sides of the clamp: some rows'
// chosen probabilities sum to less than norm_min (divided by norm_min), some to more.
TEST(RefKernelsTest, TopkRouteNormMinCaseReachesTheClamp) {
  constexpr int64_t e = 7, k = 2;
  const std::vector<float> logits = Random(kT * e, 21, 2.0f);
  const std::vector<float> bias = Random(e, 22, 0.5f);
  int clamped = 0, normalised = 0;
  for (int64_t t = 0; t < kReal; ++t) {
    const Routes plain = NaiveGeneralRoute({logits.begin() + t * e, logits.begin() + (t + 1) * e},
                                           bias, TopkRouteParams{.top_k = k});
    (plain.weights[0] + plain.weights[1] < 0.6 ? clamped : normalised) += 1;
  }
  EXPECT_GT(clamped, 0);
  EXPECT_GT(normalised, 0);
}

// Group ties keep the lower group id; expert ties the lower expert id.
TEST(RefKernelsTest, TopkRouteGroupTiesKeepTheLowerGroup) {
  const std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f,  0.0f,  0.0f,   // all tied
                                     0.0f, 0.0f, 2.0f, -1.0f, -1.0f, 2.0f};  // groups 1, 2 tied
  std::vector<int32_t> ids = PoisonedI32(2 * 2);
  std::vector<float> weights = Poisoned(2 * 2);
  RunKernel(RefTopkRoute, {F32(logits, {2, 6})}, {I32(ids, {2, 2}), F32(weights, {2, 2})},
            TopkRouteParams{.top_k = 2, .scoring = 1, .num_groups = 3, .top_k_groups = 1});
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1, 2, 3}));
}

// ---- Grouped (prefill) MoE layout -------------------------------------------

TEST(RefKernelsTest, MoeAlignGroupsPairsByExpert) {
  // E = 4; pair 2 is a -1 route, pair 4 an out-of-range id; expert 1 is empty.
  const std::vector<int32_t> ids = {2, 0, -1, 2, 7, 3};
  std::vector<int32_t> sorted = PoisonedI32(6), offsets = PoisonedI32(5);
  RunKernel(RefMoeAlign, {I32(ids, {3, 2})}, {I32(sorted, {6}), I32(offsets, {5})},
            NumExpertsParams{.num_experts = 4});
  EXPECT_EQ(sorted, (std::vector<int32_t>{1, 0, 3, 5, -1, -1}));
  EXPECT_EQ(offsets, (std::vector<int32_t>{0, 1, 1, 3, 4}));
}

// Random routes of kT tokens (rows >= kReal all -1) and the naive alignment.
struct RandomRoutes {
  std::vector<int32_t> ids;  // [kT, kTopK]
  std::vector<int32_t> sorted;
  std::vector<int32_t> offsets;
};

RandomRoutes MakeRandomRoutes(uint32_t seed) {
  std::mt19937 rng(seed);
  RandomRoutes r;
  r.ids.assign(kT * kTopK, -1);
  for (int64_t t = 0; t < kReal; ++t) {
    std::vector<int32_t> experts(kE);
    std::iota(experts.begin(), experts.end(), 0);
    std::shuffle(experts.begin(), experts.end(), rng);
    std::copy_n(experts.begin(), kTopK, r.ids.begin() + t * kTopK);
  }
  r.offsets.assign(kE + 1, 0);
  for (int32_t e = 0; e < kE; ++e) {
    for (int32_t p = 0; p < kT * kTopK; ++p) {
      if (r.ids[p] == e) r.sorted.push_back(p);
    }
    r.offsets[e + 1] = static_cast<int32_t>(r.sorted.size());
  }
  r.sorted.resize(kT * kTopK, -1);
  return r;
}

TEST(RefKernelsTest, MoeAlignMatchesNaiveOnRandomRoutes) {
  const RandomRoutes routes = MakeRandomRoutes(21);
  std::vector<int32_t> sorted = PoisonedI32(kT * kTopK), offsets = PoisonedI32(kE + 1);
  RunKernel(RefMoeAlign, {I32(routes.ids, {kT, kTopK})},
            {I32(sorted, {kT * kTopK}), I32(offsets, {kE + 1})},
            NumExpertsParams{.num_experts = kE});
  EXPECT_EQ(sorted, routes.sorted);
  EXPECT_EQ(offsets, routes.offsets);
}

TEST(RefKernelsTest, MoePermuteGathersTokenRows) {
  const std::vector<float> x = Random(kT * kH, 22);
  const std::vector<int32_t> sorted = {4, 0, 20, -1, 3, 1000};  // 1000: token out of range
  std::vector<float> out = Poisoned(6 * kH);
  RunKernel(RefMoePermute, {F32(x, {kT, kH}), I32(sorted, {6})}, {F32(out, {6, kH})},
            TopKParams{.top_k = kTopK});
  std::vector<float> want(6 * kH, 0.0f);
  for (int64_t i = 0; i < 6; ++i) {
    if (sorted[i] < 0 || sorted[i] / kTopK >= kT) continue;
    std::copy_n(x.begin() + (sorted[i] / kTopK) * kH, kH, want.begin() + i * kH);
  }
  ExpectClose(out, want, 0.0, "moe_permute");
}

TEST_P(RefDTypeTest, GroupedMatmulsMatchNaive) {
  const RandomRoutes routes = MakeRandomRoutes(23);
  constexpr int64_t kP = kT * kTopK;
  const std::vector<float> xp = Random(kP * kK, 24);
  const StackedWeight wg = MakeStacked(kE, kN, kK, GetParam(), 25);
  const StackedWeight wu = MakeStacked(kE, kN, kK, GetParam(), 26);
  std::vector<float> plain = Poisoned(kP * kN), fused = Poisoned(kP * kN);
  RunKernel(RefGroupedMatmul, {F32(xp, {kP, kK}), I32(routes.offsets, {kE + 1}), wg.arg()},
            {F32(plain, {kP, kN})});
  RunKernel(RefGroupedMatmulSiluMul,
            {F32(xp, {kP, kK}), I32(routes.offsets, {kE + 1}), wg.arg(), wu.arg()},
            {F32(fused, {kP, kN})});
  std::vector<double> want_plain(kP * kN, 0.0), want_fused(kP * kN, 0.0);
  for (int64_t e = 0; e < kE; ++e) {
    for (int64_t r = routes.offsets[e]; r < routes.offsets[e + 1]; ++r) {
      for (int64_t j = 0; j < kN; ++j) {
        double g = 0.0, u = 0.0;
        for (int64_t c = 0; c < kK; ++c) {
          g += double(xp[r * kK + c]) * wg.at(e, j, c);
          u += double(xp[r * kK + c]) * wu.at(e, j, c);
        }
        want_plain[r * kN + j] = g;
        want_fused[r * kN + j] = NaiveSilu(g) * u;
      }
    }
  }
  ExpectClose(plain, want_plain, kTol, "grouped_matmul");
  ExpectClose(fused, want_fused, kTol, "grouped_matmul_silu_mul");
  ExpectZeroRows(plain, routes.offsets[kE], kP, kN, "grouped_matmul tail");
}

TEST(RefKernelsTest, GroupedMatmulZeroesRowsOfBadOffsetRanges) {
  constexpr int64_t kP = 9, kExperts = 3;
  const std::vector<float> xp = Random(kP * kK, 27);
  const StackedWeight w = MakeStacked(kExperts, kN, kK, DType::kF32, 28);
  auto run = [&](const std::vector<int32_t>& offsets) {
    std::vector<float> out = Poisoned(kP * kN);
    RunKernel(RefGroupedMatmul, {F32(xp, {kP, kK}), I32(offsets, {kExperts + 1}), w.arg()},
              {F32(out, {kP, kN})});
    return out;
  };
  auto row_of = [&](int64_t e, int64_t r) {
    std::vector<double> y(kN, 0.0);
    for (int64_t j = 0; j < kN; ++j) {
      for (int64_t c = 0; c < kK; ++c)
        y[j] += double(xp[r * kK + c]) * w.at(e, j, c);
    }
    return y;
  };
  // Expert 1's range is reversed and expert 2's overlaps expert 0's.
  std::vector<float> out = run({0, 4, 2, 9});
  std::vector<double> want(kP * kN, 0.0);
  for (int64_t r = 0; r < 4; ++r) {
    const std::vector<double> y = row_of(0, r);
    std::copy(y.begin(), y.end(), want.begin() + r * kN);
  }
  ExpectClose(out, want, kTol, "reversed/overlapping ranges");

  // Row 0 before expert 0, expert 1 empty, expert 2 runs past P.
  out = run({1, 3, 3, 12});
  std::fill(want.begin(), want.end(), 0.0);
  for (int64_t r = 1; r < 3; ++r) {
    const std::vector<double> y = row_of(0, r);
    std::copy(y.begin(), y.end(), want.begin() + r * kN);
  }
  ExpectClose(out, want, kTol, "range past P");
}

TEST(RefKernelsTest, MoeUnpermuteReduceScatterAddsWeightedRows) {
  const RandomRoutes routes = MakeRandomRoutes(29);
  constexpr int64_t kP = kT * kTopK;
  const std::vector<float> y = Random(kP * kH, 30);
  const std::vector<float> route_weights = Random(kT * kTopK, 31);
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefMoeUnpermuteReduce,
            {F32(y, {kP, kH}), I32(routes.sorted, {kP}), F32(route_weights, {kT, kTopK})},
            {F32(out, {kT, kH})}, TopKParams{.top_k = kTopK});
  std::vector<double> want(kT * kH, 0.0);
  for (int64_t i = 0; i < kP; ++i) {
    const int32_t p = routes.sorted[i];
    if (p < 0) continue;
    for (int64_t c = 0; c < kH; ++c) {
      want[(p / kTopK) * kH + c] += double(route_weights[p]) * y[i * kH + c];
    }
  }
  ExpectClose(out, want, kTol, "moe_unpermute_reduce");
  ExpectZeroRows(out, kReal, kT, kH, "moe_unpermute_reduce");
}

// ---- Expert-batched (decode) MoE layout ---------------------------------------

TEST(RefKernelsTest, MoeExpertBatchListsExpertsAndTheirPairs) {
  const std::vector<int32_t> ids = {2, 0, -1, 2, 7, 3};  // E = 4, T = 3, k = 2
  std::vector<int32_t> experts = PoisonedI32(4), pairs = PoisonedI32(4 * 3);
  RunKernel(RefMoeExpertBatch, {I32(ids, {3, 2})}, {I32(experts, {4}), I32(pairs, {4, 3})},
            NumExpertsParams{.num_experts = 4});
  EXPECT_EQ(experts, (std::vector<int32_t>{0, 2, 3, -1}));
  EXPECT_EQ(pairs, (std::vector<int32_t>{1, -1, -1, 0, 3, -1, 5, -1, -1, -1, -1, -1}));
}

TEST(RefKernelsTest, MoeExpertBatchMatchesNaiveOnRandomRoutes) {
  const RandomRoutes routes = MakeRandomRoutes(32);
  constexpr int64_t kSlots = std::min(kE, kT * kTopK);
  std::vector<int32_t> experts = PoisonedI32(kSlots), pairs = PoisonedI32(kSlots * kT);
  RunKernel(RefMoeExpertBatch, {I32(routes.ids, {kT, kTopK})},
            {I32(experts, {kSlots}), I32(pairs, {kSlots, kT})},
            NumExpertsParams{.num_experts = kE});
  std::vector<int32_t> want_experts(kSlots, -1), want_pairs(kSlots * kT, -1);
  int64_t slot = 0;
  for (int32_t e = 0; e < kE; ++e) {
    int64_t count = 0;
    for (int32_t p = 0; p < kT * kTopK; ++p) {
      if (routes.ids[p] == e) want_pairs[slot * kT + count++] = p;
    }
    if (count > 0) want_experts[slot++] = e;
  }
  EXPECT_EQ(experts, want_experts);
  EXPECT_EQ(pairs, want_pairs);
}

TEST_P(RefDTypeTest, ExpertBatchedMatmulsMatchNaive) {
  // Experts 1 and 3 routed; slot 1's pair list has a -1 hole; slot 2 unused.
  constexpr int64_t kP = kT * kTopK, kSlots = 3;
  const std::vector<int32_t> experts = {1, 3, -1};
  const std::vector<int32_t> pairs = {0,  4,  14, -1, -1, -1, -1,  //
                                      5,  -1, 7,  -1, -1, -1, -1,  //
                                      -1, -1, -1, -1, -1, -1, -1};
  const std::vector<float> x = Random(kT * kH, 33);
  const StackedWeight gate = MakeStacked(kE, kI, kH, GetParam(), 34);
  const StackedWeight up = MakeStacked(kE, kI, kH, GetParam(), 35);
  const StackedWeight down = MakeStacked(kE, kH, kI, GetParam(), 36);
  std::vector<float> h = Poisoned(kP * kI), y = Poisoned(kP * kH);
  RunKernel(
      RefExpertBatchedGateUpSilu,
      {F32(x, {kT, kH}), I32(experts, {kSlots}), I32(pairs, {kSlots, kT}), gate.arg(), up.arg()},
      {F32(h, {kP, kI})}, TopKParams{.top_k = kTopK});
  RunKernel(RefExpertBatchedDown,
            {F32(h, {kP, kI}), I32(experts, {kSlots}), I32(pairs, {kSlots, kT}), down.arg()},
            {F32(y, {kP, kH})});

  std::vector<double> want_h(kP * kI, 0.0), want_y(kP * kH, 0.0);
  for (int64_t s = 0; s < kSlots; ++s) {
    for (int64_t c = 0; c < kT; ++c) {
      const int32_t p = pairs[s * kT + c];
      if (experts[s] < 0 || p < 0) continue;
      const float* x_row = x.data() + (p / kTopK) * kH;
      for (int64_t i = 0; i < kI; ++i) {
        double g = 0.0, u = 0.0;
        for (int64_t d = 0; d < kH; ++d) {
          g += double(x_row[d]) * gate.at(experts[s], i, d);
          u += double(x_row[d]) * up.at(experts[s], i, d);
        }
        want_h[p * kI + i] = NaiveSilu(g) * u;
      }
      for (int64_t d = 0; d < kH; ++d) {
        for (int64_t i = 0; i < kI; ++i) {
          want_y[p * kH + d] += down.at(experts[s], d, i) * double(h[p * kI + i]);
        }
      }
    }
  }
  ExpectClose(h, want_h, kTol, "expert_batched_gate_up_silu");
  ExpectClose(y, want_y, kTol, "expert_batched_down");
}

TEST(RefKernelsTest, MoeCombineSumsWeightedRoutes) {
  constexpr int64_t kP = kT * kTopK;
  const std::vector<float> y = Random(kP * kH, 37);
  const std::vector<float> route_weights = Random(kT * kTopK, 38);
  Meta meta = Meta::Tokens(kReal, kT);
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefMoeCombine, {F32(y, {kP, kH}), F32(route_weights, {kT, kTopK})},
            {F32(out, {kT, kH})}, {.meta = meta.view()});
  std::vector<double> want(kT * kH, 0.0);
  for (int64_t t = 0; t < kReal; ++t) {
    for (int64_t j = 0; j < kTopK; ++j) {
      for (int64_t c = 0; c < kH; ++c) {
        want[t * kH + c] += double(route_weights[t * kTopK + j]) * y[(t * kTopK + j) * kH + c];
      }
    }
  }
  ExpectClose(out, want, kTol, "moe_combine");
}

// ---- Whole MoE block -----------------------------------------------------------

struct MoeWeights {
  Weight router;
  StackedWeight gate, up, down;
};

MoeWeights MakeMoeWeights(DType dtype, uint32_t seed) {
  return {MakeWeight(kE * kH, dtype, seed), MakeStacked(kE, kI, kH, dtype, seed + 1),
          MakeStacked(kE, kI, kH, dtype, seed + 2), MakeStacked(kE, kH, kI, dtype, seed + 3)};
}

std::vector<float> RunMoe(const std::vector<float>& x, const MoeWeights& w, int64_t norm,
                          int64_t row_offset, Meta& meta) {
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefMoe,
            {F32(x, {kT, kH}), w.router.arg({kE, kH}), w.gate.arg(), w.up.arg(), w.down.arg()},
            {F32(out, {kT, kH})},
            MoeParams{{.top_k = kTopK, .norm_topk_prob = norm, .row_offset = row_offset}},
            {.meta = meta.view()});
  return out;
}

class RefMoeTest : public ::testing::TestWithParam<std::tuple<DType, int>> {};

TEST_P(RefMoeTest, MatchesNaiveSparseMoeBlock) {
  const auto [dtype, norm] = GetParam();
  const std::vector<float> x = Random(kT * kH, 40);
  const MoeWeights w = MakeMoeWeights(dtype, 41);
  // Rows are tokens 3..9 of 8 real tokens: rows 5 and 6 are padding.
  Meta meta = Meta::Tokens(8, 16);
  const std::vector<float> out = RunMoe(x, w, norm, /*row_offset=*/3, meta);
  std::vector<double> want(kT * kH, 0.0);
  for (int64_t t = 0; t < kReal; ++t) {
    const std::vector<double> logits =
        NaiveLinear({x.begin() + t * kH, x.begin() + (t + 1) * kH}, w.router.values, 1, 1, kH, kE);
    const Routes routes = NaiveRoute(logits, kTopK, norm);
    for (int64_t j = 0; j < kTopK; ++j) {
      const std::vector<double> y =
          NaiveExpert(x.data() + t * kH, w.gate, w.up, w.down, routes.ids[j]);
      for (int64_t c = 0; c < kH; ++c)
        want[t * kH + c] += routes.weights[j] * y[c];
    }
  }
  ExpectClose(out, want, kTol, "moe");
}

// RefMoe == the grouped pipeline == the expert-batched pipeline.
TEST_P(RefMoeTest, AgreesWithBothDecomposedPipelines) {
  const auto [dtype, norm] = GetParam();
  constexpr int64_t kP = kT * kTopK, kSlots = std::min(kE, kP);
  const std::vector<float> x = Random(kT * kH, 42);
  const MoeWeights w = MakeMoeWeights(dtype, 43);
  Meta meta = Meta::Tokens(kReal, kT);
  const ForwardMetaView* view = meta.view();
  const std::vector<float> fused = RunMoe(x, w, norm, 0, meta);

  std::vector<float> logits = Poisoned(kT * kE), route_weights = Poisoned(kT * kTopK);
  std::vector<int32_t> ids = PoisonedI32(kT * kTopK);
  RunKernel(RefLinear, {F32(x, {kT, kH}), w.router.arg({kE, kH})}, {F32(logits, {kT, kE})});
  RunKernel(RefTopkRoute, {F32(logits, {kT, kE})},
            {I32(ids, {kT, kTopK}), F32(route_weights, {kT, kTopK})},
            TopkRouteParams{.top_k = kTopK, .norm_topk_prob = norm, .row_offset = 0},
            {.meta = view});

  // Grouped: align -> permute -> gate/up -> down -> unpermute.
  std::vector<int32_t> sorted = PoisonedI32(kP), offsets = PoisonedI32(kE + 1);
  std::vector<float> xp = Poisoned(kP * kH), hp = Poisoned(kP * kI), yp = Poisoned(kP * kH);
  std::vector<float> grouped = Poisoned(kT * kH);
  RunKernel(RefMoeAlign, {I32(ids, {kT, kTopK})}, {I32(sorted, {kP}), I32(offsets, {kE + 1})},
            NumExpertsParams{.num_experts = kE});
  RunKernel(RefMoePermute, {F32(x, {kT, kH}), I32(sorted, {kP})}, {F32(xp, {kP, kH})},
            TopKParams{.top_k = kTopK});
  RunKernel(RefGroupedMatmulSiluMul,
            {F32(xp, {kP, kH}), I32(offsets, {kE + 1}), w.gate.arg(), w.up.arg()},
            {F32(hp, {kP, kI})});
  RunKernel(RefGroupedMatmul, {F32(hp, {kP, kI}), I32(offsets, {kE + 1}), w.down.arg()},
            {F32(yp, {kP, kH})});
  RunKernel(RefMoeUnpermuteReduce,
            {F32(yp, {kP, kH}), I32(sorted, {kP}), F32(route_weights, {kT, kTopK})},
            {F32(grouped, {kT, kH})}, TopKParams{.top_k = kTopK});
  ExpectClose(grouped, fused, 1e-5, "grouped pipeline vs RefMoe");

  // Unfused (compile-model --no-fuse): gate and up GEMMs, then silu_mul over
  // all P = T * k pair rows. silu_mul has no ForwardMeta, so pair rows at or
  // past T are computed like the rest (masking them by the token count once
  // made unfused prefill wrong).
  std::vector<float> gp = Poisoned(kP * kI), up = Poisoned(kP * kI), hu = Poisoned(kP * kI);
  RunKernel(RefGroupedMatmul, {F32(xp, {kP, kH}), I32(offsets, {kE + 1}), w.gate.arg()},
            {F32(gp, {kP, kI})});
  RunKernel(RefGroupedMatmul, {F32(xp, {kP, kH}), I32(offsets, {kE + 1}), w.up.arg()},
            {F32(up, {kP, kI})});
  RunKernel(RefSiluMul, {F32(gp, {kP, kI}), F32(up, {kP, kI})}, {F32(hu, {kP, kI})});
  ExpectClose(hu, hp, 1e-6, "unfused gate/up + silu_mul vs grouped_matmul_silu_mul");

  // Expert-batched: batch -> gate/up -> down -> combine.
  std::vector<int32_t> experts = PoisonedI32(kSlots), pairs = PoisonedI32(kSlots * kT);
  std::vector<float> h = Poisoned(kP * kI), y = Poisoned(kP * kH), batched = Poisoned(kT * kH);
  RunKernel(RefMoeExpertBatch, {I32(ids, {kT, kTopK})},
            {I32(experts, {kSlots}), I32(pairs, {kSlots, kT})},
            NumExpertsParams{.num_experts = kE});
  RunKernel(RefExpertBatchedGateUpSilu,
            {F32(x, {kT, kH}), I32(experts, {kSlots}), I32(pairs, {kSlots, kT}), w.gate.arg(),
             w.up.arg()},
            {F32(h, {kP, kI})}, TopKParams{.top_k = kTopK});
  RunKernel(RefExpertBatchedDown,
            {F32(h, {kP, kI}), I32(experts, {kSlots}), I32(pairs, {kSlots, kT}), w.down.arg()},
            {F32(y, {kP, kH})});
  RunKernel(RefMoeCombine, {F32(y, {kP, kH}), F32(route_weights, {kT, kTopK})},
            {F32(batched, {kT, kH})}, {.meta = view});
  ExpectClose(batched, fused, 1e-5, "expert-batched pipeline vs RefMoe");
  ExpectZeroRows(fused, kReal, kT, kH, "moe");
}

INSTANTIATE_TEST_SUITE_P(Weights, RefMoeTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16),
                                            ::testing::Values(0, 1)),
                         [](const auto& info) {
                           return std::string(DTypeName(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_norm" : "_nonorm");
                         });

// The fused block with every routing mode (kRouteCases) against the naive block: the bias is
// its last operand and only moves the choice.
class RefMoeRouteModes : public ::testing::TestWithParam<RouteCase> {};

TEST_P(RefMoeRouteModes, MatchNaiveSparseMoeBlock) {
  const RouteCase& c = GetParam();
  const int64_t e = c.num_experts;
  const std::vector<float> x = Random(kT * kH, 44);
  const Weight router = MakeWeight(e * kH, DType::kF32, 45, 1.5f);
  const StackedWeight gate = MakeStacked(e, kI, kH, DType::kF32, 46);
  const StackedWeight up = MakeStacked(e, kI, kH, DType::kF32, 47);
  const StackedWeight down = MakeStacked(e, kH, kI, DType::kF32, 48);
  const std::vector<float> bias = c.bias ? Random(e, 49, 0.5f) : std::vector<float>{};
  Meta meta = Meta::Tokens(kReal, kT);
  std::vector<float> out = Poisoned(kT * kH);
  std::vector<TensorArg> in = {F32(x, {kT, kH}), router.arg({e, kH}), gate.arg(), up.arg(),
                               down.arg()};
  if (c.bias) in.push_back(F32(bias, {e}));
  RunKernel(RefMoe, in, {F32(out, {kT, kH})}, MoeParams{c.params}, {.meta = meta.view()});
  std::vector<double> want(kT * kH, 0.0);
  for (int64_t t = 0; t < kReal; ++t) {
    const std::vector<double> logits =
        NaiveLinear({x.begin() + t * kH, x.begin() + (t + 1) * kH}, router.values, 1, 1, kH, e);
    const Routes routes = NaiveGeneralRoute(logits, bias, c.params);
    for (int64_t j = 0; j < c.params.top_k; ++j) {
      const std::vector<double> y = NaiveExpert(x.data() + t * kH, gate, up, down, routes.ids[j]);
      for (int64_t col = 0; col < kH; ++col)
        want[t * kH + col] += routes.weights[j] * y[col];
    }
  }
  ExpectClose(out, want, kTol, c.name);
}

INSTANTIATE_TEST_SUITE_P(Modes, RefMoeRouteModes, ::testing::ValuesIn(kRouteCases));

// ---- Block-scaled fp8 weights --------------------------------------------------

// Every matmul kernel reads a block-scaled fp8 weight as its dequantized values: the same
// kernel on the dequantized f32 weight gives the same result, and linear matches a naive
// double-precision product. Blocks [4, 8] leave partial edge blocks on every size here
// (N 23 / K 37, I 11 / H 19).
Weight DequantizedWeight(const testing::Fp8BlockWeight& q) {
  return Weight{DType::kF32, q.Dequantized(), {}};
}
StackedWeight DequantizedStack(const testing::Fp8BlockWeight& q) {
  StackedWeight w{q.experts, q.n, q.k, {}, {}};
  const std::vector<float> all = q.Dequantized();
  for (int64_t e = 0; e < q.experts; ++e) {
    w.experts.push_back(
        Weight{DType::kF32, {all.begin() + e * q.n * q.k, all.begin() + (e + 1) * q.n * q.k}, {}});
  }
  return w;
}

// mla_attention reads a block-scaled fp8 kv_b as its dequantized values: kv_b [3 * (5 + 3),
// 10] in [4, 8] blocks (partial in both dimensions), prefill of 6 tokens then one decode.
TEST(RefFp8Test, MlaAttentionReadsTheDequantizedKvB) {
  constexpr int64_t kMlaHeads = 3, kRank = 10, kRope = 4, kNope = 5, kV = 3;
  constexpr int64_t kRow = kRank + kRope, kLen = 7, kMlaBlockSize = 4;
  const testing::Fp8BlockWeight kv_b(0, kMlaHeads * (kNope + kV), kRank, 4, 8, 96);
  const Weight dequantized = DequantizedWeight(kv_b);
  const std::vector<float> q_nope = Random(kLen * kMlaHeads * kNope, 97);
  const std::vector<float> q_pe = Random(kLen * kMlaHeads * kRope, 98);
  const std::vector<float> latent = Random(kLen * kRank, 99);
  const std::vector<float> k_pe = Random(kLen * kRope, 100);
  const MlaAttentionParams params{.layer = 0,
                                  .num_heads = kMlaHeads,
                                  .kv_lora_rank = kRank,
                                  .qk_nope_head_dim = kNope,
                                  .qk_rope_head_dim = kRope,
                                  .v_head_dim = kV,
                                  .scale = 0.4};
  const std::vector<int32_t> blocks = {1, 0};
  // Runs the prefill then the decode step over a fresh cache with kv_b argument `w`.
  auto run = [&](const TensorArg& w) {
    std::vector<float> cache(2 * kMlaBlockSize * kRow, kNaN);
    testing::UniformKvCacheView kv;
    kv.num_layers = 1;
    kv.num_blocks = 2;
    kv.block_size = kMlaBlockSize;
    kv.num_kv_heads = 1;
    kv.head_dim = kRow;
    kv.kind = KvLayerKind::kLatent;
    kv.Bind(cache.data(), nullptr);
    std::vector<float> out = Poisoned(kLen * kMlaHeads * kV);
    auto step = [&](Meta& meta, int64_t first, int64_t count) {
      auto rows = [&](const std::vector<float>& x, int64_t width) {
        return std::vector<float>(x.begin() + first * width, x.begin() + (first + count) * width);
      };
      const std::vector<float> qn = rows(q_nope, kMlaHeads * kNope),
                               qp = rows(q_pe, kMlaHeads * kRope), lat = rows(latent, kRank),
                               kp = rows(k_pe, kRope);
      std::vector<float> o = Poisoned(count * kMlaHeads * kV);
      RunKernel(RefMlaAttention,
                {F32(qn, {count, kMlaHeads * kNope}), F32(qp, {count, kMlaHeads * kRope}),
                 F32(lat, {count, kRank}), F32(kp, {count, kRope}), w},
                {F32(o, {count, kMlaHeads * kV})}, params, {.meta = meta.view(), .kv = &kv.view});
      std::copy(o.begin(), o.end(), out.begin() + first * kMlaHeads * kV);
    };
    Meta prefill(6, 1, 2, kMlaBlockSize, {{0, 6, blocks}});
    step(prefill, 0, 6);
    Meta decode(1, 1, 2, kMlaBlockSize, {{6, 1, blocks}});
    step(decode, 6, 1);
    return out;
  };
  const std::vector<float> got = run(kv_b.arg());
  const std::vector<float> want = run(dequantized.arg({kMlaHeads * (kNope + kV), kRank}));
  ExpectClose(got, want, 1e-6, "fp8 mla_attention vs f32 kv_b of the dequantized weight");
}

TEST(RefFp8Test, Int8LinearReadsTheDequantizedWeight) {
  const std::vector<float> x = Random(kT * kK, 67);
  for (const int32_t block_cols : {8, 32, 5}) {
    const testing::Fp8BlockWeight w(0, kN, kK, 1, block_cols, 68, 1.0f, QuantScheme::kInt8Block);
    const Weight f = DequantizedWeight(w);
    std::vector<float> out = Poisoned(kT * kN);
    RunKernel(RefLinear, {F32(x, {kT, kK}), w.arg()}, {F32(out, {kT, kN})});
    ExpectClose(out, NaiveLinear(x, f.values, kT, kT, kK, kN), kTol,
                "int8 linear, blocks of " + std::to_string(block_cols));
  }
}

// x rounded to int8 per block of 32 by RoundToQ8Block, dequantized (q * d).
std::vector<float> RoundedToQ8(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  int8_t q[kQ8Block];
  for (size_t b = 0; b < x.size(); b += kQ8Block) {
    const float d = RoundToQ8Block(x.data() + b, q);
    for (int64_t i = 0; i < kQ8Block; ++i)
      y[b + i] = static_cast<float>(q[i]) * d;
  }
  return y;
}

// The rule by hand: d = max|x| / 127 (here 0.25, exact), q = x / d rounded, ties to even.
TEST(RefFp8Test, RoundToQ8BlockRoundsByTheBlockMaximum) {
  std::vector<float> x(kQ8Block, 0.0f);
  x[0] = -31.75f;  // 127 * 0.25
  x[1] = 0.125f;   // 0.5 -> 0
  x[2] = 0.375f;   // 1.5 -> 2
  x[3] = -0.625f;  // -2.5 -> -2
  x[4] = 1.0f;     // 4
  x[5] = 31.7f;    // 126.8 -> 127
  int8_t q[kQ8Block];
  EXPECT_EQ(RoundToQ8Block(x.data(), q), 0.25f);
  const int8_t want[6] = {-127, 0, 2, -2, 4, 127};
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(q[i], want[i]) << "input " << i;
  for (int64_t i = 6; i < kQ8Block; ++i)
    EXPECT_EQ(q[i], 0) << "input " << i;
  std::vector<float> zero(kQ8Block, 0.0f);
  EXPECT_EQ(RoundToQ8Block(zero.data(), q), 0.0f);
  EXPECT_EQ(q[0], 0);
  // A NaN or an infinity anywhere in the block: d is NaN, so its products are NaN.
  for (const float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> y = x;
    y[17] = bad;
    EXPECT_TRUE(std::isnan(RoundToQ8Block(y.data(), q)));
    for (int64_t i = 0; i < kQ8Block; ++i)
      EXPECT_EQ(q[i], 0);
  }
}

// int8 / int4 weights with blocks of a multiple of 32 multiply by the input rounded to int8
// per 32 (RoundsInputToInt8); others (blocks of 8, K % 32 != 0) by the input itself.
TEST(RefFp8Test, Int8AndInt4LinearMultiplyTheRoundedInput) {
  constexpr int64_t kK96 = 96;  // blocks of 64 leave a partial one
  const std::vector<float> x = Random(kT * kK96, 69);
  const std::vector<float> rounded = RoundedToQ8(x);
  for (const int32_t block_cols : {32, 64}) {
    const testing::Int4BlockWeight w4(0, kN, kK96, block_cols, 70);
    ASSERT_TRUE(RoundsInputToInt8(w4.quant, kK96));
    std::vector<float> out = Poisoned(kT * kN);
    RunKernel(RefLinear, {F32(x, {kT, kK96}), w4.arg()}, {F32(out, {kT, kN})});
    ExpectClose(out, NaiveLinear(rounded, w4.Dequantized(), kT, kT, kK96, kN), 1e-5,
                "int4 linear, blocks of " + std::to_string(block_cols));
    const testing::Fp8BlockWeight w8(0, kN, kK96, 1, block_cols, 71, 1.0f, QuantScheme::kInt8Block);
    RunKernel(RefLinear, {F32(x, {kT, kK96}), w8.arg()}, {F32(out, {kT, kN})});
    ExpectClose(out, NaiveLinear(rounded, DequantizedWeight(w8).values, kT, kT, kK96, kN), 1e-5,
                "int8 linear, blocks of " + std::to_string(block_cols));
  }
  // Blocks of 16: the input as it is.
  const testing::Fp8BlockWeight w16(0, kN, kK96, 1, 16, 72, 1.0f, QuantScheme::kInt8Block);
  ASSERT_FALSE(RoundsInputToInt8(w16.quant, kK96));
  std::vector<float> out = Poisoned(kT * kN);
  RunKernel(RefLinear, {F32(x, {kT, kK96}), w16.arg()}, {F32(out, {kT, kN})});
  ExpectClose(out, NaiveLinear(x, DequantizedWeight(w16).values, kT, kT, kK96, kN), kTol,
              "int8 linear, blocks of 16");
}

TEST(RefFp8Test, DenseMatmulsReadTheDequantizedWeight) {
  const std::vector<float> x = Random(kT * kK, 60);
  const testing::Fp8BlockWeight wg(0, kN, kK, 4, 8, 61), wu(0, kN, kK, 4, 8, 62);
  const Weight fg = DequantizedWeight(wg), fu = DequantizedWeight(wu);
  std::vector<float> out = Poisoned(kT * kN), want = Poisoned(kT * kN);
  RunKernel(RefLinear, {F32(x, {kT, kK}), wg.arg()}, {F32(out, {kT, kN})});
  RunKernel(RefLinear, {F32(x, {kT, kK}), fg.arg({kN, kK})}, {F32(want, {kT, kN})});
  ExpectClose(out, want, 1e-6, "fp8 linear vs f32 linear of the dequantized weight");
  ExpectClose(out, NaiveLinear(x, fg.values, kT, kT, kK, kN), kTol, "fp8 linear vs naive");

  RunKernel(RefLinearSiluMul, {F32(x, {kT, kK}), wg.arg(), wu.arg()}, {F32(out, {kT, kN})});
  RunKernel(RefLinearSiluMul, {F32(x, {kT, kK}), fg.arg({kN, kK}), fu.arg({kN, kK})},
            {F32(want, {kT, kN})});
  ExpectClose(out, want, 1e-6, "fp8 linear_silu_mul");

  // mlp: gate/up [I, H], down [H, I].
  const std::vector<float> xh = Random(kT * kH, 63);
  const testing::Fp8BlockWeight g(0, kI, kH, 4, 8, 64), u(0, kI, kH, 4, 8, 65),
      d(0, kH, kI, 4, 8, 66);
  const Weight fgi = DequantizedWeight(g), fui = DequantizedWeight(u), fdi = DequantizedWeight(d);
  Meta meta = Meta::Tokens(kReal, kT);
  std::vector<float> mlp = Poisoned(kT * kH), mlp_want = Poisoned(kT * kH);
  RunKernel(RefMlp, {F32(xh, {kT, kH}), g.arg(), u.arg(), d.arg()}, {F32(mlp, {kT, kH})},
            {.meta = meta.view()});
  RunKernel(RefMlp, {F32(xh, {kT, kH}), fgi.arg({kI, kH}), fui.arg({kI, kH}), fdi.arg({kH, kI})},
            {F32(mlp_want, {kT, kH})}, {.meta = meta.view()});
  ExpectClose(mlp, mlp_want, 1e-6, "fp8 mlp");
}

TEST(RefFp8Test, MoeKernelsReadPerExpertScales) {
  constexpr int64_t kP = kT * kTopK, kSlots = std::min(kE, kP);
  const std::vector<float> x = Random(kT * kH, 70);
  const testing::Fp8BlockWeight gate(kE, kI, kH, 4, 8, 71), up(kE, kI, kH, 4, 8, 72),
      down(kE, kH, kI, 4, 8, 73);
  MoeWeights f{MakeWeight(kE * kH, DType::kF32, 74), DequantizedStack(gate), DequantizedStack(up),
               DequantizedStack(down)};
  Meta meta = Meta::Tokens(kReal, kT);
  const std::vector<float> want = RunMoe(x, f, /*norm=*/1, 0, meta);
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefMoe, {F32(x, {kT, kH}), f.router.arg({kE, kH}), gate.arg(), up.arg(), down.arg()},
            {F32(out, {kT, kH})}, MoeParams{{.top_k = kTopK, .norm_topk_prob = 1}},
            {.meta = meta.view()});
  ExpectClose(out, want, 1e-6, "fp8 moe");

  // The grouped and expert-batched kernels, on one set of routes.
  std::vector<float> logits = Poisoned(kT * kE), route_weights = Poisoned(kT * kTopK);
  std::vector<int32_t> ids = PoisonedI32(kT * kTopK);
  RunKernel(RefLinear, {F32(x, {kT, kH}), f.router.arg({kE, kH})}, {F32(logits, {kT, kE})});
  RunKernel(RefTopkRoute, {F32(logits, {kT, kE})},
            {I32(ids, {kT, kTopK}), F32(route_weights, {kT, kTopK})},
            TopkRouteParams{.top_k = kTopK, .norm_topk_prob = 1}, {.meta = meta.view()});
  std::vector<int32_t> sorted = PoisonedI32(kP), offsets = PoisonedI32(kE + 1);
  std::vector<float> xp = Poisoned(kP * kH);
  RunKernel(RefMoeAlign, {I32(ids, {kT, kTopK})}, {I32(sorted, {kP}), I32(offsets, {kE + 1})},
            NumExpertsParams{.num_experts = kE});
  RunKernel(RefMoePermute, {F32(x, {kT, kH}), I32(sorted, {kP})}, {F32(xp, {kP, kH})},
            TopKParams{.top_k = kTopK});
  std::vector<float> hp = Poisoned(kP * kI), hp_want = Poisoned(kP * kI);
  RunKernel(RefGroupedMatmulSiluMul,
            {F32(xp, {kP, kH}), I32(offsets, {kE + 1}), gate.arg(), up.arg()}, {F32(hp, {kP, kI})});
  RunKernel(RefGroupedMatmulSiluMul,
            {F32(xp, {kP, kH}), I32(offsets, {kE + 1}), f.gate.arg(), f.up.arg()},
            {F32(hp_want, {kP, kI})});
  ExpectClose(hp, hp_want, 1e-6, "fp8 grouped_matmul_silu_mul");
  std::vector<float> yp = Poisoned(kP * kH), yp_want = Poisoned(kP * kH);
  RunKernel(RefGroupedMatmul, {F32(hp, {kP, kI}), I32(offsets, {kE + 1}), down.arg()},
            {F32(yp, {kP, kH})});
  RunKernel(RefGroupedMatmul, {F32(hp, {kP, kI}), I32(offsets, {kE + 1}), f.down.arg()},
            {F32(yp_want, {kP, kH})});
  ExpectClose(yp, yp_want, 1e-6, "fp8 grouped_matmul");

  std::vector<int32_t> experts = PoisonedI32(kSlots), pairs = PoisonedI32(kSlots * kT);
  RunKernel(RefMoeExpertBatch, {I32(ids, {kT, kTopK})},
            {I32(experts, {kSlots}), I32(pairs, {kSlots, kT})},
            NumExpertsParams{.num_experts = kE});
  std::vector<float> h = Poisoned(kP * kI), h_want = Poisoned(kP * kI);
  const std::vector<TensorArg> layout = {I32(experts, {kSlots}), I32(pairs, {kSlots, kT})};
  RunKernel(RefExpertBatchedGateUpSilu,
            {F32(x, {kT, kH}), layout[0], layout[1], gate.arg(), up.arg()}, {F32(h, {kP, kI})},
            TopKParams{.top_k = kTopK});
  RunKernel(RefExpertBatchedGateUpSilu,
            {F32(x, {kT, kH}), layout[0], layout[1], f.gate.arg(), f.up.arg()},
            {F32(h_want, {kP, kI})}, TopKParams{.top_k = kTopK});
  ExpectClose(h, h_want, 1e-6, "fp8 expert_batched_gate_up_silu");
  std::vector<float> y = Poisoned(kP * kH), y_want = Poisoned(kP * kH);
  RunKernel(RefExpertBatchedDown, {F32(h, {kP, kI}), layout[0], layout[1], down.arg()},
            {F32(y, {kP, kH})});
  RunKernel(RefExpertBatchedDown, {F32(h, {kP, kI}), layout[0], layout[1], f.down.arg()},
            {F32(y_want, {kP, kH})});
  ExpectClose(y, y_want, 1e-6, "fp8 expert_batched_down");
}

// ---- MXFP4 weights --------------------------------------------------------------

// A hand-computed [2, 64] mxfp4 weight: row 0 holds codes 1 (0.5), 2 (1), 7 (6), 0xf (-6) at
// columns 0..3 under scale 128 (2) and codes 0xc (-2), 9 (-0.5) at columns 32, 33 under scale
// 125 (0.25); row 1 is 6 everywhere in block 0 (scale 127: 1) and -0 in block 1 (scale 0:
// 2^-127). x = 1, 2, ..., 64: row 0 = 2 * (0.5 + 2 + 18 - 24) + 0.25 * (-2 * 33 - 0.5 * 34)
// = -27.75, row 1 = 6 * (1 + ... + 32) = 3168.
TEST(RefMxfp4Test, LinearDecodesNibblesAndE8m0Scales) {
  std::vector<uint8_t> codes(2 * 32, 0x00);
  codes[0] = 0x21;   // column 0 low nibble, column 1 high nibble
  codes[1] = 0xf7;   // column 2 = 6, column 3 = -6
  codes[16] = 0x9c;  // column 32 = -2, column 33 = -0.5
  std::fill(codes.begin() + 32, codes.begin() + 48, 0x77);
  std::fill(codes.begin() + 48, codes.end(), 0x88);
  const std::vector<uint8_t> scales = {128, 125, 127, 0};
  TensorArg w = Arg(codes.data(), DType::kMxfp4, {2, 64});
  w.quant = WeightQuant{QuantScheme::kMxfp4, 1, 32};
  w.scales = scales.data();
  std::vector<float> x(64);
  std::iota(x.begin(), x.end(), 1.0f);
  std::vector<float> out = Poisoned(2);
  RunKernel(RefLinear, {F32(x, {1, 64}), w}, {F32(out, {1, 2})});
  EXPECT_EQ(out[0], -27.75f);
  EXPECT_EQ(out[1], 3168.0f);
}

StackedWeight DequantizedStack(const testing::Mxfp4Weight& q) {
  StackedWeight w{q.experts, q.n, q.k, {}, {}};
  const std::vector<float> all = q.Dequantized();
  for (int64_t e = 0; e < q.experts; ++e) {
    w.experts.push_back(
        Weight{DType::kF32, {all.begin() + e * q.n * q.k, all.begin() + (e + 1) * q.n * q.k}, {}});
  }
  return w;
}

// The stacked kernels read expert e's packed codes and scales through expert_data[e] /
// expert_scales[e], as f32 weights holding the dequantized values.
TEST(RefMxfp4Test, GroupedAndExpertBatchedKernelsReadPerExpertScales) {
  constexpr int64_t kK64 = 64, kP = kT * kTopK, kSlots = std::min(kE, kP);
  const std::vector<float> x = Random(kT * kK64, 80);
  const testing::Mxfp4Weight w(kE, kN, kK64, 81);
  const StackedWeight f = DequantizedStack(w);
  std::vector<int32_t> ids(kT * kTopK);
  for (int64_t i = 0; i < kT * kTopK; ++i)
    ids[i] = static_cast<int32_t>((i * 7 + i / kTopK) % kE);
  std::vector<int32_t> sorted = PoisonedI32(kP), offsets = PoisonedI32(kE + 1);
  RunKernel(RefMoeAlign, {I32(ids, {kT, kTopK})}, {I32(sorted, {kP}), I32(offsets, {kE + 1})},
            NumExpertsParams{.num_experts = kE});
  std::vector<float> xp = Poisoned(kP * kK64);
  RunKernel(RefMoePermute, {F32(x, {kT, kK64}), I32(sorted, {kP})}, {F32(xp, {kP, kK64})},
            TopKParams{.top_k = kTopK});
  std::vector<float> yp = Poisoned(kP * kN), yp_want = Poisoned(kP * kN);
  RunKernel(RefGroupedMatmul, {F32(xp, {kP, kK64}), I32(offsets, {kE + 1}), w.arg()},
            {F32(yp, {kP, kN})});
  RunKernel(RefGroupedMatmul, {F32(xp, {kP, kK64}), I32(offsets, {kE + 1}), f.arg()},
            {F32(yp_want, {kP, kN})});
  ExpectClose(yp, yp_want, kTol, "mxfp4 grouped_matmul");

  std::vector<int32_t> experts = PoisonedI32(kSlots), pairs = PoisonedI32(kSlots * kT);
  RunKernel(RefMoeExpertBatch, {I32(ids, {kT, kTopK})},
            {I32(experts, {kSlots}), I32(pairs, {kSlots, kT})},
            NumExpertsParams{.num_experts = kE});
  const std::vector<float> h = Random(kP * kK64, 82);
  std::vector<float> y = Poisoned(kP * kN), y_want = Poisoned(kP * kN);
  RunKernel(RefExpertBatchedDown,
            {F32(h, {kP, kK64}), I32(experts, {kSlots}), I32(pairs, {kSlots, kT}), w.arg()},
            {F32(y, {kP, kN})});
  RunKernel(RefExpertBatchedDown,
            {F32(h, {kP, kK64}), I32(experts, {kSlots}), I32(pairs, {kSlots, kT}), f.arg()},
            {F32(y_want, {kP, kN})});
  ExpectClose(y, y_want, kTol, "mxfp4 expert_batched_down");
}

// ---- GPT-OSS experts ----------------------------------------------------------

// transformers' GptOssExperts._apply_gate, in double.
double NaiveClampedSwiglu(double gate, double up, double alpha, double limit) {
  const double g = std::min(gate, limit);
  const double u = std::clamp(up, -limit, limit);
  return (u + 1.0) * g / (1.0 + std::exp(-alpha * g));
}

TEST(RefClampedSwigluTest, ClampsGateAboveAndUpBothSidesOnInterleavedPairs) {
  // Pairs (gate, up): inside the limit, gate above it, up below -limit, up above limit.
  const std::vector<float> x = {0.5f, -0.25f, 3.0f, 0.5f, -1.0f, -4.0f, 1.0f, 2.5f};
  std::vector<float> out = Poisoned(4);
  RunKernel(RefClampedSwiglu, {F32(x, {1, 8})}, {F32(out, {1, 4})},
            ClampedSwigluParams{.alpha = 1.702, .limit = 2.0});
  const std::vector<double> want = {
      NaiveClampedSwiglu(0.5, -0.25, 1.702, 2.0), NaiveClampedSwiglu(2.0, 0.5, 1.702, 2.0),
      NaiveClampedSwiglu(-1.0, -2.0, 1.702, 2.0), NaiveClampedSwiglu(1.0, 2.0, 1.702, 2.0)};
  ExpectClose(out, want, 1e-6, "clamped_swiglu");
  // The gate above the limit saturates at it: (0.5 + 1) * 2 * sigmoid(1.702 * 2).
  EXPECT_NEAR(out[1], 1.5 * 2.0 / (1.0 + std::exp(-3.404)), 1e-6);
}

// GPT-OSS's MoE: router + bias, softmax over the chosen logits, [in, out] experts with
// interleaved gate/up columns and biases.
struct OssMoeWeights {
  Weight router, router_bias;
  StackedWeight gate_up;  // [E, H, 2I]
  StackedWeight down;     // [E, I, H]
  Weight gate_up_bias, down_bias;
};
constexpr int64_t kOssI = 19;
constexpr float kOssLimit = 0.75f;

OssMoeWeights MakeOssMoeWeights(DType dtype, uint32_t seed) {
  return {
      MakeWeight(kE * kH, dtype, seed, 1.0f),          MakeWeight(kE, dtype, seed + 1, 1.0f),
      MakeStacked(kE, kH, 2 * kOssI, dtype, seed + 2), MakeStacked(kE, kOssI, kH, dtype, seed + 3),
      MakeWeight(kE * 2 * kOssI, dtype, seed + 4),     MakeWeight(kE * kH, dtype, seed + 5)};
}

std::vector<TensorArg> OssMoeInputs(const std::vector<float>& x, const OssMoeWeights& w) {
  return {F32(x, {kT, kH}),         w.router.arg({kE, kH}),
          w.gate_up.arg(),          w.down.arg(),
          w.router_bias.arg({kE}),  w.gate_up_bias.arg({kE, 2 * kOssI}),
          w.down_bias.arg({kE, kH})};
}

const MoeParams kOssMoe{{.top_k = kTopK, .norm_topk_prob = 1, .row_offset = 0},
                        /*activation=*/1,
                        /*swiglu_alpha=*/1.702,
                        /*swiglu_limit=*/kOssLimit};

class RefOssMoeTest : public ::testing::TestWithParam<DType> {};

TEST_P(RefOssMoeTest, MatchesNaiveGptOssMlp) {
  const std::vector<float> x = Random(kT * kH, 90);
  const OssMoeWeights w = MakeOssMoeWeights(GetParam(), 91);
  Meta meta = Meta::Tokens(kReal, kT);
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefMoe, OssMoeInputs(x, w), {F32(out, {kT, kH})}, kOssMoe, {.meta = meta.view()});
  std::vector<double> want(kT * kH, 0.0);
  int clamped = 0;
  for (int64_t t = 0; t < kReal; ++t) {
    std::vector<double> logits =
        NaiveLinear({x.begin() + t * kH, x.begin() + (t + 1) * kH}, w.router.values, 1, 1, kH, kE);
    for (int64_t e = 0; e < kE; ++e)
      logits[e] += w.router_bias.values[e];
    // softmax over the top-k logits = softmax over all, renormalised over the chosen.
    const Routes routes = NaiveRoute(logits, kTopK, /*norm=*/true);
    for (int64_t j = 0; j < kTopK; ++j) {
      const int32_t e = routes.ids[j];
      std::vector<double> h(kOssI);
      for (int64_t i = 0; i < kOssI; ++i) {
        double g = w.gate_up_bias.values[e * 2 * kOssI + 2 * i];
        double u = w.gate_up_bias.values[e * 2 * kOssI + 2 * i + 1];
        for (int64_t c = 0; c < kH; ++c) {
          g += double(x[t * kH + c]) * w.gate_up.at(e, c, 2 * i);
          u += double(x[t * kH + c]) * w.gate_up.at(e, c, 2 * i + 1);
        }
        clamped += (g > kOssLimit) + (std::abs(u) > kOssLimit);
        h[i] = NaiveClampedSwiglu(g, u, 1.702, kOssLimit);
      }
      for (int64_t c = 0; c < kH; ++c) {
        double y = w.down_bias.values[e * kH + c];
        for (int64_t i = 0; i < kOssI; ++i)
          y += h[i] * w.down.at(e, i, c);
        want[t * kH + c] += routes.weights[j] * y;
      }
    }
  }
  EXPECT_GT(clamped, 0) << "the case should exercise the clamps";
  ExpectClose(out, want, kTol, "moe clamped_swiglu");
  ExpectZeroRows(out, kReal, kT, kH, "moe clamped_swiglu");
}

// RefMoe (activation 1) == moe-lower's prefill pipeline (grouped_matmul_kn) == its decode
// pipeline (expert_batched_matmul_kn).
TEST_P(RefOssMoeTest, AgreesWithBothDecomposedPipelines) {
  constexpr int64_t kP = kT * kTopK, kSlots = std::min(kE, kP), k2I = 2 * kOssI;
  const std::vector<float> x = Random(kT * kH, 92);
  const OssMoeWeights w = MakeOssMoeWeights(GetParam(), 93);
  Meta meta = Meta::Tokens(kReal, kT);
  const ForwardMetaView* view = meta.view();
  std::vector<float> fused = Poisoned(kT * kH);
  RunKernel(RefMoe, OssMoeInputs(x, w), {F32(fused, {kT, kH})}, kOssMoe, {.meta = view});

  std::vector<float> logits = Poisoned(kT * kE), biased = Poisoned(kT * kE);
  std::vector<float> route_weights = Poisoned(kT * kTopK);
  std::vector<int32_t> ids = PoisonedI32(kT * kTopK);
  RunKernel(RefLinear, {F32(x, {kT, kH}), w.router.arg({kE, kH})}, {F32(logits, {kT, kE})});
  RunKernel(RefBiasAdd, {F32(logits, {kT, kE}), w.router_bias.arg({kE})}, {F32(biased, {kT, kE})});
  RunKernel(RefTopkRoute, {F32(biased, {kT, kE})},
            {I32(ids, {kT, kTopK}), F32(route_weights, {kT, kTopK})},
            static_cast<const TopkRouteParams&>(kOssMoe), {.meta = view});
  const ClampedSwigluParams act{.alpha = 1.702, .limit = kOssLimit};

  std::vector<int32_t> sorted = PoisonedI32(kP), offsets = PoisonedI32(kE + 1);
  std::vector<float> xp = Poisoned(kP * kH), gu = Poisoned(kP * k2I), hp = Poisoned(kP * kOssI);
  std::vector<float> yp = Poisoned(kP * kH), grouped = Poisoned(kT * kH);
  RunKernel(RefMoeAlign, {I32(ids, {kT, kTopK})}, {I32(sorted, {kP}), I32(offsets, {kE + 1})},
            NumExpertsParams{.num_experts = kE});
  RunKernel(RefMoePermute, {F32(x, {kT, kH}), I32(sorted, {kP})}, {F32(xp, {kP, kH})},
            TopKParams{.top_k = kTopK});
  RunKernel(
      RefGroupedMatmulKn,
      {F32(xp, {kP, kH}), I32(offsets, {kE + 1}), w.gate_up.arg(), w.gate_up_bias.arg({kE, k2I})},
      {F32(gu, {kP, k2I})});
  RunKernel(RefClampedSwiglu, {F32(gu, {kP, k2I})}, {F32(hp, {kP, kOssI})}, act);
  RunKernel(RefGroupedMatmulKn,
            {F32(hp, {kP, kOssI}), I32(offsets, {kE + 1}), w.down.arg(), w.down_bias.arg({kE, kH})},
            {F32(yp, {kP, kH})});
  RunKernel(RefMoeUnpermuteReduce,
            {F32(yp, {kP, kH}), I32(sorted, {kP}), F32(route_weights, {kT, kTopK})},
            {F32(grouped, {kT, kH})}, TopKParams{.top_k = kTopK});
  ExpectClose(grouped, std::vector<double>(fused.begin(), fused.end()), 1e-5, "grouped");

  std::vector<int32_t> batch_experts = PoisonedI32(kSlots), batch_pairs = PoisonedI32(kSlots * kT);
  std::vector<float> gu_b = Poisoned(kP * k2I), h_b = Poisoned(kP * kOssI);
  std::vector<float> y_b = Poisoned(kP * kH), batched = Poisoned(kT * kH);
  RunKernel(RefMoeExpertBatch, {I32(ids, {kT, kTopK})},
            {I32(batch_experts, {kSlots}), I32(batch_pairs, {kSlots, kT})},
            NumExpertsParams{.num_experts = kE});
  RunKernel(RefExpertBatchedMatmulKn,
            {F32(x, {kT, kH}), I32(batch_experts, {kSlots}), I32(batch_pairs, {kSlots, kT}),
             w.gate_up.arg(), w.gate_up_bias.arg({kE, k2I})},
            {F32(gu_b, {kP, k2I})}, TopKParams{.top_k = kTopK});
  RunKernel(RefClampedSwiglu, {F32(gu_b, {kP, k2I})}, {F32(h_b, {kP, kOssI})}, act);
  RunKernel(RefExpertBatchedMatmulKn,
            {F32(h_b, {kP, kOssI}), I32(batch_experts, {kSlots}), I32(batch_pairs, {kSlots, kT}),
             w.down.arg(), w.down_bias.arg({kE, kH})},
            {F32(y_b, {kP, kH})}, TopKParams{.top_k = 1});
  RunKernel(RefMoeCombine, {F32(y_b, {kP, kH}), F32(route_weights, {kT, kTopK})},
            {F32(batched, {kT, kH})}, {.meta = view});
  ExpectClose(batched, std::vector<double>(fused.begin(), fused.end()), 1e-5, "batched");
}

INSTANTIATE_TEST_SUITE_P(Weights, RefOssMoeTest,
                         ::testing::Values(DType::kF32, DType::kBF16, DType::kF16));

// ---- Layout -------------------------------------------------------------------

TEST(RefKernelsTest, SliceRowsCopiesRowsAndZeroesPastTheEnd) {
  std::vector<int32_t> x(kT * 3);
  std::iota(x.begin(), x.end(), 1);
  std::vector<int32_t> out = PoisonedI32(4 * 3);
  RunKernel(RefSliceRows, {I32(x, {kT, 3})}, {I32(out, {4, 3})},
            SliceRowsParams{.begin = 5, .rows = 4});
  EXPECT_EQ(out, (std::vector<int32_t>{16, 17, 18, 19, 20, 21, 0, 0, 0, 0, 0, 0}));

  const std::vector<float> xf = Random(kT * kH, 44);
  std::vector<float> outf = Poisoned(3 * kH);
  RunKernel(RefSliceRows, {F32(xf, {kT, kH})}, {F32(outf, {3, kH})},
            SliceRowsParams{.begin = 2, .rows = 3});
  ExpectClose(outf, std::vector<float>(xf.begin() + 2 * kH, xf.begin() + 5 * kH), 0.0, "slice");
}

TEST(RefKernelsTest, ConcatRowsCopiesBytesOfAnyDType) {
  const std::vector<uint16_t> a = {1, 2, 3, 4, 5, 6}, b = {7, 8}, c = {9, 10, 11, 12};
  std::vector<uint16_t> out(12, 0xffff);
  RunKernel(RefConcatRows,
            {Arg(a.data(), DType::kF16, {3, 2}), Arg(b.data(), DType::kF16, {1, 2}),
             Arg(c.data(), DType::kF16, {2, 2})},
            {Arg(out.data(), DType::kF16, {6, 2})});
  EXPECT_EQ(out, (std::vector<uint16_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
}

TEST(RefKernelsTest, AllGatherCopiesOnOneRankAndZeroesOtherwise) {
  const std::vector<float> x = Random(kT * kH, 45);
  std::vector<float> out = Poisoned(kT * kH);
  RunKernel(RefAllGather, {F32(x, {kT, kH})}, {F32(out, {kT, kH})},
            AllGatherParams{.world_size = 1});
  EXPECT_EQ(out, x);
  RunKernel(RefAllGather, {F32(x, {kT, kH})}, {F32(out, {kT, kH})},
            AllGatherParams{.world_size = 2});
  EXPECT_EQ(out, std::vector<float>(kT * kH, 0.0f));
}

}  // namespace
}  // namespace moegraph
