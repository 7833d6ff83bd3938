// moegraph-kernel-bench: Google Benchmark suite of the CPU kernels at the
// bench-a3b-4l shapes (optimised and reference), next to the yardsticks
// measured in the same run (read/triad bandwidth, peak AVX2 and AVX-512 FMA, OpenBLAS
// sgemm). On an AVX-512 machine each optimised kernel runs twice: /opt at AVX-512, /opt_avx2
// held to AVX2.
// Every benchmark reports flop/s and bytes/s counters plus per-iteration
// flops and bytes, which bench/plot_roofline.py turns into a roofline.
// --smoke: tiny shapes and short timings (CI); timings never fail a run.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bench/yardsticks.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/opt_kernels.h"
#include "kernels/cpu/reference_kernels.h"
#include "support/half.h"
#include "tests/testing/tensors.h"

namespace moegraph::bench {
namespace {

bool g_smoke = false;

int Threads() {
  return omp_get_max_threads();
}

// The bench-a3b-4l shapes (smoke: a toy model).
struct Shapes {
  int64_t hidden = 2048, inter = 768, experts = 128, top_k = 8, vocab = 32000;
  int64_t heads = 16, kv_heads = 4, head_dim = 128;
  int64_t prefill_tokens = 512, decode_context = 1024, decode_seqs = 8;
};

const Shapes& S() {
  static const Shapes shapes = [] {
    Shapes s;
    if (g_smoke) {
      s = Shapes{64, 32, 8, 2, 512, 4, 2, 16, 32, 64, 2};
    }
    return s;
  }();
  return shapes;
}

std::vector<float> RandomF32(int64_t n, uint32_t seed, float scale) {
  return testing::RandomFloats(n, seed, scale);
}

// Uniform [-scale, scale) bf16 values from a xorshift stream (fast: the
// expert weights of one a3b layer are 600M values).
std::vector<uint16_t> RandomBf16(int64_t n, uint32_t seed, float scale) {
  std::vector<uint16_t> v(n);
  uint64_t state = 0x9E3779B97F4A7C15ull * (seed + 1);
  const float unit = scale / 32768.0f;
  for (uint16_t& x : v) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    x = F32ToBf16(static_cast<float>(static_cast<int16_t>(state >> 16)) * unit);
  }
  return v;
}

TensorArg Tensor(const void* data, DType dtype, std::vector<int64_t> shape) {
  return testing::HostArg(data, dtype, shape);
}

// bf16 expert weights of one MoE layer, shared by the MoE benchmarks.
struct ExpertWeights {
  std::vector<std::vector<uint16_t>> gate, up, down;
  std::vector<const void*> gate_ptr, up_ptr, down_ptr;
};

const ExpertWeights& Experts() {
  static const ExpertWeights* w = [] {
    auto* ew = new ExpertWeights;
    const Shapes& s = S();
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.hidden));
    for (int64_t e = 0; e < s.experts; ++e) {
      ew->gate.push_back(RandomBf16(s.inter * s.hidden, 100 + e, scale));
      ew->up.push_back(RandomBf16(s.inter * s.hidden, 300 + e, scale));
      ew->down.push_back(RandomBf16(s.hidden * s.inter, 500 + e, scale));
      ew->gate_ptr.push_back(ew->gate.back().data());
      ew->up_ptr.push_back(ew->up.back().data());
      ew->down_ptr.push_back(ew->down.back().data());
    }
    return ew;
  }();
  return *w;
}

TensorArg Stacked(const std::vector<const void*>& pointers, int64_t n, int64_t k) {
  TensorArg t = Tensor(nullptr, DType::kBF16, {static_cast<int64_t>(pointers.size()), n, k});
  t.expert_data = pointers.data();
  return t;
}

