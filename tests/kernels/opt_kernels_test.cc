// Checks every optimised CPU kernel against its reference kernel at odd sizes
// (rows 1..131, K 37/129/300, N 23/50, experts 5 with top-3, head_dim
// 24/64/128), for f32, bf16 and f16 weights, with padding rows, bad routing
// entries, several thread counts and every ISA path the machine runs (AVX2, AVX-512);
// results must agree to 1e-4 relative and must not depend on the thread count or the ISA.
#include "kernels/cpu/opt_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ir/program.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/simd_gemm.h"
#include "kernels/cpu/simd_q8.h"
#include "support/half.h"
#include "tests/testing/kv_cache_view.h"
#include "tests/testing/tensors.h"

namespace moegraph {
namespace {

constexpr double kTol = 1e-4;
constexpr int kThreadCounts[] = {1, 2, 3};
const DType kWeightDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

#define SKIP_WITHOUT_AVX2() \
  if (!OptKernelsSupported()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU"

// ---- Tensors ------------------------------------------------------------------------

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  return testing::RandomFloats(n, seed, scale);
}

TensorArg Arg(const void* data, DType dtype, std::vector<int64_t> shape) {
  return testing::HostArg(data, dtype, shape);
}

// A weight in f32, bf16 or f16 bits.
struct Weight {
  DType dtype = DType::kF32;
  std::vector<float> f32;
  std::vector<uint16_t> bits;
  const void* data() const {
    return dtype == DType::kF32 ? static_cast<const void*>(f32.data()) : bits.data();
  }
};

Weight MakeWeight(int64_t n, DType dtype, uint32_t seed, float scale = 0.5f) {
  Weight w{dtype, Random(n, seed, scale), {}};
  if (dtype == DType::kF32) return w;
  for (float v : w.f32)
    w.bits.push_back(dtype == DType::kBF16 ? F32ToBf16(v) : F32ToF16(v));
  return w;
}

// Stacked [E, N, K] weight, one allocation per expert.
struct Stacked {
  std::vector<Weight> experts;
  std::vector<const void*> pointers;
  TensorArg arg(int64_t n, int64_t k) {
    pointers.clear();
    for (const Weight& w : experts)
      pointers.push_back(w.data());
    TensorArg a = Arg(nullptr, experts[0].dtype, {static_cast<int64_t>(experts.size()), n, k});
    a.expert_data = pointers.data();
    return a;
  }
};

Stacked MakeStacked(int64_t e, int64_t n, int64_t k, DType dtype, uint32_t seed) {
  Stacked s;
  for (int64_t i = 0; i < e; ++i)
    s.experts.push_back(MakeWeight(n * k, dtype, seed + 101 * i));
  return s;
}

// ---- Metadata ------------------------------------------------------------------------

// One sequence of a step: tokens cached before it, new tokens, its blocks.
struct SeqSpec {
  int32_t num_cached = 0;
  int32_t num_new = 0;
  std::vector<int32_t> blocks;
};

class Meta {
 public:
  Meta(int32_t token_capacity, int32_t max_blocks, int32_t block_size,
       const std::vector<SeqSpec>& seqs)
      : seq_capacity_(static_cast<int32_t>(seqs.size()) + 1),
        this_time_(seq_capacity_, 0),
        encoder_(seq_capacity_, 0),
        decoder_(seq_capacity_, 0),
        cu_seqlens_(seq_capacity_ + 1, 0),
        batch_id_(token_capacity, -1),
        positions_(token_capacity, 0),
        block_tables_(static_cast<size_t>(seq_capacity_) * std::max(1, max_blocks), 0),
        slot_mapping_(token_capacity, -1) {
    int32_t t = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      this_time_[s] = seqs[s].num_new;
      decoder_[s] = seqs[s].num_cached;
      encoder_[s] = seqs[s].num_cached == 0 ? seqs[s].num_new : 0;
      cu_seqlens_[s + 1] = cu_seqlens_[s] + seqs[s].num_new;
      for (size_t b = 0; b < seqs[s].blocks.size() && b < size_t(max_blocks); ++b)
        block_tables_[s * max_blocks + b] = seqs[s].blocks[b];
      for (int32_t i = 0; i < seqs[s].num_new; ++i, ++t) {
        const int32_t position = seqs[s].num_cached + i;
        batch_id_[t] = static_cast<int32_t>(s);
        positions_[t] = position;
        slot_mapping_[t] =
            seqs[s].blocks[position / block_size] * block_size + position % block_size;
      }
    }
    cu_seqlens_[seq_capacity_] = cu_seqlens_[seq_capacity_ - 1];
    view_ = ForwardMetaView{t,
                            static_cast<int32_t>(seqs.size()),
                            token_capacity,
                            seq_capacity_,
                            max_blocks,
                            this_time_.data(),
                            encoder_.data(),
                            decoder_.data(),
                            cu_seqlens_.data(),
                            batch_id_.data(),
                            positions_.data(),
                            block_tables_.data(),
                            slot_mapping_.data()};
  }
  // `num_tokens` real tokens of one prompt among `capacity` rows (no cache).
  static Meta Tokens(int32_t num_tokens, int32_t capacity) {
    return Meta(capacity, 0, 1, {{0, num_tokens, std::vector<int32_t>(num_tokens, 0)}});
  }
  const ForwardMetaView* view() const { return &view_; }

 private:
  int32_t seq_capacity_;
  std::vector<int32_t> this_time_, encoder_, decoder_, cu_seqlens_, batch_id_, positions_,
      block_tables_, slot_mapping_;
  ForwardMetaView view_;
};

// ---- Running and comparing ------------------------------------------------------------

struct OutSpec {
  DType dtype = DType::kF32;  // kF32 or kI32
  std::vector<int64_t> shape;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
};

struct Call {
  std::vector<TensorArg> in;
  std::vector<OutSpec> out;
  // Only its parameters are used: SetParams(call.param_args, FooParams{...}).
  KernelArgs param_args;
  const ForwardMetaView* meta = nullptr;
};

void CopyParams(const KernelArgs& from, KernelArgs& to) {
  to.params_info = from.params_info;
  std::memcpy(to.params, from.params, sizeof(to.params));
}

// Runs `kernel` with poisoned outputs (NaN / 12345) and returns them as raw words.
std::vector<std::vector<uint32_t>> Run(KernelFn kernel, const Call& call, int threads) {
  std::vector<std::vector<uint32_t>> buffers;
  std::vector<TensorArg> out;
  for (const OutSpec& spec : call.out) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    uint32_t poison;
    std::memcpy(&poison, &nan, 4);
    buffers.emplace_back(spec.numel(), spec.dtype == DType::kI32 ? 12345u : poison);
  }
  for (size_t i = 0; i < call.out.size(); ++i)
    out.push_back(Arg(buffers[i].data(), call.out[i].dtype, call.out[i].shape));
  KernelArgs args;
  args.meta = call.meta;
  args.in = call.in.data();
  args.num_in = static_cast<int>(call.in.size());
  args.out = out.data();
  args.num_out = static_cast<int>(out.size());
  CopyParams(call.param_args, args);
  args.num_threads = threads;
  kernel(args);
  return buffers;
}

float AsFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The ISAs of the optimised kernels this machine runs (avx2, and avx512 and amx where present).
std::vector<CpuIsa> OptIsas() {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : kAllCpuIsas) {
    if (isa != CpuIsa::kReference && static_cast<int>(isa) <= static_cast<int>(DetectedCpuIsa()))
      isas.push_back(isa);
  }
  return isas;
}