// Calls `fn` once per iteration with args rebuilt by `setup(iteration)`.
void RunKernel(benchmark::State& state, KernelFn fn, double flops, double bytes,
               const std::function<void(KernelArgs&, int64_t)>& setup) {
  KernelArgs args;
  args.num_threads = Threads();
  int64_t iteration = 0;
  setup(args, iteration);
  fn(args);  // warm
  for (auto _ : state) {
    setup(args, ++iteration);
    fn(args);
    benchmark::ClobberMemory();
  }
  state.counters["flop/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes/s"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flop_per_iter"] = flops;
  state.counters["bytes_per_iter"] = bytes;
}

// ---- Yardsticks -----------------------------------------------------------------------

// Read bandwidth with `streams` sequential streams per thread.
void BM_YardstickReadBandwidth(benchmark::State& state, int streams) {
  const uint64_t bytes = g_smoke ? (16ull << 20) : (1ull << 30);
  double gbs = 0;
  for (auto _ : state)
    gbs = MeasureReadBandwidth(Threads(), bytes, 3, streams);
  state.counters["GB/s"] = gbs;
}

void BM_YardstickTriadBandwidth(benchmark::State& state) {
  const uint64_t bytes = g_smoke ? (8ull << 20) : (512ull << 20);
  double gbs = 0;
  for (auto _ : state)
    gbs = MeasureTriadBandwidth(Threads(), bytes, 3);
  state.counters["GB/s"] = gbs;
}

void BM_YardstickPeakFma(benchmark::State& state, bool avx512) {
  double gflops = 0;
  for (auto _ : state)
    gflops = avx512 ? MeasurePeakFmaAvx512(Threads(), 2) : MeasurePeakFma(Threads(), 2);
  state.counters["GFLOP/s"] = gflops;
}

// OpenBLAS sgemm C[m, n] = A[m, k] B[n, k]^T, fp32.
void BM_YardstickOpenBlasSgemm(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  if (!HaveOpenBlas()) {
    state.SkipWithError("built without OpenBLAS");
    return;
  }
  double seconds = 0;
  for (auto _ : state) {
    seconds = OpenBlasSgemmSeconds(m, n, k, Threads(), 3);
    state.SetIterationTime(seconds);
  }
  const double flops = 2.0 * m * n * k;
  state.counters["GFLOP/s"] = flops / seconds / 1e9;
  state.counters["flop_per_iter"] = flops;
  state.counters["bytes_per_iter"] = 4.0 * (m * k + n * k + m * n);
}

// ---- Decode: expert-batched GEMV at batch 1 --------------------------------------------

// One token routed to top_k experts, different experts every iteration so
// the weights come from memory, not cache.
void BM_ExpertBatchedGateUpSilu(benchmark::State& state, KernelFn fn) {
  const Shapes& s = S();
  const ExpertWeights& w = Experts();
  const std::vector<float> x = RandomF32(s.hidden, 1, 1.0f);
  std::vector<int32_t> batch_experts(s.top_k), batch_pairs(s.top_k);
  std::vector<float> h(s.top_k * s.inter);
  std::vector<TensorArg> in, out;
  const TensorArg gate = Stacked(w.gate_ptr, s.inter, s.hidden);
  const TensorArg up = Stacked(w.up_ptr, s.inter, s.hidden);
  const double bytes = 2.0 * s.top_k * 2 * s.inter * s.hidden;
  const double flops = 2.0 * s.top_k * 2 * s.inter * s.hidden;
  RunKernel(state, fn, flops, bytes, [&](KernelArgs& args, int64_t it) {
    for (int64_t j = 0; j < s.top_k; ++j) {
      batch_experts[j] = static_cast<int32_t>((it * s.top_k + j) % s.experts);
      batch_pairs[j] = static_cast<int32_t>(j);
    }
    std::sort(batch_experts.begin(), batch_experts.end());
    in = {Tensor(x.data(), DType::kF32, {1, s.hidden}),
          Tensor(batch_experts.data(), DType::kI32, {s.top_k}),
          Tensor(batch_pairs.data(), DType::kI32, {s.top_k, 1}), gate, up};
    out = {Tensor(h.data(), DType::kF32, {s.top_k, s.inter})};
    args.in = in.data();
    args.num_in = 5;
    args.out = out.data();
    args.num_out = 1;
    SetParams(args, TopKParams{.top_k = s.top_k});
  });
}

void BM_ExpertBatchedDown(benchmark::State& state, KernelFn fn) {
  const Shapes& s = S();
  const ExpertWeights& w = Experts();
  const std::vector<float> h = RandomF32(s.top_k * s.inter, 2, 1.0f);
  std::vector<int32_t> batch_experts(s.top_k), batch_pairs(s.top_k);
  std::vector<float> y(s.top_k * s.hidden);
  std::vector<TensorArg> in, out;
  const TensorArg down = Stacked(w.down_ptr, s.hidden, s.inter);
  const double bytes = 2.0 * s.top_k * s.inter * s.hidden;
  const double flops = 2.0 * s.top_k * s.inter * s.hidden;
  RunKernel(state, fn, flops, bytes, [&](KernelArgs& args, int64_t it) {
    for (int64_t j = 0; j < s.top_k; ++j) {
      batch_experts[j] = static_cast<int32_t>((it * s.top_k + j) % s.experts);
      batch_pairs[j] = static_cast<int32_t>(j);
    }
    std::sort(batch_experts.begin(), batch_experts.end());
    in = {Tensor(h.data(), DType::kF32, {s.top_k, s.inter}),
          Tensor(batch_experts.data(), DType::kI32, {s.top_k}),
          Tensor(batch_pairs.data(), DType::kI32, {s.top_k, 1}), down};
    out = {Tensor(y.data(), DType::kF32, {s.top_k, s.hidden})};
    args.in = in.data();
    args.num_in = 4;
    args.out = out.data();
    args.num_out = 1;
  });
}

// Decode at `tokens` > 1: each token routed to top_k distinct random experts
// (a new routing every iteration, from 16 precomputed), laid out by
// moe_expert_batch; gate/up then down. Bytes: the distinct experts' weights.
void BM_ExpertBatchedDecode(benchmark::State& state, KernelFn gate_up_fn, int64_t tokens) {
  const Shapes& s = S();
  const ExpertWeights& w = Experts();
  const int64_t pairs = tokens * s.top_k;
  const int64_t slots = std::min(s.experts, pairs);
  constexpr int kRoutings = 16;
  std::vector<std::vector<int32_t>> batch_experts(kRoutings), batch_pairs(kRoutings);
  double distinct = 0;
  std::mt19937 rng(11);
  for (int r = 0; r < kRoutings; ++r) {
    std::vector<int32_t> ids(pairs), order(s.experts);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t e = 0; e < s.experts; ++e)
        order[e] = static_cast<int32_t>(e);
      std::shuffle(order.begin(), order.end(), rng);
      std::copy(order.begin(), order.begin() + s.top_k, ids.begin() + t * s.top_k);
    }
    batch_experts[r].resize(slots);
    batch_pairs[r].resize(slots * tokens);
    const TensorArg id_arg = Tensor(ids.data(), DType::kI32, {tokens, s.top_k});
    const std::vector<TensorArg> out = {
        Tensor(batch_experts[r].data(), DType::kI32, {slots}),
        Tensor(batch_pairs[r].data(), DType::kI32, {slots, tokens})};
    KernelArgs args;
    args.in = &id_arg;
    args.num_in = 1;
    args.out = out.data();
    args.num_out = 2;
    SetParams(args, NumExpertsParams{.num_experts = s.experts});
    RefMoeExpertBatch(args);
    for (int32_t e : batch_experts[r])
      distinct += e >= 0 ? 1.0 / kRoutings : 0.0;
  }
  const std::vector<float> x = RandomF32(tokens * s.hidden, 1, 1.0f);
  std::vector<float> h(pairs * s.inter);
  std::vector<TensorArg> in, out;
  const TensorArg gate = Stacked(w.gate_ptr, s.inter, s.hidden);
  const TensorArg up = Stacked(w.up_ptr, s.inter, s.hidden);
  RunKernel(state, gate_up_fn, 2.0 * pairs * 2 * s.inter * s.hidden,
            2.0 * distinct * 2 * s.inter * s.hidden, [&](KernelArgs& args, int64_t it) {
              const int r = static_cast<int>(it % kRoutings);
              in = {Tensor(x.data(), DType::kF32, {tokens, s.hidden}),
                    Tensor(batch_experts[r].data(), DType::kI32, {slots}),
                    Tensor(batch_pairs[r].data(), DType::kI32, {slots, tokens}), gate, up};
              out = {Tensor(h.data(), DType::kF32, {pairs, s.inter})};
              args.in = in.data();
              args.num_in = 5;
              args.out = out.data();
              args.num_out = 1;
              SetParams(args, TopKParams{.top_k = s.top_k});
            });
}

// ---- Dense: LM head GEMV and prefill GEMM ---------------------------------------------------

// x [rows, k] times a bf16 weight [n, k].
void BM_Linear(benchmark::State& state, KernelFn fn, int64_t rows, int64_t n, int64_t k) {
  const std::vector<float> x = RandomF32(rows * k, 3, 1.0f);
  const std::vector<uint16_t> weight = RandomBf16(n * k, 4, 0.02f);
  std::vector<float> y(rows * n);
  const std::vector<TensorArg> in = {Tensor(x.data(), DType::kF32, {rows, k}),
                                     Tensor(weight.data(), DType::kBF16, {n, k})};
  const std::vector<TensorArg> out = {Tensor(y.data(), DType::kF32, {rows, n})};
  RunKernel(state, fn, 2.0 * rows * n * k, 2.0 * n * k + 4.0 * rows * (k + n),
            [&](KernelArgs& args, int64_t) {
              args.in = in.data();
              args.num_in = 2;
              args.out = out.data();
              args.num_out = 1;
            });
}

// x [rows, k] times a quantized weight [n, k]: block-scaled fp8 (blocks 128 x 128,
// DeepSeek-V3's), or compile-model --weights int8 / int4 (blocks 1 x 32): the same product as
// BM_Linear's bf16 weight in 1/2, 9/32 or 5/32 of its weight bytes.
void BM_LinearQuant(benchmark::State& state, KernelFn fn, int64_t rows, int64_t n, int64_t k,
                    QuantScheme scheme) {
  const std::vector<float> x = RandomF32(rows * k, 3, 1.0f);
  const bool int4 = scheme == QuantScheme::kInt4Block;
  std::vector<uint8_t> weight(int4 ? n * k / 2 : n * k);
  uint64_t bits = 0x9E3779B97F4A7C15ull;
  for (uint8_t& b : weight) {
    bits ^= bits << 13;
    bits ^= bits >> 7;
    bits ^= bits << 17;
    b = static_cast<uint8_t>(bits >> 24);
    if (scheme == QuantScheme::kFp8Block && (b & 0x7f) == 0x7f) b ^= 1;  // no NaN
  }
  const WeightQuant quant =
      scheme == QuantScheme::kFp8Block ? WeightQuant{scheme, 128, 128} : WeightQuant{scheme, 1, 32};
  const float range = scheme == QuantScheme::kFp8Block ? 448.0f : int4 ? 8.0f : 127.0f;
  const std::vector<float> scales(quant.ScaleRows(n) * quant.ScaleCols(k), 0.02f / range);
  std::vector<float> y(rows * n);
  TensorArg w = Tensor(weight.data(), QuantWeightDType(scheme), {n, k});
  w.quant = quant;
  w.scales = scales.data();
  const std::vector<TensorArg> in = {Tensor(x.data(), DType::kF32, {rows, k}), w};
  const std::vector<TensorArg> out = {Tensor(y.data(), DType::kF32, {rows, n})};
  RunKernel(state, fn, 2.0 * rows * n * k,
            1.0 * weight.size() + 4.0 * (scales.size() + rows * (k + n)),
            [&](KernelArgs& args, int64_t) {
              args.in = in.data();
              args.num_in = 2;
              args.out = out.data();
              args.num_out = 1;
            });
}