// Restores the selected ISA when it goes out of scope.
class IsaScope {
 public:
  IsaScope() : saved_(SelectedCpuIsa()) {}
  ~IsaScope() { SetCpuIsa(saved_); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;

 private:
  CpuIsa saved_;
};

// Outputs of `opt` equal `ref`'s: f32 within kTol relative (absolute near
// zero; exact zeros stay zeros), i32 exactly; and the same bits for every thread count and
// every ISA this machine runs (OptIsas) but AMX, whose bf16 GEMM sums in the tiles' order:
// its results match the reference on their own, the same bits at every thread count.
void ExpectMatches(KernelFn ref, KernelFn opt, const Call& call, const std::string& what,
                   double tol = kTol) {
  SCOPED_TRACE(what);
  const auto want = Run(ref, call, 3);
  const IsaScope restore;
  for (bool amx : {false, true}) {
    std::vector<std::vector<uint32_t>> first;
    for (CpuIsa isa : OptIsas()) {
      if ((isa == CpuIsa::kAmx) != amx) continue;
      SetCpuIsa(isa);
      for (int threads : kThreadCounts) {
        const auto got = Run(opt, call, threads);
        if (first.empty()) {
          first = got;
        } else {
          ASSERT_EQ(got, first) << "results depend on the ISA or the thread count ("
                                << CpuIsaName(isa) << ", " << threads << " threads)";
        }
      }
    }
    if (first.empty()) continue;  // no AMX here
    SCOPED_TRACE(amx ? "amx" : "avx2 / avx512");
    for (size_t o = 0; o < call.out.size(); ++o) {
      for (size_t i = 0; i < want[o].size(); ++i) {
        if (call.out[o].dtype == DType::kI32) {
          ASSERT_EQ(first[o][i], want[o][i]) << "output " << o << " element " << i;
          continue;
        }
        const double w = AsFloat(want[o][i]);
        const double g = AsFloat(first[o][i]);
        if (w == 0.0) {
          ASSERT_LE(std::abs(g), tol) << "output " << o << " element " << i;
        }
        ASSERT_TRUE(std::abs(g - w) <= tol * (1.0 + std::abs(w)))
            << "output " << o << " element " << i << " is " << g << ", want " << w;
      }
    }
  }
}

std::string Name(DType dtype) {
  return DTypeName(dtype);
}

// ---- Dispatch ---------------------------------------------------------------------------

KernelStep Step(const std::string& kernel, std::vector<DType> input_dtypes) {
  KernelStep step;
  step.kernel = kernel;
  for (DType d : input_dtypes) {
    ArgRef ref;
    ref.dtype = d;
    step.inputs.push_back(ref);
  }
  return step;
}

template <OpParamsStruct P>
KernelStep Step(const std::string& kernel, std::vector<DType> input_dtypes, const P& params) {
  KernelStep step = Step(kernel, std::move(input_dtypes));
  EncodeParams(params, step.ints, step.floats);
  return step;
}

TEST(OptDispatchTest, PicksOptimisedKernelsOnlyWhereTheyApply) {
  SKIP_WITHOUT_AVX2();
  const KernelStep linear = Step("linear", {DType::kF32, DType::kBF16});
  EXPECT_EQ(SelectCpuKernel(linear, false).fn, &OptLinear);
  EXPECT_EQ(SelectCpuKernel(linear, true).fn, &RefLinear);
  EXPECT_STREQ(SelectCpuKernel(linear, true).variant, "reference");
  // The variant names the ISA: AVX-512 only for the ops whose prefill GEMM has that path.
  const IsaScope restore;
  const KernelStep norm = Step("rms_norm", {DType::kF32, DType::kF32});
  SetCpuIsa(CpuIsa::kAvx2);
  EXPECT_STREQ(SelectCpuKernel(linear, false).variant, "avx2");
  if (DetectedCpuIsa() == CpuIsa::kAvx512) {
    SetCpuIsa(CpuIsa::kAvx512);
    EXPECT_STREQ(SelectCpuKernel(linear, false).variant, "avx512");
    EXPECT_STREQ(SelectCpuKernel(Step("grouped_matmul_silu_mul",
                                      {DType::kF32, DType::kI32, DType::kBF16, DType::kBF16}),
                                 false)
                     .variant,
                 "avx512");
    EXPECT_STREQ(SelectCpuKernel(norm, false).variant, "avx2");
  }
  // The reference ISA turns the optimised kernels off.
  SetCpuIsa(CpuIsa::kReference);
  EXPECT_FALSE(OptKernelsSupported());
  EXPECT_EQ(SelectCpuKernel(linear, false).fn, &RefLinear);
  SetCpuIsa(CpuIsa::kAvx2);
  EXPECT_EQ(SelectCpuKernel(norm, false).fn, &OptRmsNorm);
  // Block-scaled fp8 weights run the optimised kernel (which takes the blocks it can and runs
  // the reference for the others); mixed gate/up dtypes and integer weights have none.
  EXPECT_EQ(SelectCpuKernel(Step("linear", {DType::kF32, DType::kFp8E4M3}), false).fn, &OptLinear);
  EXPECT_EQ(SelectCpuKernel(Step("linear", {DType::kF32, DType::kU8}), false).fn, &RefLinear);
  EXPECT_EQ(
      SelectCpuKernel(Step("linear_silu_mul", {DType::kF32, DType::kBF16, DType::kF16}), false).fn,
      &RefLinearSiluMul);
  // Attention needs head_dim % 8 == 0.
  EXPECT_EQ(
      SelectCpuKernel(
          Step("attention", {},
               AttentionParams{.num_heads = 4, .num_kv_heads = 2, .head_dim = 24, .scale = 0.5}),
          false)
          .fn,
      &OptAttention);
  EXPECT_EQ(
      SelectCpuKernel(
          Step("attention", {},
               AttentionParams{.num_heads = 4, .num_kv_heads = 2, .head_dim = 18, .scale = 0.5}),
          false)
          .fn,
      &RefAttention);
  // Ops with no optimised kernel keep the reference.
  EXPECT_EQ(
      SelectCpuKernel(Step("moe_align", {DType::kI32}, NumExpertsParams{.num_experts = 5}), false)
          .fn,
      &RefMoeAlign);
}

TEST(CpuIsaTest, NamesParseAndTheChoiceIsCappedAtTheProcessor) {
  for (CpuIsa isa : kAllCpuIsas) {
    CpuIsa parsed = CpuIsa::kReference;
    ASSERT_TRUE(ParseCpuIsa(CpuIsaName(isa), &parsed)) << CpuIsaName(isa);
    EXPECT_EQ(parsed, isa);
  }
  CpuIsa parsed = CpuIsa::kAvx2;
  EXPECT_FALSE(ParseCpuIsa("AVX2", &parsed));
  EXPECT_FALSE(ParseCpuIsa("avx512f", &parsed));
  EXPECT_FALSE(ParseCpuIsa("", &parsed));
  EXPECT_EQ(parsed, CpuIsa::kAvx2);  // untouched on failure
  const IsaScope restore;
  EXPECT_EQ(SetCpuIsa(CpuIsa::kAmx), DetectedCpuIsa());
  EXPECT_EQ(SelectedCpuIsa(), DetectedCpuIsa());
  EXPECT_EQ(SetCpuIsa(CpuIsa::kReference), CpuIsa::kReference);
  EXPECT_EQ(SelectedCpuIsa(), CpuIsa::kReference);
}

// ---- Dense ------------------------------------------------------------------------------

TEST(OptKernelsTest, LinearMatchesReferenceForGemvAndGemmRows) {
  SKIP_WITHOUT_AVX2();
  struct Shape {
    int32_t rows;
    int64_t k, n;
  };
  // rows <= 4 takes the dot-tile path, more the packed GEMM (131 rows: two row
  // blocks; k 300: two k blocks; n 50: a partial panel).
  // n 97: several AVX-512 panels (48 columns, 24 fused) per thread, the last partial.
  const Shape shapes[] = {{1, 37, 23},   {3, 129, 23},   {4, 37, 50},  {7, 129, 23}, {19, 37, 50},
                          {19, 300, 23}, {131, 300, 50}, {13, 64, 97}, {8, 64, 32}};
  for (DType dtype : kWeightDTypes) {
    for (const Shape& s : shapes) {
      const std::vector<float> x = Random(s.rows * s.k, 1);
      const Weight wg = MakeWeight(s.n * s.k, dtype, 2);
      const Weight wu = MakeWeight(s.n * s.k, dtype, 3);
      const std::string what = Name(dtype) + " rows " + std::to_string(s.rows) + " k " +
                               std::to_string(s.k) + " n " + std::to_string(s.n);
      Call linear;  // no ForwardMeta: linear's rows need not be tokens, all are real
      linear.in = {Arg(x.data(), DType::kF32, {s.rows, s.k}), Arg(wg.data(), dtype, {s.n, s.k})};
      linear.out = {{DType::kF32, {s.rows, s.n}}};
      ExpectMatches(RefLinear, OptLinear, linear, "linear " + what);
      Call fused = linear;
      fused.in.push_back(Arg(wu.data(), dtype, {s.n, s.k}));
      ExpectMatches(RefLinearSiluMul, OptLinearSiluMul, fused, "linear_silu_mul " + what);
    }
  }
}

// The AMX GEMM is as accurate as the FMA GEMM: its activations split exactly into three bf16
// parts, so only the f32 sums round. Against a double reference of the same bf16 weights,
// its worst error (relative to sum |x w|) stays within 4x the AVX-512 GEMM's; dropping the
// smallest part (two bf16 parts, about 2^-17 of each activation) misses by 20x.
TEST(OptKernelsTest, AmxGemmIsAsAccurateAsTheFmaGemm) {
  if (DetectedCpuIsa() != CpuIsa::kAmx) GTEST_SKIP() << "no AMX tiles on this CPU (or the OS)";
  const int32_t rows = 70;
  const int64_t k = 333, n = 41;
  const std::vector<float> x = Random(rows * k, 11, 2.0f);
  const Weight w = MakeWeight(n * k, DType::kBF16, 12);
  Call linear;
  linear.in = {Arg(x.data(), DType::kF32, {rows, k}), Arg(w.data(), DType::kBF16, {n, k})};
  linear.out = {{DType::kF32, {rows, n}}};
  const IsaScope restore;
  auto worst_error = [&](CpuIsa isa) {
    SetCpuIsa(isa);
    const auto got = moegraph::Run(OptLinear, linear, 2);
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, magnitude = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double p = double{x[r * k + i]} * Bf16ToF32(w.bits[j * k + i]);
          sum += p;
          magnitude += std::abs(p);
        }
        worst = std::max(worst, std::abs(AsFloat(got[0][r * n + j]) - sum) / magnitude);
      }
    }
    return worst;
  };
  const double fma = worst_error(CpuIsa::kAvx512);
  const double amx = worst_error(CpuIsa::kAmx);
  EXPECT_LE(amx, 4 * fma + 1e-9) << "AMX worst relative error " << amx << ", FMA GEMM's " << fma;
}

// Load-time verification guarantees shapes, so a kernel called against its
// contract is an internal error, never a quiet zero tensor.
TEST(OptKernelsDeathTest, LinearAgainstItsContractIsAnInternalError) {
  SKIP_WITHOUT_AVX2();
  const std::vector<float> x = Random(3 * 37, 1);
  const Weight w = MakeWeight(23 * 36, DType::kF32, 2);
  Call call;
  call.in = {Arg(x.data(), DType::kF32, {3, 37}), Arg(w.data(), DType::kF32, {23, 36})};
  call.out = {{DType::kF32, {3, 23}}};
  EXPECT_DEATH(ExpectMatches(RefLinear, OptLinear, call, "bad weight shape"),
               "internal error: kernel 'linear' called against its contract");
}

// ---- Norms -------------------------------------------------------------------------------

TEST(OptKernelsTest, RmsNormsMatchReference) {
  SKIP_WITHOUT_AVX2();
  struct Shape {
    int64_t cols, group;
  };
  for (DType dtype : kWeightDTypes) {
    for (Shape s : {Shape{37, 37}, Shape{48, 24}, Shape{129, 129}, Shape{512, 64}}) {
      const int32_t rows = 7;
      const std::vector<float> x = Random(rows * s.cols, 4, 3.0f);
      const std::vector<float> residual = Random(rows * s.cols, 5);
      const Weight w = MakeWeight(s.group, dtype, 6);
      const std::string what = Name(dtype) + " cols " + std::to_string(s.cols);
      Call norm;
      norm.in = {Arg(x.data(), DType::kF32, {rows, s.cols}), Arg(w.data(), dtype, {s.group})};
      norm.out = {{DType::kF32, {rows, s.cols}}};
      SetParams(norm.param_args, RmsNormParams{.eps = 1e-6f});
      ExpectMatches(RefRmsNorm, OptRmsNorm, norm, "rms_norm " + what);
      Call add_norm = norm;
      add_norm.in = {norm.in[0], Arg(residual.data(), DType::kF32, {rows, s.cols}), norm.in[1]};
      add_norm.out = {{DType::kF32, {rows, s.cols}}, {DType::kF32, {rows, s.cols}}};
      ExpectMatches(RefAddRmsNorm, OptAddRmsNorm, add_norm, "add_rms_norm " + what);
    }
  }
}