// ---- Prefill: grouped matmuls over routed tokens ------------------------------------------

// Offsets of prefill_tokens tokens routed uniformly at random to top_k distinct experts.
std::vector<int32_t> PrefillOffsets(int64_t* pairs) {
  const Shapes& s = S();
  std::vector<int32_t> counts(s.experts + 1, 0);
  std::mt19937 rng(9);
  std::vector<int32_t> order(s.experts);
  for (int64_t t = 0; t < s.prefill_tokens; ++t) {
    for (int64_t e = 0; e < s.experts; ++e)
      order[e] = static_cast<int32_t>(e);
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t j = 0; j < s.top_k; ++j)
      ++counts[order[j] + 1];
  }
  for (int64_t e = 0; e < s.experts; ++e)
    counts[e + 1] += counts[e];
  *pairs = counts[s.experts];
  return counts;
}

void BM_GroupedMatmul(benchmark::State& state, KernelFn fn, bool fused) {
  const Shapes& s = S();
  const ExpertWeights& w = Experts();
  int64_t pairs = 0;
  const std::vector<int32_t> offsets = PrefillOffsets(&pairs);
  const int64_t k = fused ? s.hidden : s.inter;
  const int64_t n = fused ? s.inter : s.hidden;
  const std::vector<float> x = RandomF32(pairs * k, 5, 1.0f);
  std::vector<float> y(pairs * n);
  std::vector<TensorArg> in = {Tensor(x.data(), DType::kF32, {pairs, k}),
                               Tensor(offsets.data(), DType::kI32, {s.experts + 1})};
  if (fused) {
    in.push_back(Stacked(w.gate_ptr, n, k));
    in.push_back(Stacked(w.up_ptr, n, k));
  } else {
    in.push_back(Stacked(w.down_ptr, n, k));
  }
  const std::vector<TensorArg> out = {Tensor(y.data(), DType::kF32, {pairs, n})};
  const double num_weights = fused ? 2 : 1;
  RunKernel(state, fn, 2.0 * pairs * n * k * num_weights,
            2.0 * s.experts * n * k * num_weights + 4.0 * pairs * (k + n),
            [&](KernelArgs& args, int64_t) {
              args.in = in.data();
              args.num_in = static_cast<int>(in.size());
              args.out = out.data();
              args.num_out = 1;
            });
}

// ---- GPT-OSS-20b experts: mxfp4 against bf16 -------------------------------------------

// GPT-OSS-20b's expert shapes (smoke: small): H = I = 2880, E = 32, top_k = 4, gate_up
// [E, 2I, H] (out-major, as published) and down [E, H, I].
struct GptOssShapes {
  int64_t hidden = 2880, inter = 2880, experts = 32, top_k = 4, prefill_tokens = 128;
};

const GptOssShapes& OssS() {
  static const GptOssShapes shapes = g_smoke ? GptOssShapes{64, 64, 4, 2, 16} : GptOssShapes{};
  return shapes;
}

// One stacked expert weight [E, n, k] in bf16 or mxfp4 (random codes, e8m0 scales 2^-7 ..
// 2^-4: values of a trained model's magnitude), and a bf16 bias [E, n].
struct OssWeight {
  int64_t n = 0, k = 0;
  DType dtype = DType::kBF16;
  std::vector<std::vector<uint16_t>> bf16;
  std::vector<std::vector<uint8_t>> codes, scales;
  std::vector<const void*> data_ptr, scale_ptr;
  std::vector<uint16_t> bias;

  TensorArg arg() const {
    TensorArg t = Tensor(nullptr, dtype, {static_cast<int64_t>(data_ptr.size()), n, k});
    t.expert_data = data_ptr.data();
    if (dtype == DType::kMxfp4) {
      t.quant = WeightQuant{QuantScheme::kMxfp4, 1, 32};
      t.expert_scales = scale_ptr.data();
    }
    return t;
  }
  // Bytes of weights (and scales) one expert's matrix reads.
  double ExpertBytes() const {
    return dtype == DType::kMxfp4 ? n * k / 2.0 + n * k / 32.0 : 2.0 * n * k;
  }
};

OssWeight MakeOssWeight(DType dtype, int64_t n, int64_t k, uint32_t seed) {
  const GptOssShapes& s = OssS();
  OssWeight w;
  w.n = n;
  w.k = k;
  w.dtype = dtype;
  for (int64_t e = 0; e < s.experts; ++e) {
    if (dtype == DType::kMxfp4) {
      w.codes.push_back(std::vector<uint8_t>(n * k / 2));
      uint64_t bits = 0x9E3779B97F4A7C15ull * (seed + e + 1);
      for (uint8_t& b : w.codes.back()) {
        bits ^= bits << 13;
        bits ^= bits >> 7;
        bits ^= bits << 17;
        b = static_cast<uint8_t>(bits >> 24);
      }
      w.scales.push_back(std::vector<uint8_t>(n * k / 32));
      for (size_t i = 0; i < w.scales.back().size(); ++i)
        w.scales.back()[i] = static_cast<uint8_t>(120 + (i * 7 + e) % 4);
      w.data_ptr.push_back(w.codes.back().data());
      w.scale_ptr.push_back(w.scales.back().data());
    } else {
      w.bf16.push_back(RandomBf16(n * k, seed + e, 1.0f / std::sqrt(static_cast<float>(k))));
      w.data_ptr.push_back(w.bf16.back().data());
    }
  }
  w.bias = RandomBf16(s.experts * n, seed + 999, 0.1f);
  return w;
}

// The gate_up ([2I, H]) and down ([H, I]) weights of `dtype`, built once.
const OssWeight& OssWeights(DType dtype, bool gate_up) {
  const GptOssShapes& s = OssS();
  static std::map<std::pair<DType, bool>, OssWeight>* cache =
      new std::map<std::pair<DType, bool>, OssWeight>;
  auto it = cache->find({dtype, gate_up});
  if (it == cache->end()) {
    OssWeight w = gate_up ? MakeOssWeight(dtype, 2 * s.inter, s.hidden, 700)
                          : MakeOssWeight(dtype, s.hidden, s.inter, 800);
    it = cache->emplace(std::pair{dtype, gate_up}, std::move(w)).first;
  }
  return it->second;
}

// Decode, one token: expert_batched_matmul over top_k experts (a new set each iteration):
// gate_up x [1, H] -> [top_k, 2I] (top_k = k), or down h [top_k, I] -> [top_k, H] (top_k =
// 1), with the bias. Bytes: the weights (and scales) of the top_k experts.
void BM_GptOssDecode(benchmark::State& state, KernelFn fn, DType dtype, bool gate_up) {
  const GptOssShapes& s = OssS();
  const OssWeight& w = OssWeights(dtype, gate_up);
  const int64_t x_rows = gate_up ? 1 : s.top_k;
  const std::vector<float> x = RandomF32(x_rows * w.k, 2, 1.0f);
  std::vector<int32_t> batch_experts(s.top_k), batch_pairs(s.top_k);
  std::vector<float> y(s.top_k * w.n);
  std::vector<TensorArg> in, out;
  const TensorArg warg = w.arg();
  const TensorArg bias = Tensor(w.bias.data(), DType::kBF16, {s.experts, w.n});
  RunKernel(state, fn, 2.0 * s.top_k * w.n * w.k, s.top_k * w.ExpertBytes(),
            [&](KernelArgs& args, int64_t it) {
              for (int64_t j = 0; j < s.top_k; ++j) {
                batch_experts[j] = static_cast<int32_t>((it * s.top_k + j) % s.experts);
                batch_pairs[j] = static_cast<int32_t>(j);
              }
              std::sort(batch_experts.begin(), batch_experts.end());
              in = {Tensor(x.data(), DType::kF32, {x_rows, w.k}),
                    Tensor(batch_experts.data(), DType::kI32, {s.top_k}),
                    Tensor(batch_pairs.data(), DType::kI32, {s.top_k, 1}), warg, bias};
              out = {Tensor(y.data(), DType::kF32, {s.top_k, w.n})};
              args.in = in.data();
              args.num_in = 5;
              args.out = out.data();
              args.num_out = 1;
              SetParams(args, TopKParams{.top_k = gate_up ? s.top_k : 1});
            });
}

// Prefill: grouped_matmul of prefill_tokens * top_k pairs (every expert the same share)
// through gate_up with its bias. Bytes: every expert's weights once.
void BM_GptOssGrouped(benchmark::State& state, KernelFn fn, DType dtype) {
  const GptOssShapes& s = OssS();
  const OssWeight& w = OssWeights(dtype, /*gate_up=*/true);
  const int64_t pairs = s.prefill_tokens * s.top_k;
  std::vector<int32_t> offsets(s.experts + 1);
  for (int64_t e = 0; e <= s.experts; ++e)
    offsets[e] = static_cast<int32_t>(pairs * e / s.experts);
  const std::vector<float> x = RandomF32(pairs * w.k, 5, 1.0f);
  std::vector<float> y(pairs * w.n);
  const std::vector<TensorArg> in = {Tensor(x.data(), DType::kF32, {pairs, w.k}),
                                     Tensor(offsets.data(), DType::kI32, {s.experts + 1}), w.arg(),
                                     Tensor(w.bias.data(), DType::kBF16, {s.experts, w.n})};
  const std::vector<TensorArg> out = {Tensor(y.data(), DType::kF32, {pairs, w.n})};
  RunKernel(state, fn, 2.0 * pairs * w.n * w.k, s.experts * w.ExpertBytes(),
            [&](KernelArgs& args, int64_t) {
              args.in = in.data();
              args.num_in = 4;
              args.out = out.data();
              args.num_out = 1;
            });
}

// ---- Routing, norms, rope ----------------------------------------------------------------