// ---- Attention ------------------------------------------------------------------------------

TEST(OptKernelsTest, RopeMatchesReference) {
  SKIP_WITHOUT_AVX2();
  struct Case {
    int64_t head_dim, rotary_dim, interleaved;
    int64_t scaling = 0;  // 2: yarn over a 3..9 ramp with factor 4 and attention factor 1.25
  };
  // Whole heads, then partial (rotary_dim 0 is the whole head) and interleaved ones; 34 and 10
  // leave a rotate-half tail past the 8-wide vectors; then YaRN-scaled ones.
  const Case cases[] = {{24, 0, 0},  {64, 0, 0},   {128, 0, 0},   {6, 0, 0},
                        {64, 32, 0}, {128, 68, 0}, {18, 10, 0},   {64, 0, 1},
                        {18, 10, 1}, {6, 6, 1},    {64, 0, 0, 2}, {18, 10, 1, 2}};
  for (const Case& c : cases) {
    const int32_t rows = 7;
    const int64_t cols = 3 * c.head_dim;
    // Positions 100..104: large angles, where a different formula would show.
    const Meta meta(rows, 8, 16, {{100, 5, std::vector<int32_t>(8, 0)}});
    const std::vector<float> x = Random(rows * cols, 7);
    Call call;
    call.in = {Arg(x.data(), DType::kF32, {rows, cols})};
    call.out = {{DType::kF32, {rows, cols}}};
    const bool yarn = c.scaling == 2;
    SetParams(call.param_args, RopeParams{.head_dim = c.head_dim,
                                          .theta = 1e6,
                                          .rotary_dim = c.rotary_dim,
                                          .interleaved = c.interleaved,
                                          .scaling = c.scaling,
                                          .factor = yarn ? 4.0 : 1.0,
                                          .ramp_low = yarn ? 3.0 : 0.0,
                                          .ramp_high = yarn ? 9.0 : 0.0,
                                          .attention_factor = yarn ? 1.25 : 1.0});
    call.meta = meta.view();
    ExpectMatches(RefRope, OptRope, call,
                  "head_dim " + std::to_string(c.head_dim) + " rotary_dim " +
                      std::to_string(c.rotary_dim) + " interleaved " +
                      std::to_string(c.interleaved) + " scaling " + std::to_string(c.scaling));
  }
}

// Runs an attention `call` over the cache `kv` views (bound by the caller); returns the output.
std::vector<float> RunAttentionOver(KernelFn kernel, const Call& call,
                                    const testing::UniformKvCacheView& kv, int threads) {
  std::vector<float> out(call.out[0].numel(), std::numeric_limits<float>::quiet_NaN());
  std::vector<TensorArg> out_args = {Arg(out.data(), DType::kF32, call.out[0].shape)};
  KernelArgs args;
  args.meta = call.meta;
  args.kv = &kv.view;
  args.in = call.in.data();
  args.num_in = static_cast<int>(call.in.size());
  args.out = out_args.data();
  args.num_out = 1;
  CopyParams(call.param_args, args);
  args.num_threads = threads;
  kernel(args);
  return out;
}

// Runs attention on its own copy of the cache; returns (output, cache k, cache v).
std::vector<std::vector<float>> RunAttention(KernelFn kernel, const Call& call,
                                             testing::UniformKvCacheView kv,
                                             std::vector<float> cache_k, std::vector<float> cache_v,
                                             int threads) {
  kv.Bind(cache_k.data(), cache_v.data());
  std::vector<float> out = RunAttentionOver(kernel, call, kv, threads);
  return {out, cache_k, cache_v};
}

TEST(OptKernelsTest, AttentionMatchesReferenceForPrefillAndDecode) {
  SKIP_WITHOUT_AVX2();
  struct Heads {
    int64_t num_heads, num_kv_heads, head_dim;
  };
  // GQA groups 1..16: query blocks of 16 / group tokens (group 16: one token each).
  // Each plain, with sinks (the optional fifth operand), with a window of 5
  // (most query blocks' rows start at different keys) and with sinks and a
  // window of 67 (crossing the 64-key blocks).
  struct Variant {
    Heads h;
    bool with_sinks;
    int64_t window;
  };
  std::vector<Variant> variants;
  for (Heads h : {Heads{6, 2, 64}, Heads{4, 4, 128}, Heads{10, 2, 24}, Heads{2, 1, 8},
                  Heads{16, 4, 128}, Heads{8, 1, 64}, Heads{16, 1, 24}, Heads{14, 2, 16}}) {
    for (const auto& [sinks, window] : {std::pair{false, int64_t{0}},
                                        {true, int64_t{0}},
                                        {false, int64_t{5}},
                                        {true, int64_t{67}}})
      variants.push_back({h, sinks, window});
  }
  for (const auto& [h, with_sinks, window] : variants) {
    const int32_t block_size = 4, num_blocks = 48, num_layers = 2, layer = 1;
    // A 70-token prompt (more than one 64-key block), a decode step at
    // position 9, a 3-token chunk after 5 cached, a sequence whose block table
    // is bad (zeros), then 3 padding rows.
    std::vector<int32_t> long_blocks(18), short_blocks{40, 41, 42}, chunk_blocks{43, 44};
    for (int32_t b = 0; b < 18; ++b)
      long_blocks[b] = (b * 7) % 18;  // scattered, not in order
    std::vector<SeqSpec> seqs = {
        {0, 70, long_blocks}, {9, 1, short_blocks}, {5, 3, chunk_blocks}, {0, 2, {45}}};
    const int32_t rows = 79;
    Meta meta(rows, 18, block_size, seqs);
    // Corrupt the last sequence's table after the slots were computed: its
    // tokens must give zeros.
    const_cast<int32_t*>(meta.view()->block_tables)[3 * 18] = -1;
    const int64_t q_cols = h.num_heads * h.head_dim, kv_cols = h.num_kv_heads * h.head_dim;
    const std::vector<float> q = Random(rows * q_cols, 8);
    const std::vector<float> k = Random(rows * kv_cols, 9);
    const std::vector<float> v = Random(rows * kv_cols, 10);
    const std::vector<float> sinks = Random(h.num_heads, 13, 2.0f);
    testing::UniformKvCacheView kv;
    kv.num_layers = num_layers;
    kv.num_blocks = num_blocks;
    kv.block_size = block_size;
    kv.num_kv_heads = static_cast<int32_t>(h.num_kv_heads);
    kv.head_dim = static_cast<int32_t>(h.head_dim);
    // The cache holds earlier tokens of the decode and chunk sequences.
    const std::vector<float> cache_k = Random(num_layers * kv.LayerElements(), 11);
    const std::vector<float> cache_v = Random(num_layers * kv.LayerElements(), 12);
    Call call;
    call.in = {Arg(q.data(), DType::kF32, {rows, q_cols}),
               Arg(k.data(), DType::kF32, {rows, kv_cols}),
               Arg(v.data(), DType::kF32, {rows, kv_cols})};
    if (with_sinks) call.in.push_back(Arg(sinks.data(), DType::kF32, {h.num_heads}));
    call.out = {{DType::kF32, {rows, q_cols}}};
    SetParams(call.param_args,
              AttentionParams{.layer = layer,
                              .num_heads = h.num_heads,
                              .num_kv_heads = h.num_kv_heads,
                              .head_dim = h.head_dim,
                              .scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim)),
                              .window = window});
    call.meta = meta.view();
    const std::string what = "heads " + std::to_string(h.num_heads) + "/" +
                             std::to_string(h.num_kv_heads) + " head_dim " +
                             std::to_string(h.head_dim) + (with_sinks ? " sinks" : "") +
                             " window " + std::to_string(window);
    SCOPED_TRACE(what);
    const auto want = RunAttention(RefAttention, call, kv, cache_k, cache_v, 3);
    std::vector<std::vector<float>> first;
    for (int threads : kThreadCounts) {
      const auto got = RunAttention(OptAttention, call, kv, cache_k, cache_v, threads);
      if (first.empty()) {
        first = got;
      } else {
        ASSERT_EQ(0, std::memcmp(got[0].data(), first[0].data(), got[0].size() * 4))
            << "depends on the thread count";
      }
    }
    EXPECT_EQ(first[1], want[1]) << "cache k";
    EXPECT_EQ(first[2], want[2]) << "cache v";
    for (size_t i = 0; i < want[0].size(); ++i) {
      ASSERT_TRUE(std::abs(first[0][i] - want[0][i]) <= kTol * (1.0 + std::abs(want[0][i])))
          << "element " << i << " (row " << i / q_cols << ") is " << first[0][i] << ", want "
          << want[0][i];
    }
  }
}