void BM_TopkRoute(benchmark::State& state, KernelFn fn) {
  const Shapes& s = S();
  const std::vector<float> logits = RandomF32(s.prefill_tokens * s.experts, 6, 3.0f);
  std::vector<int32_t> ids(s.prefill_tokens * s.top_k);
  std::vector<float> weights(s.prefill_tokens * s.top_k);
  const std::vector<TensorArg> in = {
      Tensor(logits.data(), DType::kF32, {s.prefill_tokens, s.experts})};
  const std::vector<TensorArg> out = {
      Tensor(ids.data(), DType::kI32, {s.prefill_tokens, s.top_k}),
      Tensor(weights.data(), DType::kF32, {s.prefill_tokens, s.top_k})};
  RunKernel(state, fn, 0, 4.0 * s.prefill_tokens * (s.experts + 2 * s.top_k),
            [&](KernelArgs& args, int64_t) {
              args.in = in.data();
              args.num_in = 1;
              args.out = out.data();
              args.num_out = 2;
              SetParams(args,
                        TopkRouteParams{.top_k = s.top_k, .norm_topk_prob = 1, .row_offset = 0});
            });
}

void BM_AddRmsNorm(benchmark::State& state, KernelFn fn) {
  const Shapes& s = S();
  const int64_t rows = s.prefill_tokens;
  const std::vector<float> x = RandomF32(rows * s.hidden, 7, 1.0f);
  const std::vector<float> r = RandomF32(rows * s.hidden, 8, 1.0f);
  const std::vector<uint16_t> w = RandomBf16(s.hidden, 9, 1.0f);
  std::vector<float> sum(rows * s.hidden), y(rows * s.hidden);
  const std::vector<TensorArg> in = {Tensor(x.data(), DType::kF32, {rows, s.hidden}),
                                     Tensor(r.data(), DType::kF32, {rows, s.hidden}),
                                     Tensor(w.data(), DType::kBF16, {s.hidden})};
  const std::vector<TensorArg> out = {Tensor(sum.data(), DType::kF32, {rows, s.hidden}),
                                      Tensor(y.data(), DType::kF32, {rows, s.hidden})};
  RunKernel(state, fn, 5.0 * rows * s.hidden, 16.0 * rows * s.hidden,
            [&](KernelArgs& args, int64_t) {
              args.in = in.data();
              args.num_in = 3;
              args.out = out.data();
              args.num_out = 2;
              SetParams(args, RmsNormParams{.eps = 1e-6f});
            });
}

// Owns a ForwardMetaView of `seqs` sequences with `context` cached tokens
// and `new_tokens` new tokens each, and a paged KV cache holding them.
struct AttentionSetup {
  std::vector<int32_t> this_time, encoder, decoder, cu, batch_id, positions, tables, slots;
  std::vector<float> cache_k, cache_v;
  ForwardMetaView meta;
  KvLayerView layer;
  KvCacheView kv;

  AttentionSetup(int64_t seqs, int64_t context, int64_t new_tokens) {
    const Shapes& s = S();
    const int32_t block = 16;
    const int64_t blocks_per_seq = (context + new_tokens + block - 1) / block;
    const int64_t tokens = seqs * new_tokens;
    this_time.assign(seqs, static_cast<int32_t>(new_tokens));
    encoder.assign(seqs, context == 0 ? static_cast<int32_t>(new_tokens) : 0);
    decoder.assign(seqs, static_cast<int32_t>(context));
    cu.assign(seqs + 1, 0);
    for (int64_t i = 0; i < seqs; ++i)
      cu[i + 1] = static_cast<int32_t>(cu[i] + new_tokens);
    tables.resize(seqs * blocks_per_seq);
    for (int64_t i = 0; i < seqs * blocks_per_seq; ++i)
      tables[i] = static_cast<int32_t>(i);
    for (int64_t i = 0; i < seqs; ++i) {
      for (int64_t j = 0; j < new_tokens; ++j) {
        const int64_t pos = context + j;
        batch_id.push_back(static_cast<int32_t>(i));
        positions.push_back(static_cast<int32_t>(pos));
        slots.push_back(
            static_cast<int32_t>(tables[i * blocks_per_seq + pos / block] * block + pos % block));
      }
    }
    kv.num_layers = 1;
    kv.num_blocks = static_cast<int32_t>(seqs * blocks_per_seq);
    kv.block_size = block;
    layer.num_kv_heads = static_cast<int32_t>(s.kv_heads);
    layer.head_dim = static_cast<int32_t>(s.head_dim);
    layer.slot_stride = s.kv_heads * s.head_dim;
    const int64_t layer_elements = int64_t{kv.num_blocks} * block * layer.slot_stride;
    cache_k = RandomF32(layer_elements, 10, 1.0f);
    cache_v = RandomF32(layer_elements, 11, 1.0f);
    layer.k = cache_k.data();
    layer.v = cache_v.data();
    kv.layers = &layer;
    meta = ForwardMetaView{static_cast<int32_t>(tokens),
                           static_cast<int32_t>(seqs),
                           static_cast<int32_t>(tokens),
                           static_cast<int32_t>(seqs),
                           static_cast<int32_t>(blocks_per_seq),
                           this_time.data(),
                           encoder.data(),
                           decoder.data(),
                           cu.data(),
                           batch_id.data(),
                           positions.data(),
                           tables.data(),
                           slots.data()};
  }
};