// One decode token: the optimised kernel runs fewer KV heads together when
// threads would idle (4, 2 or 1 here); a head's result must not change.
TEST(OptKernelsTest, AttentionSingleDecodeTokenIsThreadCountIndependent) {
  SKIP_WITHOUT_AVX2();
  const int64_t num_heads = 16, num_kv_heads = 4, head_dim = 128;
  const int32_t block_size = 16, num_blocks = 12;
  std::vector<int32_t> blocks = {7, 2, 9, 0, 11, 4, 1, 8, 3};  // not in order
  const int32_t rows = 2;                                      // one padding row
  Meta meta(rows, 9, block_size, {{130, 1, blocks}});
  const int64_t q_cols = num_heads * head_dim, kv_cols = num_kv_heads * head_dim;
  const std::vector<float> q = Random(rows * q_cols, 21);
  const std::vector<float> k = Random(rows * kv_cols, 22);
  const std::vector<float> v = Random(rows * kv_cols, 23);
  testing::UniformKvCacheView kv;
  kv.num_layers = 1;
  kv.num_blocks = num_blocks;
  kv.block_size = block_size;
  kv.num_kv_heads = static_cast<int32_t>(num_kv_heads);
  kv.head_dim = static_cast<int32_t>(head_dim);
  const std::vector<float> cache_k = Random(kv.LayerElements(), 24);
  const std::vector<float> cache_v = Random(kv.LayerElements(), 25);
  Call call;
  call.in = {Arg(q.data(), DType::kF32, {rows, q_cols}),
             Arg(k.data(), DType::kF32, {rows, kv_cols}),
             Arg(v.data(), DType::kF32, {rows, kv_cols})};
  call.out = {{DType::kF32, {rows, q_cols}}};
  SetParams(call.param_args,
            AttentionParams{.layer = 0,
                            .num_heads = num_heads,
                            .num_kv_heads = num_kv_heads,
                            .head_dim = head_dim,
                            .scale = 1.0f / std::sqrt(static_cast<float>(head_dim))});
  call.meta = meta.view();
  const auto want = RunAttention(RefAttention, call, kv, cache_k, cache_v, 1);
  std::vector<float> first;
  for (int threads : {1, 2, 3, 4}) {
    const auto got = RunAttention(OptAttention, call, kv, cache_k, cache_v, threads);
    if (first.empty()) first = got[0];
    ASSERT_EQ(0, std::memcmp(got[0].data(), first.data(), first.size() * 4)) << threads;
    EXPECT_EQ(got[1], want[1]);
    EXPECT_EQ(got[2], want[2]);
  }
  for (size_t i = 0; i < want[0].size(); ++i) {
    ASSERT_TRUE(std::abs(first[i] - want[0][i]) <= kTol * (1.0 + std::abs(want[0][i])))
        << "element " << i << " is " << first[i] << ", want " << want[0][i];
  }
}

// ---- Attention over a 16-bit KV cache -------------------------------------------------

uint16_t ToHalf(DType dtype, float x) {
  return dtype == DType::kBF16 ? F32ToBf16(x) : F32ToF16(x);
}
float FromHalf(DType dtype, uint16_t h) {
  return dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
}
std::vector<uint16_t> ToHalf(DType dtype, const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = ToHalf(dtype, x[i]);
  return out;
}
std::vector<float> FromHalf(DType dtype, const std::vector<uint16_t>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = FromHalf(dtype, x[i]);
  return out;
}

// Runs attention on its own copy of a 16-bit cache; returns the output and
// sets `k` / `v` to the cache after the step.
std::vector<float> RunHalfAttention(KernelFn kernel, const Call& call,
                                    testing::UniformKvCacheView kv, std::vector<uint16_t>* k,
                                    std::vector<uint16_t>* v, int threads) {
  kv.Bind(k->data(), v->data());
  return RunAttentionOver(kernel, call, kv, threads);
}

// The prompt / decode / chunk / bad-table / padding mix of
// AttentionMatchesReferenceForPrefillAndDecode, over a cache of `dtype`.
struct HalfAttentionCase {
  int64_t num_heads, num_kv_heads, head_dim;
  static constexpr int32_t kBlockSize = 4, kNumBlocks = 48, kNumLayers = 2, kLayer = 1;
  static constexpr int32_t kRows = 79;
  std::vector<SeqSpec> seqs;
  Meta meta;
  std::vector<float> q, k, v;
  Call call;
  testing::UniformKvCacheView kv;

  static std::vector<SeqSpec> Seqs() {
    std::vector<int32_t> long_blocks(18);
    for (int32_t b = 0; b < 18; ++b)
      long_blocks[b] = (b * 7) % 18;
    return {{0, 70, long_blocks}, {9, 1, {40, 41, 42}}, {5, 3, {43, 44}}, {0, 2, {45}}};
  }
  HalfAttentionCase(int64_t heads, int64_t kv_heads, int64_t hd, DType dtype)
      : num_heads(heads),
        num_kv_heads(kv_heads),
        head_dim(hd),
        seqs(Seqs()),
        meta(kRows, 18, kBlockSize, seqs) {
    const_cast<int32_t*>(meta.view()->block_tables)[3 * 18] = -1;
    const int64_t q_cols = heads * hd, kv_cols = kv_heads * hd;
    q = Random(kRows * q_cols, 8);
    k = Random(kRows * kv_cols, 9);
    v = Random(kRows * kv_cols, 10);
    call.in = {Arg(q.data(), DType::kF32, {kRows, q_cols}),
               Arg(k.data(), DType::kF32, {kRows, kv_cols}),
               Arg(v.data(), DType::kF32, {kRows, kv_cols})};
    call.out = {{DType::kF32, {kRows, q_cols}}};
    SetParams(call.param_args, AttentionParams{.layer = kLayer,
                                               .num_heads = heads,
                                               .num_kv_heads = kv_heads,
                                               .head_dim = hd,
                                               .scale = 1.0f / std::sqrt(static_cast<float>(hd))});
    call.meta = meta.view();
    kv.num_layers = kNumLayers;
    kv.num_blocks = kNumBlocks;
    kv.block_size = kBlockSize;
    kv.num_kv_heads = static_cast<int32_t>(kv_heads);
    kv.head_dim = static_cast<int32_t>(hd);
    kv.dtype = dtype;
  }
  // Rounds this step's new keys and values to `dtype`, so that writing them
  // into a 16-bit cache loses nothing.
  void RoundInputsTo(DType dtype) {
    for (std::vector<float>* x : {&k, &v}) {  // in place: call.in points at them
      for (float& e : *x)
        e = FromHalf(dtype, ToHalf(dtype, e));
    }
  }
  std::string What() const {
    return std::string(DTypeName(kv.dtype)) + " heads " + std::to_string(num_heads) + "/" +
           std::to_string(num_kv_heads) + " head_dim " + std::to_string(head_dim);
  }
};

struct HalfHeads {
  int64_t num_heads, num_kv_heads, head_dim;
};
// Odd head counts; head_dim 19 and 6 take the reference path of OptAttention.
constexpr HalfHeads kHalfHeads[] = {{6, 2, 24},   {5, 5, 40}, {3, 1, 8},
                                    {16, 4, 128}, {7, 7, 19}, {3, 3, 6}};

// A 16-bit cache holding the same values as an f32 one computes the same
// attention, bit for bit, in both kernels: the kernels widen cache rows
// exactly and then run the f32 arithmetic. Its cache afterwards is the f32
// cache's, rounded.
TEST(OptKernelsTest, AttentionOverA16BitCacheEqualsTheF32CacheOfItsValues) {
  SKIP_WITHOUT_AVX2();
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (HalfHeads h : kHalfHeads) {
      HalfAttentionCase c(h.num_heads, h.num_kv_heads, h.head_dim, dtype);
      c.RoundInputsTo(dtype);
      SCOPED_TRACE(c.What());
      const int64_t cache_size = c.kv.num_layers * c.kv.LayerElements();
      const std::vector<uint16_t> half_k = ToHalf(dtype, Random(cache_size, 11));
      const std::vector<uint16_t> half_v = ToHalf(dtype, Random(cache_size, 12));
      testing::UniformKvCacheView f32_kv = c.kv;
      f32_kv.dtype = DType::kF32;
      for (KernelFn kernel : {RefAttention, OptAttention}) {
        const auto want = RunAttention(kernel, c.call, f32_kv, FromHalf(dtype, half_k),
                                       FromHalf(dtype, half_v), 3);
        for (int threads : kThreadCounts) {
          std::vector<uint16_t> k = half_k, v = half_v;
          const std::vector<float> got = RunHalfAttention(kernel, c.call, c.kv, &k, &v, threads);
          ASSERT_EQ(0, std::memcmp(got.data(), want[0].data(), got.size() * 4))
              << (kernel == RefAttention ? "reference" : "optimised") << ", " << threads
              << " threads";
          EXPECT_EQ(k, ToHalf(dtype, want[1])) << "cache k";
          EXPECT_EQ(v, ToHalf(dtype, want[2])) << "cache v";
        }
      }
    }
  }
}

// Against an f32 cache of unrounded values, a 16-bit cache differs only by
// its rounding of keys and values: max abs output error <= 5e-4 for f16
// (3 bits of relative precision more than bf16) and <= 4e-3 for bf16, with
// inputs and cache values in [-1, 1] (measured: 2.5e-4 and 2.2e-3); the
// optimised kernel stays within 1e-4 of the reference on the same 16-bit cache.
TEST(OptKernelsTest, AttentionOverA16BitCacheStaysWithinItsRoundingOfF32) {
  SKIP_WITHOUT_AVX2();
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    const double bound = dtype == DType::kF16 ? 5e-4 : 4e-3;
    for (HalfHeads h : kHalfHeads) {
      HalfAttentionCase c(h.num_heads, h.num_kv_heads, h.head_dim, dtype);
      SCOPED_TRACE(c.What());
      const int64_t cache_size = c.kv.num_layers * c.kv.LayerElements();
      const std::vector<float> cache_k = Random(cache_size, 11), cache_v = Random(cache_size, 12);
      testing::UniformKvCacheView f32_kv = c.kv;
      f32_kv.dtype = DType::kF32;
      const auto exact = RunAttention(RefAttention, c.call, f32_kv, cache_k, cache_v, 2);
      std::vector<uint16_t> ref_k = ToHalf(dtype, cache_k), ref_v = ToHalf(dtype, cache_v);
      std::vector<uint16_t> opt_k = ref_k, opt_v = ref_v;
      const std::vector<float> ref =
          RunHalfAttention(RefAttention, c.call, c.kv, &ref_k, &ref_v, 2);
      const std::vector<float> opt =
          RunHalfAttention(OptAttention, c.call, c.kv, &opt_k, &opt_v, 3);
      EXPECT_EQ(opt_k, ref_k);
      EXPECT_EQ(opt_v, ref_v);
      double max_err = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        max_err = std::max(max_err, static_cast<double>(std::abs(ref[i] - exact[0][i])));
        ASSERT_TRUE(std::abs(opt[i] - ref[i]) <= kTol * (1.0 + std::abs(ref[i])))
            << "element " << i << " is " << opt[i] << ", reference " << ref[i];
      }
      std::printf("%s: max abs error against the f32 cache %.3g (bound %.3g)\n", c.What().c_str(),
                  max_err, bound);
      EXPECT_LE(max_err, bound);
      EXPECT_GT(max_err, 0.0) << "the rounding must show: is the cache really 16-bit?";
    }
  }
}