void BM_Attention(benchmark::State& state, KernelFn fn, bool prefill) {
  const Shapes& s = S();
  const int64_t seqs = prefill ? 1 : s.decode_seqs;
  const int64_t context = prefill ? 0 : s.decode_context;
  const int64_t new_tokens = prefill ? s.prefill_tokens : 1;
  AttentionSetup setup(seqs, context, new_tokens);
  const int64_t tokens = seqs * new_tokens;
  const int64_t q_cols = s.heads * s.head_dim, kv_cols = s.kv_heads * s.head_dim;
  const std::vector<float> q = RandomF32(tokens * q_cols, 12, 1.0f);
  const std::vector<float> k = RandomF32(tokens * kv_cols, 13, 1.0f);
  const std::vector<float> v = RandomF32(tokens * kv_cols, 14, 1.0f);
  std::vector<float> o(tokens * q_cols);
  const std::vector<TensorArg> in = {Tensor(q.data(), DType::kF32, {tokens, q_cols}),
                                     Tensor(k.data(), DType::kF32, {tokens, kv_cols}),
                                     Tensor(v.data(), DType::kF32, {tokens, kv_cols})};
  const std::vector<TensorArg> out = {Tensor(o.data(), DType::kF32, {tokens, q_cols})};
  // Scores and weighted values: 4 flops per (query head, key, dim).
  double keys = 0;
  for (int64_t t = 0; t < new_tokens; ++t)
    keys += static_cast<double>(context + t + 1);
  const double flops = 4.0 * seqs * keys * s.heads * s.head_dim;
  const double bytes = prefill ? 4.0 * tokens * (2 * q_cols + 2 * kv_cols)
                               : 4.0 * seqs * (context + 1) * 2 * kv_cols + 8.0 * tokens * q_cols;
  RunKernel(state, fn, flops, bytes, [&](KernelArgs& args, int64_t) {
    args.meta = &setup.meta;
    args.kv = &setup.kv;
    args.in = in.data();
    args.num_in = 3;
    args.out = out.data();
    args.num_out = 1;
    SetParams(args, AttentionParams{.layer = 0,
                                    .num_heads = s.heads,
                                    .num_kv_heads = s.kv_heads,
                                    .head_dim = s.head_dim,
                                    .scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim))});
  });
}

void BM_Rope(benchmark::State& state, KernelFn fn) {
  const Shapes& s = S();
  AttentionSetup setup(1, 0, s.prefill_tokens);
  const int64_t rows = s.prefill_tokens, cols = s.heads * s.head_dim;
  const std::vector<float> x = RandomF32(rows * cols, 15, 1.0f);
  std::vector<float> y(rows * cols);
  const std::vector<TensorArg> in = {Tensor(x.data(), DType::kF32, {rows, cols})};
  const std::vector<TensorArg> out = {Tensor(y.data(), DType::kF32, {rows, cols})};
  RunKernel(state, fn, 3.0 * rows * cols, 8.0 * rows * cols, [&](KernelArgs& args, int64_t) {
    args.meta = &setup.meta;
    args.in = in.data();
    args.num_in = 1;
    args.out = out.data();
    args.num_out = 1;
    SetParams(args, RopeParams{.head_dim = s.head_dim, .theta = 1e6});
  });
}

// Registers `name`/opt (the optimised kernel at the widest ISA this machine runs), on an
// AMX machine also `name`/opt_avx512, on an AVX-512 one `name`/opt_avx2 (the same kernel held
// to that ISA), and `name`/ref.
template <typename Fn, typename... Args>
void Register(const std::string& name, Fn fn, KernelFn opt, KernelFn ref, Args... args) {
  struct Variant {
    const char* suffix;
    KernelFn kernel;
    CpuIsa isa;
  };
  const CpuIsa widest = DetectedCpuIsa();
  std::vector<Variant> variants;
  if (widest != CpuIsa::kReference) variants.push_back({"/opt", opt, widest});
  if (widest == CpuIsa::kAmx) variants.push_back({"/opt_avx512", opt, CpuIsa::kAvx512});
  if (static_cast<int>(widest) >= static_cast<int>(CpuIsa::kAvx512)) {
    variants.push_back({"/opt_avx2", opt, CpuIsa::kAvx2});
  }
  variants.push_back({"/ref", ref, widest});
  for (const Variant& v : variants) {
    auto* b = benchmark::RegisterBenchmark((name + v.suffix).c_str(), [=](benchmark::State& state) {
      SetCpuIsa(v.isa);
      fn(state, v.kernel, args...);
      SetCpuIsa(widest);
    });
    b->UseRealTime()->Unit(benchmark::kMillisecond);
    if (g_smoke) b->Iterations(2);
  }
}