// ---- MLA ----------------------------------------------------------------------------------------

// mla_attention over a latent cache of each dtype, kv_b in each weight dtype, rank 40 and rope
// 6 (vector tails): a 70-token prefill, decodes after 9 and 5 cached tokens, a 2-token prompt
// whose block table is bad, and padding rows. The optimised kernel's outputs are the
// reference's within kTol and the same bits for every thread count; its cache writes are the
// reference's exactly.
TEST(OptKernelsTest, MlaAttentionMatchesReference) {
  SKIP_WITHOUT_AVX2();
  constexpr int64_t kHeads = 3, kRank = 40, kRope = 6, kNope = 5, kV = 7, kRow = kRank + kRope;
  constexpr int32_t kBlockSize = 4, kNumBlocks = 48, kNumLayers = 2, kRows = 79;
  std::vector<int32_t> long_blocks(18);
  for (int32_t b = 0; b < 18; ++b)
    long_blocks[b] = (b * 7) % 18;
  Meta meta(kRows, 18, kBlockSize,
            {{0, 70, long_blocks}, {9, 1, {40, 41, 42}}, {5, 3, {43, 44}}, {0, 2, {45}}});
  const_cast<int32_t*>(meta.view()->block_tables)[3 * 18] = -1;
  const std::vector<float> q_nope = Random(kRows * kHeads * kNope, 20);
  const std::vector<float> q_pe = Random(kRows * kHeads * kRope, 21);
  const std::vector<float> latent = Random(kRows * kRank, 22);
  const std::vector<float> k_pe = Random(kRows * kRope, 23);
  const int64_t cache_size = static_cast<int64_t>(kNumLayers) * kNumBlocks * kBlockSize * kRow;
  const std::vector<float> initial = Random(cache_size, 24);
  for (DType kv_dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    // Each weight dtype, then block-scaled fp8 in [16, 16] blocks (partial: 36 x 40).
    for (DType w_dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kFp8E4M3}) {
      SCOPED_TRACE(Name(kv_dtype) + " cache, " + Name(w_dtype) + " kv_b");
      const bool fp8 = w_dtype == DType::kFp8E4M3;
      const Weight kv_b =
          MakeWeight(kHeads * (kNope + kV) * kRank, fp8 ? DType::kF32 : w_dtype, 25);
      const testing::Fp8BlockWeight kv_b_fp8(0, kHeads * (kNope + kV), kRank, 16, 16, 26, 0.5f);
      const std::vector<TensorArg> in = {
          Arg(q_nope.data(), DType::kF32, {kRows, kHeads * kNope}),
          Arg(q_pe.data(), DType::kF32, {kRows, kHeads * kRope}),
          Arg(latent.data(), DType::kF32, {kRows, kRank}),
          Arg(k_pe.data(), DType::kF32, {kRows, kRope}),
          fp8 ? kv_b_fp8.arg() : Arg(kv_b.data(), w_dtype, {kHeads * (kNope + kV), kRank})};
      // Returns the output and the cache afterwards (as f32 values).
      auto run = [&](KernelFn kernel, int threads) {
        std::vector<float> cache32 = initial;
        std::vector<uint16_t> cache16 =
            ToHalf(kv_dtype == DType::kF32 ? DType::kBF16 : kv_dtype, initial);
        testing::UniformKvCacheView kv;
        kv.num_layers = kNumLayers;
        kv.num_blocks = kNumBlocks;
        kv.block_size = kBlockSize;
        kv.num_kv_heads = 1;
        kv.head_dim = kRow;
        kv.dtype = kv_dtype;
        kv.kind = KvLayerKind::kLatent;
        kv.Bind(kv_dtype == DType::kF32 ? static_cast<void*>(cache32.data()) : cache16.data(),
                nullptr);
        std::vector<float> out(kRows * kHeads * kV, std::numeric_limits<float>::quiet_NaN());
        const TensorArg out_arg = Arg(out.data(), DType::kF32, {kRows, kHeads * kV});
        KernelArgs args;
        args.meta = meta.view();
        args.kv = &kv.view;
        args.in = in.data();
        args.num_in = static_cast<int>(in.size());
        args.out = &out_arg;
        args.num_out = 1;
        args.num_threads = threads;
        SetParams(args, MlaAttentionParams{.layer = 1,
                                           .num_heads = kHeads,
                                           .kv_lora_rank = kRank,
                                           .qk_nope_head_dim = kNope,
                                           .qk_rope_head_dim = kRope,
                                           .v_head_dim = kV,
                                           .scale = 0.3});
        kernel(args);
        return std::pair{out, kv_dtype == DType::kF32 ? cache32 : FromHalf(kv_dtype, cache16)};
      };
      const auto [want, want_cache] = run(RefMlaAttention, 2);
      std::vector<float> first;
      for (int threads : kThreadCounts) {
        const auto [got, got_cache] = run(OptMlaAttention, threads);
        ASSERT_EQ(0, std::memcmp(got_cache.data(), want_cache.data(), got_cache.size() * 4));
        if (first.empty()) {
          first = got;
        } else {
          ASSERT_EQ(0, std::memcmp(got.data(), first.data(), got.size() * 4))
              << "results depend on the thread count (" << threads << ")";
        }
      }
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_TRUE(std::abs(first[i] - want[i]) <= kTol * (1.0 + std::abs(want[i])))
            << "element " << i << " is " << first[i] << ", want " << want[i];
      }
      // The bad-table prompt (rows 74, 75) and the padding rows are zeros.
      for (int64_t i = 74 * kHeads * kV; i < kRows * kHeads * kV; ++i)
        ASSERT_EQ(first[i], 0.0f) << "element " << i;
    }
  }
}

// ---- Routing -----------------------------------------------------------------------------------

TEST(OptKernelsTest, TopkRouteIsBitIdenticalIncludingTies) {
  SKIP_WITHOUT_AVX2();
  struct Shape {
    int64_t experts, top_k;
  };
  for (Shape s : {Shape{5, 3}, Shape{37, 8}, Shape{128, 8}, Shape{3, 5}}) {
    for (int64_t norm : {0, 1}) {
      const int32_t rows = 7;
      std::vector<float> logits = Random(rows * s.experts, 13, 4.0f);
      // Exact ties: the lower id must come first.
      for (int64_t e = 1; e < s.experts; e += 2)
        logits[e] = logits[0];
      const Meta meta = Meta::Tokens(9, 11);  // row_offset 4: rows 0..4 real
      Call call;
      call.in = {Arg(logits.data(), DType::kF32, {rows, s.experts})};
      call.out = {{DType::kI32, {rows, s.top_k}}, {DType::kF32, {rows, s.top_k}}};
      SetParams(call.param_args,
                TopkRouteParams{.top_k = s.top_k, .norm_topk_prob = norm, .row_offset = 4});
      call.meta = meta.view();
      ExpectMatches(RefTopkRoute, OptTopkRoute, call,
                    "experts " + std::to_string(s.experts) + " top_k " + std::to_string(s.top_k),
                    /*tol=*/0.0);
    }
  }
}

// Sigmoid / softmax scores, the correction bias, groups, norm_min and scaling: still bit-identical
// (ties in the choice scores and in the group scores included).
TEST(OptKernelsTest, TopkRouteModesAreBitIdentical) {
  SKIP_WITHOUT_AVX2();
  struct Case {
    int64_t experts;
    TopkRouteParams params;
    bool bias;
  };
  const Case cases[] = {
      {12,
       {.top_k = 3,
        .norm_topk_prob = 1,
        .scoring = 1,
        .num_groups = 4,
        .top_k_groups = 2,
        .routed_scaling_factor = 2.5},
       true},
      {7, {.top_k = 3, .scoring = 1}, false},
      {7, {.top_k = 2, .norm_topk_prob = 1, .scoring = 1}, true},
      {7, {.top_k = 2, .norm_topk_prob = 1, .norm_min = 0.6}, true},
      {160,
       {.top_k = 8,
        .norm_topk_prob = 1,
        .scoring = 1,
        .num_groups = 8,
        .top_k_groups = 3,
        .routed_scaling_factor = 1.5,
        .norm_min = 1e-20},
       true},
      {15, {.top_k = 4, .num_groups = 5}, true},
  };
  for (const Case& c : cases) {
    const int32_t rows = 7;
    std::vector<float> logits = Random(rows * c.experts, 17, 3.0f);
    // Exact ties in every other expert (and so in some group scores).
    for (int64_t e = 2; e < c.experts; e += 3)
      logits[e] = logits[0];
    const std::vector<float> bias = Random(c.experts, 18, 0.5f);
    TopkRouteParams params = c.params;
    params.row_offset = 4;
    const Meta meta = Meta::Tokens(9, 11);  // row_offset 4: rows 0..4 real
    Call call;
    call.in = {Arg(logits.data(), DType::kF32, {rows, c.experts})};
    if (c.bias) call.in.push_back(Arg(bias.data(), DType::kF32, {c.experts}));
    call.out = {{DType::kI32, {rows, params.top_k}}, {DType::kF32, {rows, params.top_k}}};
    SetParams(call.param_args, params);
    call.meta = meta.view();
    ExpectMatches(RefTopkRoute, OptTopkRoute, call,
                  "experts " + std::to_string(c.experts) + " groups " +
                      std::to_string(params.num_groups) + " scoring " +
                      std::to_string(params.scoring),
                  /*tol=*/0.0);
  }
}

// ---- Grouped matmuls (prefill) -----------------------------------------------------------------

TEST(OptKernelsTest, GroupedMatmulsMatchReference) {
  SKIP_WITHOUT_AVX2();
  const int64_t num_experts = 5;
  struct Case {
    std::vector<int32_t> offsets;
    int64_t rows;
    const char* what;
  };
  const Case cases[] = {
      // Groups of 0, 1, 6, 3 and 9 rows (dot tiles and GEMM), then 2 rows no range covers.
      {{0, 0, 1, 7, 10, 19}, 21, "mixed groups"},
      // Expert 2's range runs backwards and expert 4's past the rows: both skipped.
      {{0, 5, 9, 6, 12, 40}, 19, "bad ranges"},
      // One expert takes 131 rows (two row blocks).
      {{0, 0, 131, 131, 131, 131}, 131, "one big group"}};
  for (DType dtype : kWeightDTypes) {
    for (int64_t k : {37, 129, 300}) {
      for (int64_t n : {23, 50}) {
        for (const Case& c : cases) {
          const std::vector<float> x = Random(c.rows * k, 14);
          Stacked wg = MakeStacked(num_experts, n, k, dtype, 15);
          Stacked wu = MakeStacked(num_experts, n, k, dtype, 16);
          Call call;
          call.in = {Arg(x.data(), DType::kF32, {c.rows, k}),
                     Arg(c.offsets.data(), DType::kI32, {num_experts + 1}), wg.arg(n, k)};
          call.out = {{DType::kF32, {c.rows, n}}};
          const std::string what = std::string(c.what) + " " + Name(dtype) + " k " +
                                   std::to_string(k) + " n " + std::to_string(n);
          ExpectMatches(RefGroupedMatmul, OptGroupedMatmul, call, "grouped_matmul " + what);
          call.in.push_back(wu.arg(n, k));
          ExpectMatches(RefGroupedMatmulSiluMul, OptGroupedMatmulSiluMul, call,
                        "grouped_matmul_silu_mul " + what);
        }
      }
    }
  }
}

// ---- Expert-batched matmuls (decode)
// -------------------------------------------------------------

TEST(OptKernelsTest, ExpertBatchedMatmulsMatchReference) {
  SKIP_WITHOUT_AVX2();
  const int64_t num_experts = 5, top_k = 3;
  for (DType dtype : kWeightDTypes) {
    for (int32_t tokens : {1, 3, 7, 19}) {
      for (int64_t hidden : {37, 129}) {
        const int64_t inter = 23;
        const int64_t pairs = tokens * top_k;
        // Distinct experts per token; the last token is padding (-1 ids) when
        // there are several, and one id is out of range.
        std::mt19937 rng(17 + tokens);
        std::vector<int32_t> ids(pairs);
        for (int32_t t = 0; t < tokens; ++t) {
          std::vector<int32_t> order = {0, 1, 2, 3, 4};
          std::shuffle(order.begin(), order.end(), rng);
          for (int64_t j = 0; j < top_k; ++j)
            ids[t * top_k + j] = order[j];
        }
        if (tokens > 1) {
          std::fill(ids.end() - top_k, ids.end(), -1);
          ids[1] = 7;
        }
        const int64_t slots = std::min<int64_t>(num_experts, pairs);
        std::vector<int32_t> batch_experts(slots), batch_pairs(slots * tokens);
        {
          std::vector<TensorArg> in = {Arg(ids.data(), DType::kI32, {tokens, top_k})};
          std::vector<TensorArg> out = {Arg(batch_experts.data(), DType::kI32, {slots}),
                                        Arg(batch_pairs.data(), DType::kI32, {slots, tokens})};
          KernelArgs args;
          args.in = in.data();
          args.num_in = 1;
          args.out = out.data();
          args.num_out = 2;
          SetParams(args, NumExpertsParams{.num_experts = num_experts});
          args.num_threads = 1;
          RefMoeExpertBatch(args);
        }
        const std::vector<float> x = Random(tokens * hidden, 18);
        const std::vector<float> h = Random(pairs * inter, 19);
        Stacked gate = MakeStacked(num_experts, inter, hidden, dtype, 20);
        Stacked up = MakeStacked(num_experts, inter, hidden, dtype, 21);
        Stacked down = MakeStacked(num_experts, hidden, inter, dtype, 22);
        const std::string what =
            Name(dtype) + " tokens " + std::to_string(tokens) + " hidden " + std::to_string(hidden);
        Call gate_up;
        gate_up.in = {Arg(x.data(), DType::kF32, {tokens, hidden}),
                      Arg(batch_experts.data(), DType::kI32, {slots}),
                      Arg(batch_pairs.data(), DType::kI32, {slots, tokens}),
                      gate.arg(inter, hidden), up.arg(inter, hidden)};
        gate_up.out = {{DType::kF32, {pairs, inter}}};
        SetParams(gate_up.param_args, TopKParams{.top_k = top_k});
        ExpectMatches(RefExpertBatchedGateUpSilu, OptExpertBatchedGateUpSilu, gate_up,
                      "gate_up " + what);
        Call down_call;
        down_call.in = {Arg(h.data(), DType::kF32, {pairs, inter}), gate_up.in[1], gate_up.in[2],
                        down.arg(hidden, inter)};
        down_call.out = {{DType::kF32, {pairs, hidden}}};
        ExpectMatches(RefExpertBatchedDown, OptExpertBatchedDown, down_call, "down " + what);
      }
    }
  }
}

// ---- Block-scaled fp8 weights --------------------------------------------------------

// The blocks a test runs: square, DeepSeek-V3's 128, rows != cols, and a block_cols the
// optimised kernels do not take (12: the reference runs, with the same result).
// Block-scaled byte weights: fp8 e4m3 and int8 (compile-model --weights int8 writes 1 x 32).
struct Fp8Blocks {
  int32_t rows, cols;
  QuantScheme scheme = QuantScheme::kFp8Block;
};
constexpr Fp8Blocks kFp8Blocks[] = {{16, 16},
                                    {128, 128},
                                    {16, 32},
                                    {8, 12},
                                    {1, 32, QuantScheme::kInt8Block},
                                    {1, 8, QuantScheme::kInt8Block},
                                    {16, 16, QuantScheme::kInt8Block},
                                    {1, 12, QuantScheme::kInt8Block}};

std::string Name(const Fp8Blocks& b) {
  return std::string(QuantSchemeName(b.scheme)) + " [" + std::to_string(b.rows) + ", " +
         std::to_string(b.cols) + "]";
}

TEST(OptKernelsTest, Fp8LinearMatchesReferenceForGemvAndGemmRows) {
  SKIP_WITHOUT_AVX2();
  struct Shape {
    int32_t rows;
    int64_t k, n;
  };
  // k 200 / 300: a partial 128 block; n 37 / 50: partial row blocks and panels.
  const Shape shapes[] = {{1, 200, 37}, {3, 129, 23}, {4, 37, 50}, {7, 300, 37}, {131, 200, 50}};
  for (const Fp8Blocks& blocks : kFp8Blocks) {
    for (const Shape& s : shapes) {
      const std::vector<float> x = Random(s.rows * s.k, 1);
      const testing::Fp8BlockWeight wg(0, s.n, s.k, blocks.rows, blocks.cols, 2, 0.5f,
                                       blocks.scheme);
      const testing::Fp8BlockWeight wu(0, s.n, s.k, blocks.rows, blocks.cols, 3, 0.5f,
                                       blocks.scheme);
      const std::string what = Name(blocks) + " rows " + std::to_string(s.rows) + " k " +
                               std::to_string(s.k) + " n " + std::to_string(s.n);
      Call linear;
      linear.in = {Arg(x.data(), DType::kF32, {s.rows, s.k}), wg.arg()};
      linear.out = {{DType::kF32, {s.rows, s.n}}};
      ExpectMatches(RefLinear, OptLinear, linear, "linear " + what);
      Call fused = linear;
      fused.in.push_back(wu.arg());
      ExpectMatches(RefLinearSiluMul, OptLinearSiluMul, fused, "linear_silu_mul " + what);
    }
  }
}

TEST(OptKernelsTest, Fp8ExpertKernelsMatchReference) {
  SKIP_WITHOUT_AVX2();
  const int64_t num_experts = 5, top_k = 2, inter = 37, hidden = 200;
  const std::vector<int32_t> offsets = {0, 0, 1, 7, 10, 19};  // dot tiles and GEMM groups
  for (const Fp8Blocks& blocks : kFp8Blocks) {
    const testing::Fp8BlockWeight gate(num_experts, inter, hidden, blocks.rows, blocks.cols, 30,
                                       0.5f, blocks.scheme);
    const testing::Fp8BlockWeight up(num_experts, inter, hidden, blocks.rows, blocks.cols, 31, 0.5f,
                                     blocks.scheme);
    const testing::Fp8BlockWeight down(num_experts, hidden, inter, blocks.rows, blocks.cols, 32,
                                       0.5f, blocks.scheme);
    const std::vector<float> xp = Random(19 * hidden, 33);
    Call grouped;
    grouped.in = {Arg(xp.data(), DType::kF32, {19, hidden}),
                  Arg(offsets.data(), DType::kI32, {num_experts + 1}), gate.arg()};
    grouped.out = {{DType::kF32, {19, inter}}};
    ExpectMatches(RefGroupedMatmul, OptGroupedMatmul, grouped, "grouped_matmul " + Name(blocks));
    grouped.in.push_back(up.arg());
    ExpectMatches(RefGroupedMatmulSiluMul, OptGroupedMatmulSiluMul, grouped,
                  "grouped_matmul_silu_mul " + Name(blocks));

    // Decode: 3 tokens, experts {0, 3}, {3, 4}, {1, 0}.
    const int32_t tokens = 3;
    const int64_t pairs = tokens * top_k, slots = 4;
    const std::vector<int32_t> batch_experts = {0, 1, 3, 4};
    const std::vector<int32_t> batch_pairs = {0, 5, -1, 4, -1, -1, 1, 2, -1, 3, -1, -1};
    const std::vector<float> x = Random(tokens * hidden, 34);
    const std::vector<float> h = Random(pairs * inter, 35);
    Call gate_up;
    gate_up.in = {Arg(x.data(), DType::kF32, {tokens, hidden}),
                  Arg(batch_experts.data(), DType::kI32, {slots}),
                  Arg(batch_pairs.data(), DType::kI32, {slots, tokens}), gate.arg(), up.arg()};
    gate_up.out = {{DType::kF32, {pairs, inter}}};
    SetParams(gate_up.param_args, TopKParams{.top_k = top_k});
    ExpectMatches(RefExpertBatchedGateUpSilu, OptExpertBatchedGateUpSilu, gate_up,
                  "expert_batched_gate_up_silu " + Name(blocks));
    Call down_call;
    down_call.in = {Arg(h.data(), DType::kF32, {pairs, inter}), gate_up.in[1], gate_up.in[2],
                    down.arg()};
    down_call.out = {{DType::kF32, {pairs, hidden}}};
    ExpectMatches(RefExpertBatchedDown, OptExpertBatchedDown, down_call,
                  "expert_batched_down " + Name(blocks));
  }
}