void RegisterAll() {
  const Shapes& s = S();
  auto yardstick = [](benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  for (int streams : {1, 4, 8}) {
    yardstick(benchmark::RegisterBenchmark(
        ("yardstick/read_bandwidth/streams:" + std::to_string(streams)).c_str(),
        [streams](benchmark::State& st) { BM_YardstickReadBandwidth(st, streams); }));
  }
  yardstick(benchmark::RegisterBenchmark("yardstick/triad_bandwidth", BM_YardstickTriadBandwidth));
  yardstick(benchmark::RegisterBenchmark(
      "yardstick/peak_fma", [](benchmark::State& st) { BM_YardstickPeakFma(st, false); }));
  if (static_cast<int>(DetectedCpuIsa()) >= static_cast<int>(CpuIsa::kAvx512)) {
    yardstick(benchmark::RegisterBenchmark(
        "yardstick/peak_fma_avx512", [](benchmark::State& st) { BM_YardstickPeakFma(st, true); }));
  }
  const int64_t expert_rows = s.prefill_tokens * s.top_k / s.experts;
  for (auto [m, n, k, label] : {std::tuple{expert_rows, s.inter, s.hidden, "expert_gate"},
                                std::tuple{expert_rows, s.hidden, s.inter, "expert_down"},
                                std::tuple{s.prefill_tokens, s.hidden, s.hidden, "q_proj"}}) {
    auto* b = benchmark::RegisterBenchmark(
        ("yardstick/openblas_sgemm/" + std::string(label)).c_str(),
        [m = m, n = n, k = k](benchmark::State& st) { BM_YardstickOpenBlasSgemm(st, m, n, k); });
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  Register("expert_batched_gate_up_silu/decode_b1", BM_ExpertBatchedGateUpSilu,
           OptExpertBatchedGateUpSilu, RefExpertBatchedGateUpSilu);
  Register("expert_batched_down/decode_b1", BM_ExpertBatchedDown, OptExpertBatchedDown,
           RefExpertBatchedDown);
  Register("expert_batched_gate_up_silu/decode_b8", BM_ExpertBatchedDecode,
           OptExpertBatchedGateUpSilu, RefExpertBatchedGateUpSilu, int64_t{8});
  Register("expert_batched_gate_up_silu/decode_b32", BM_ExpertBatchedDecode,
           OptExpertBatchedGateUpSilu, RefExpertBatchedGateUpSilu, int64_t{32});
  Register("linear/lm_head_b1", BM_Linear, OptLinear, RefLinear, int64_t{1}, s.vocab, s.hidden);
  Register("linear/lm_head_b32", BM_Linear, OptLinear, RefLinear, int64_t{32}, s.vocab, s.hidden);
  Register("linear/q_proj_prefill", BM_Linear, OptLinear, RefLinear, s.prefill_tokens,
           s.heads * s.head_dim, s.hidden);
  // bf16 against block-scaled fp8 on one shape (a DeepSeek-V3-sized projection; smoke: small).
  const int64_t proj_n = g_smoke ? 256 : 4096, proj_k = g_smoke ? 512 : 7168;
  Register("linear/proj_bf16_b1", BM_Linear, OptLinear, RefLinear, int64_t{1}, proj_n, proj_k);
  Register("linear/proj_bf16_prefill", BM_Linear, OptLinear, RefLinear, s.prefill_tokens, proj_n,
           proj_k);
  for (const QuantScheme scheme :
       {QuantScheme::kFp8Block, QuantScheme::kInt8Block, QuantScheme::kInt4Block}) {
    const std::string tag = scheme == QuantScheme::kFp8Block    ? "fp8"
                            : scheme == QuantScheme::kInt8Block ? "int8"
                                                                : "int4";
    Register("linear/proj_" + tag + "_b1", BM_LinearQuant, OptLinear, RefLinear, int64_t{1}, proj_n,
             proj_k, scheme);
    Register("linear/proj_" + tag + "_prefill", BM_LinearQuant, OptLinear, RefLinear,
             s.prefill_tokens, proj_n, proj_k, scheme);
  }
  Register("grouped_matmul_silu_mul/prefill", BM_GroupedMatmul, OptGroupedMatmulSiluMul,
           RefGroupedMatmulSiluMul, true);
  Register("grouped_matmul/prefill_down", BM_GroupedMatmul, OptGroupedMatmul, RefGroupedMatmul,
           false);
  // GPT-OSS-20b's experts, mxfp4 (as published) against bf16.
  for (const DType dtype : {DType::kBF16, DType::kMxfp4}) {
    const std::string tag = dtype == DType::kMxfp4 ? "mxfp4" : "bf16";
    Register("expert_batched_matmul/gpt_oss_gate_up_" + tag + "_b1", BM_GptOssDecode,
             OptExpertBatchedMatmul, RefExpertBatchedMatmul, dtype, true);
    Register("expert_batched_matmul/gpt_oss_down_" + tag + "_b1", BM_GptOssDecode,
             OptExpertBatchedMatmul, RefExpertBatchedMatmul, dtype, false);
    Register("grouped_matmul/gpt_oss_gate_up_" + tag + "_prefill", BM_GptOssGrouped,
             OptGroupedMatmul, RefGroupedMatmul, dtype);
  }
  Register("topk_route/prefill", BM_TopkRoute, OptTopkRoute, RefTopkRoute);
  Register("add_rms_norm/prefill", BM_AddRmsNorm, OptAddRmsNorm, RefAddRmsNorm);
  Register("rope/prefill", BM_Rope, OptRope, RefRope);
  Register("attention/decode", BM_Attention, OptAttention, RefAttention, false);
  Register("attention/prefill", BM_Attention, OptAttention, RefAttention, true);
}

}  // namespace
}  // namespace moegraph::bench

int main(int argc, char** argv) {
  // --smoke is ours; everything else goes to Google Benchmark.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0) {
      moegraph::bench::g_smoke = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  moegraph::bench::RegisterAll();
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