// Every e4m3 byte, through the vector decode, is Fp8E4M3ToF32's value (NaN for 0x7f / 0xff).
TEST(OptKernelsTest, Fp8VectorDecodeIsExact) {
  SKIP_WITHOUT_AVX2();
  for (int v0 = 0; v0 < 256; v0 += 8) {
    uint8_t bytes[8];
    for (int i = 0; i < 8; ++i)
      bytes[i] = static_cast<uint8_t>(v0 + i);
    float got[8];
    simd::StoreFp8x8(bytes, got);
    for (int i = 0; i < 8; ++i) {
      const float want = Fp8E4M3ToF32(bytes[i]);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got[i])) << int(bytes[i]);
      } else {
        uint32_t a, b;
        std::memcpy(&a, &got[i], 4);
        std::memcpy(&b, &want, 4);
        EXPECT_EQ(a, b) << "byte " << int(bytes[i]);
      }
    }
  }
}

// ---- MXFP4 weights and the GPT-OSS expert ops ----------------------------------------

// Every byte through the vector decode: both nibbles are Fp4E2M1ToF32's value, bit for bit
// (-0 included).
TEST(OptKernelsTest, Mxfp4VectorDecodeIsExact) {
  SKIP_WITHOUT_AVX2();
  for (int v0 = 0; v0 < 256; v0 += 4) {
    uint8_t bytes[4];
    for (int i = 0; i < 4; ++i)
      bytes[i] = static_cast<uint8_t>(v0 + i);
    float got[8];
    simd::StoreFp4x8(bytes, got);
    for (int i = 0; i < 8; ++i) {
      const float want = Mxfp4At(bytes, i);
      uint32_t a, b;
      std::memcpy(&a, &got[i], 4);
      std::memcpy(&b, &want, 4);
      EXPECT_EQ(a, b) << "byte " << int(bytes[i / 2]) << " element " << i;
    }
  }
}

// A stacked [E, N, K] weight of one of the dtypes the GPT-OSS expert ops read.
struct ExpertWeight {
  std::vector<testing::Mxfp4Weight> mxfp4;  // 0 or 1
  Stacked plain;
  int64_t n = 0, k = 0;
  TensorArg arg() { return mxfp4.empty() ? plain.arg(n, k) : mxfp4[0].arg(); }
};

ExpertWeight MakeExpertWeight(DType dtype, int64_t e, int64_t n, int64_t k, uint32_t seed) {
  ExpertWeight w;
  w.n = n;
  w.k = k;
  if (dtype == DType::kMxfp4) {
    w.mxfp4.emplace_back(e, n, k, seed);
  } else {
    w.plain = MakeStacked(e, n, k, dtype, seed);
  }
  return w;
}

// E = 3, N 19 / 38, K 64 / 96 (mxfp4 takes K % 32 == 0), top_k 2; expert 1 gets no rows (no
// pairs); bias on / off; f32, bf16 and mxfp4 weights; threads 1, 2, 3.
TEST(OptKernelsTest, Mxfp4AndGptOssExpertOpsMatchReference) {
  SKIP_WITHOUT_AVX2();
  const int64_t num_experts = 3, top_k = 2;
  // Groups of 0 rows (expert 0), 1 row (dot tile) and 11 rows (GEMM); then one 131-row group.
  const std::vector<std::vector<int32_t>> offset_cases = {{0, 0, 1, 12}, {0, 131, 131, 131}};
  // Decode: 3 tokens, experts {0, 2}, {2, 0}, and padding; expert 1 is in no slot.
  const int32_t tokens = 3;
  const int64_t pairs = tokens * top_k, slots = 3;
  const std::vector<int32_t> batch_experts = {0, 2, -1};
  const std::vector<int32_t> batch_pairs = {0, 3, -1, 1, 2, -1, -1, -1, -1};
  for (DType dtype : {DType::kMxfp4, DType::kBF16, DType::kF32}) {
    for (int64_t n : {19, 38}) {
      for (int64_t k : {64, 96}) {
        const std::string what =
            Name(dtype) + " n " + std::to_string(n) + " k " + std::to_string(k);
        ExpertWeight w = MakeExpertWeight(dtype, num_experts, n, k, 40);
        ExpertWeight wu = MakeExpertWeight(dtype, num_experts, n, k, 41);
        ExpertWeight down = MakeExpertWeight(dtype, num_experts, n, k, 42);
        const Weight bias = MakeWeight(num_experts * n, DType::kBF16, 43);
        const TensorArg bias_arg = Arg(bias.data(), DType::kBF16, {num_experts, n});
        for (const std::vector<int32_t>& offsets : offset_cases) {
          const int64_t rows = offsets.back() + 1;  // one row no range covers
          const std::vector<float> xp = Random(rows * k, 44);
          Call grouped;
          grouped.in = {Arg(xp.data(), DType::kF32, {rows, k}),
                        Arg(offsets.data(), DType::kI32, {num_experts + 1}), w.arg()};
          grouped.out = {{DType::kF32, {rows, n}}};
          const std::string rows_what = what + " rows " + std::to_string(rows);
          ExpectMatches(RefGroupedMatmul, OptGroupedMatmul, grouped, "grouped_matmul " + rows_what);
          Call fused = grouped;
          fused.in.push_back(wu.arg());
          ExpectMatches(RefGroupedMatmulSiluMul, OptGroupedMatmulSiluMul, fused,
                        "grouped_matmul_silu_mul " + rows_what);
          grouped.in.push_back(bias_arg);
          ExpectMatches(RefGroupedMatmul, OptGroupedMatmul, grouped,
                        "grouped_matmul + bias " + rows_what);
        }
        const std::vector<float> x = Random(tokens * k, 45);
        Call batched;
        batched.in = {Arg(x.data(), DType::kF32, {tokens, k}),
                      Arg(batch_experts.data(), DType::kI32, {slots}),
                      Arg(batch_pairs.data(), DType::kI32, {slots, tokens}), w.arg()};
        batched.out = {{DType::kF32, {pairs, n}}};
        SetParams(batched.param_args, TopKParams{.top_k = top_k});
        ExpectMatches(RefExpertBatchedMatmul, OptExpertBatchedMatmul, batched,
                      "expert_batched_matmul " + what);
        batched.in.push_back(bias_arg);
        ExpectMatches(RefExpertBatchedMatmul, OptExpertBatchedMatmul, batched,
                      "expert_batched_matmul + bias " + what);
        // The down projection of the decode chain: top_k 1 over the pair rows.
        const std::vector<float> h = Random(pairs * k, 46);
        Call down_call;
        down_call.in = {Arg(h.data(), DType::kF32, {pairs, k}), batched.in[1], batched.in[2],
                        down.arg()};
        down_call.out = {{DType::kF32, {pairs, n}}};
        SetParams(down_call.param_args, TopKParams{.top_k = 1});
        ExpectMatches(RefExpertBatchedMatmul, OptExpertBatchedMatmul, down_call,
                      "expert_batched_matmul top_k 1 " + what);
        ExpectMatches(RefExpertBatchedDown, OptExpertBatchedDown, down_call,
                      "expert_batched_down " + what);
        batched.in.pop_back();
        batched.in.push_back(wu.arg());
        ExpectMatches(RefExpertBatchedGateUpSilu, OptExpertBatchedGateUpSilu, batched,
                      "expert_batched_gate_up_silu " + what);
        if (dtype == DType::kMxfp4) {
          const testing::Mxfp4Weight plain(0, n, k, 47);
          for (int64_t r : {1, 3, 9}) {
            const std::vector<float> xr = Random(r * k, 48);
            Call linear;
            linear.in = {Arg(xr.data(), DType::kF32, {r, k}), plain.arg()};
            linear.out = {{DType::kF32, {r, n}}};
            ExpectMatches(RefLinear, OptLinear, linear,
                          "linear " + what + " rows " + std::to_string(r));
          }
        }
      }
    }
  }
}

// ---- int4 block weights ---------------------------------------------------------------

// Every byte through the vector decode: both nibbles are Int4At's value (code - 8).
TEST(OptKernelsTest, Int4VectorDecodeIsExact) {
  SKIP_WITHOUT_AVX2();
  for (int v0 = 0; v0 < 256; v0 += 4) {
    uint8_t bytes[4];
    for (int i = 0; i < 4; ++i)
      bytes[i] = static_cast<uint8_t>(v0 + i);
    float got[8];
    simd::StoreInt4x8(bytes, got);
    for (int i = 0; i < 8; ++i)
      EXPECT_EQ(got[i], static_cast<float>(Int4At(bytes, i))) << "byte " << int(bytes[i / 2]);
  }
}

// compile-model --weights int8 / int4's blocks of 32 and 64 (96 and 320 leave a partial block
// of 64) through every matmul kernel that reads an out-major weight: linear and
// linear_silu_mul for decode and prefill rows, the grouped MoE matmuls (dot tiles and GEMM
// groups), the expert-batched decode kernels and expert_batched_matmul. `make(experts, rows,
// cols, block_cols, seed)` makes the weights; `want_wtype` is the type the optimised kernels
// must take them as (no reference fallback). Their inputs are rounded to int8
// (RoundsInputToInt8): k 320 has a group of 8 blocks and a partial one, 96 an odd block.
template <typename MakeWeight>
void ExpectIntegerKernelsMatch(const std::string& name, simd::WType want_wtype, MakeWeight make) {
  for (const int32_t block_cols : {32, 64}) {
    for (const int64_t k : {64, 96, 320}) {
      for (const int64_t n : {37, 50}) {
        const std::string what = name + " [1, " + std::to_string(block_cols) + "] k " +
                                 std::to_string(k) + " n " + std::to_string(n);
        const auto wg = make(0, n, k, block_cols, 2), wu = make(0, n, k, block_cols, 3);
        simd::WType wtype;
        ASSERT_TRUE(simd::ToMatmulWType(wg.arg(), &wtype));
        ASSERT_EQ(wtype, want_wtype);
        ASSERT_TRUE(RoundsInputToInt8(wg.quant, k));
        for (const int32_t rows : {1, 3, 7, 131}) {
          const std::vector<float> x = Random(rows * k, 1);
          Call linear;
          linear.in = {Arg(x.data(), DType::kF32, {rows, k}), wg.arg()};
          linear.out = {{DType::kF32, {rows, n}}};
          const std::string rows_what = what + " rows " + std::to_string(rows);
          ExpectMatches(RefLinear, OptLinear, linear, "linear " + rows_what);
          Call fused = linear;
          fused.in.push_back(wu.arg());
          ExpectMatches(RefLinearSiluMul, OptLinearSiluMul, fused, "linear_silu_mul " + rows_what);
        }
      }
      const int64_t num_experts = 5, top_k = 2, inter = 64, hidden = k;
      const auto gate = make(num_experts, inter, hidden, block_cols, 30),
                 up = make(num_experts, inter, hidden, block_cols, 31),
                 down = make(num_experts, hidden, inter, block_cols, 32);
      const std::string what =
          name + " [1, " + std::to_string(block_cols) + "] hidden " + std::to_string(hidden);
      const std::vector<int32_t> offsets = {0, 0, 1, 7, 10, 19};
      const std::vector<float> xp = Random(19 * hidden, 33);
      Call grouped;
      grouped.in = {Arg(xp.data(), DType::kF32, {19, hidden}),
                    Arg(offsets.data(), DType::kI32, {num_experts + 1}), gate.arg()};
      grouped.out = {{DType::kF32, {19, inter}}};
      ExpectMatches(RefGroupedMatmul, OptGroupedMatmul, grouped, "grouped_matmul " + what);
      grouped.in.push_back(up.arg());
      ExpectMatches(RefGroupedMatmulSiluMul, OptGroupedMatmulSiluMul, grouped,
                    "grouped_matmul_silu_mul " + what);
      const int32_t tokens = 3;
      const int64_t pairs = tokens * top_k, slots = 4;
      const std::vector<int32_t> batch_experts = {0, 1, 3, 4};
      const std::vector<int32_t> batch_pairs = {0, 5, -1, 4, -1, -1, 1, 2, -1, 3, -1, -1};
      const std::vector<float> x = Random(tokens * hidden, 34);
      const std::vector<float> h = Random(pairs * inter, 35);
      Call gate_up;
      gate_up.in = {Arg(x.data(), DType::kF32, {tokens, hidden}),
                    Arg(batch_experts.data(), DType::kI32, {slots}),
                    Arg(batch_pairs.data(), DType::kI32, {slots, tokens}), gate.arg(), up.arg()};
      gate_up.out = {{DType::kF32, {pairs, inter}}};
      SetParams(gate_up.param_args, TopKParams{.top_k = top_k});
      ExpectMatches(RefExpertBatchedGateUpSilu, OptExpertBatchedGateUpSilu, gate_up,
                    "expert_batched_gate_up_silu " + what);
      Call batched = gate_up;
      batched.in.pop_back();
      ExpectMatches(RefExpertBatchedMatmul, OptExpertBatchedMatmul, batched,
                    "expert_batched_matmul " + what);
      Call down_call;
      down_call.in = {Arg(h.data(), DType::kF32, {pairs, inter}), gate_up.in[1], gate_up.in[2],
                      down.arg()};
      down_call.out = {{DType::kF32, {pairs, hidden}}};
      ExpectMatches(RefExpertBatchedDown, OptExpertBatchedDown, down_call,
                    "expert_batched_down " + what);
    }
  }
}

TEST(OptKernelsTest, Int4KernelsMatchReference) {
  SKIP_WITHOUT_AVX2();
  ExpectIntegerKernelsMatch("int4", simd::WType::kInt4,
                            [](int64_t e, int64_t n, int64_t k, int32_t block_cols, uint32_t seed) {
                              return testing::Int4BlockWeight(e, n, k, block_cols, seed);
                            });
}

// int8 with blocks of 32 and 64: the integer dot products (the fp8 tests above take int8
// blocks whose inputs stay f32).
TEST(OptKernelsTest, Int8IntegerKernelsMatchReference) {
  SKIP_WITHOUT_AVX2();
  ExpectIntegerKernelsMatch("int8", simd::WType::kInt8,
                            [](int64_t e, int64_t n, int64_t k, int32_t block_cols, uint32_t seed) {
                              return testing::Fp8BlockWeight(e, n, k, 1, block_cols, seed, 0.5f,
                                                             QuantScheme::kInt8Block);
                            });
}

// Q8Rows rounds as RoundToQ8Block, bit for bit, on AVX2 and with the reference selected
// (ties, a zero block, a NaN block, random blocks), and lays int4's inputs out as the dot
// products read them: even inputs, odd inputs, 8 x the lane sums.
TEST(OptKernelsTest, Q8RowsRoundAsRoundToQ8Block) {
  SKIP_WITHOUT_AVX2();
  constexpr int64_t k = 5 * kQ8Block, rows = 3;
  std::vector<float> x = Random(rows * k, 90);
  for (int64_t i = 0; i < kQ8Block; ++i)  // d = 0.25: every other input a tie
    x[i] = (i == 0) ? 31.75f : static_cast<float>(i % 9 - 4) * 0.125f;
  std::fill(x.begin() + kQ8Block, x.begin() + 2 * kQ8Block, 0.0f);
  x[k + 3] = std::numeric_limits<float>::quiet_NaN();
  IsaScope scope;
  for (const CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kReference}) {
    SetCpuIsa(isa);
    for (const simd::WType wtype : {simd::WType::kInt8, simd::WType::kInt4}) {
      simd::Q8Rows q8;
      q8.Round(wtype, x.data(), rows, k, 2);
      for (int64_t r = 0; r < rows; ++r) {
        const simd::Q8Row row = q8.Row(r);
        for (int64_t b = 0; b < k / kQ8Block; ++b) {
          const std::string what = std::string(CpuIsaName(isa)) + " row " + std::to_string(r) +
                                   " block " + std::to_string(b);
          int8_t want[kQ8Block];
          const float d = RoundToQ8Block(x.data() + r * k + b * kQ8Block, want);
          if (std::isnan(d)) {
            EXPECT_TRUE(std::isnan(row.d[b])) << what;
          } else {
            EXPECT_EQ(row.d[b], d) << what;
          }
          int32_t lane_sums[4] = {};
          for (int64_t i = 0; i < kQ8Block; ++i) {
            const int8_t got = wtype == simd::WType::kInt8
                                   ? row.q[b * kQ8Block + i]
                                   : row.q[b / 2 * 64 + (i % 2) * 32 + (b % 2) * 16 + i / 2];
            EXPECT_EQ(got, want[i]) << what << " input " << i;
            lane_sums[i / 8] += want[i];
          }
          if (wtype == simd::WType::kInt4) {
            for (int l = 0; l < 4; ++l)
              EXPECT_EQ(row.corr[b / 2 * 8 + (b % 2) * 4 + l], 8 * lane_sums[l]) << what;
            EXPECT_EQ(row.block_corr[b],
                      8 * (lane_sums[0] + lane_sums[1] + lane_sums[2] + lane_sums[3]))
                << what;
          }
        }
      }
    }
  }
}

// ---- Reductions
// -----------------------------------------------------------------------------------

TEST(OptKernelsTest, MoeCombineAndUnpermuteReduceMatchReference) {
  SKIP_WITHOUT_AVX2();
  const int64_t top_k = 3;
  for (int64_t hidden : {19, 37, 129}) {
    const int32_t tokens = 7;
    const int64_t pairs = tokens * top_k;
    const std::vector<float> y = Random(pairs * hidden, 23);
    const std::vector<float> weights = Random(pairs, 24);
    const Meta meta = Meta::Tokens(5, tokens);
    Call combine;
    combine.in = {Arg(y.data(), DType::kF32, {pairs, hidden}),
                  Arg(weights.data(), DType::kF32, {tokens, top_k})};
    combine.out = {{DType::kF32, {tokens, hidden}}};
    combine.meta = meta.view();
    ExpectMatches(RefMoeCombine, OptMoeCombine, combine,
                  "combine hidden " + std::to_string(hidden));

    // A permutation of the pairs with padding (-1) and an out-of-range entry.
    std::vector<int32_t> sorted(pairs);
    for (int64_t i = 0; i < pairs; ++i)
      sorted[i] = static_cast<int32_t>((i * 5) % pairs);
    sorted[pairs - 1] = -1;
    sorted[2] = static_cast<int32_t>(pairs + 4);
    Call unpermute;
    unpermute.in = {Arg(y.data(), DType::kF32, {pairs, hidden}),
                    Arg(sorted.data(), DType::kI32, {pairs}),
                    Arg(weights.data(), DType::kF32, {tokens, top_k})};
    unpermute.out = {{DType::kF32, {tokens, hidden}}};
    SetParams(unpermute.param_args, TopKParams{.top_k = top_k});
    ExpectMatches(RefMoeUnpermuteReduce, OptMoeUnpermuteReduce, unpermute,
                  "unpermute hidden " + std::to_string(hidden));
  }
}

}  // namespace
}  // namespace moegraph
