// Quantized weights: the scheme a `weight` op's `quant` attribute names, the block of the
// weight matrix each scale covers, and the element decodes the kernels share.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/dtype.h"
#include "support/status.h"

namespace moegraph {

enum class QuantScheme : uint8_t {
  kNone = 0,
  // fp8e4m3 elements; one f32 scale (the checkpoint's `weight_scale_inv`: dequantized =
  // fp8 * scale) per block of block_rows x block_cols elements of each [N, K] matrix.
  kFp8Block = 1,
  // OCP MXFP4, as GPT-OSS checkpoints store their experts: mxfp4 elements (FP4 e2m1, two per
  // byte) and one u8 e8m0 scale (2^(s - 127)) per 32 consecutive inputs of a row: blocks of
  // 1 x 32, K a multiple of 32.
  kMxfp4 = 2,
  // Symmetric int8, as `compile-model --weights int8` writes it: i8 elements and one f32
  // scale (dequantized = i8 * scale) per block of block_rows x block_cols elements; the
  // compiler writes blocks of 1 x 32 (llama.cpp's Q8_0 block, with an f32 scale).
  kInt8Block = 3,
  // Symmetric int4, as `compile-model --weights int4` writes it: i4 elements (two a byte) and
  // one f32 scale (dequantized = i4 * scale) per block of 1 x block_cols elements, block_cols
  // a multiple of 32 (the compiler writes 32 or 64) and K a multiple of 32.
  kInt4Block = 4,
};

// IR spelling of the `quant` attribute: "fp8_block", "mxfp4", "int8_block", "int4_block".
const char* QuantSchemeName(QuantScheme scheme);
std::optional<QuantScheme> ParseQuantScheme(std::string_view name);
// The dtype a scheme's weight value has (its storage format) and its scales' dtype.
DType QuantWeightDType(QuantScheme scheme);
DType QuantScaleDType(QuantScheme scheme);

// How one weight value is quantized; scheme kNone: a plain f32/bf16/f16 weight.
struct WeightQuant {
  QuantScheme scheme = QuantScheme::kNone;
  int32_t block_rows = 0;  // output rows (N) one scale covers
  int32_t block_cols = 0;  // input columns (K) one scale covers

  bool quantized() const { return scheme != QuantScheme::kNone; }
  // Scale rows / columns of one [rows, cols] matrix: ceil(rows / block_rows), ...
  int64_t ScaleRows(int64_t rows) const { return (rows + block_rows - 1) / block_rows; }
  int64_t ScaleCols(int64_t cols) const { return (cols + block_cols - 1) / block_cols; }
  bool operator==(const WeightQuant&) const = default;
};

struct Op;

// A `weight` op's quantization from its attributes `quant` (scheme name), `scale` (the scale
// tensor's checkpoint name; {e} expands like the weight's), `block_rows`, `block_cols`: all
// four or none. InvalidArgument naming the weight and the attribute otherwise.
StatusOr<WeightQuant> WeightQuantOf(const Op& op);

// The scale tensor's shape for a weight of `shape` ([N, K], or [E, N, K] stacked: the scales
// are then [E, ceil(N / br), ceil(K / bc)]).
std::vector<int64_t> QuantScaleShape(const WeightQuant& quant, const std::vector<int64_t>& shape);

// The checkpoint name of the scales of weight tensor `name` ("...down_proj.weight" ->
// "...down_proj.weight_scale_inv", as DeepSeek-V3 / Qwen3-FP8 checkpoints and transformers'
// fused FP8 experts name them).
inline std::string ScaleTensorName(std::string_view name) {
  return std::string(name) + "_scale_inv";
}

// Whether `scheme` stores one byte per element with one f32 scale per block (fp8_block,
// int8_block): the kernels read both the same way but for the element decode.
inline bool ByteBlockScheme(QuantScheme scheme) {
  return scheme == QuantScheme::kFp8Block || scheme == QuantScheme::kInt8Block;
}

// Integer products. A matmul (linear, linear_silu_mul, mlp, moe and their lowered grouped and
// expert-batched forms) whose weight is int8_block or int4_block with block_cols a multiple of
// 32 and K a multiple of 32 multiplies by its input rounded to int8 in blocks of 32
// (RoundToQ8Block), as llama.cpp's Q8_0 / Q4_0 x Q8_0 dot products do: each block's product
// is an exact integer, times the weight's block scale times the input's. The kernels then
// read 8-bit inputs as well as 8- or 4-bit weights.
constexpr int64_t kQ8Block = 32;
inline bool RoundsInputToInt8(const WeightQuant& quant, int64_t k) {
  return (quant.scheme == QuantScheme::kInt8Block || quant.scheme == QuantScheme::kInt4Block) &&
         quant.block_cols > 0 && quant.block_cols % kQ8Block == 0 && k % kQ8Block == 0;
}

// Rounds x[0, 32) to int8 and returns the block's scale d (x ~ q * d): d = max|x| / 127 and
// q[i] = nearbyint(x[i] / d) (ties to even; |q| <= 127); all-zero x gives d = 0 and q = 0; a
// block holding a NaN or an infinity gives d = NaN, so every product it enters is NaN.
inline float RoundToQ8Block(const float* x, int8_t* q) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < kQ8Block; ++i) {
    const float a = std::fabs(x[i]);
    finite = finite && a <= 3.4028234663852886e38f;
    amax = a > amax ? a : amax;
  }
  if (!finite || amax == 0.0f) {
    std::memset(q, 0, kQ8Block);
    return finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float d = amax / 127.0f;
  for (int64_t i = 0; i < kQ8Block; ++i) {
    const float r = std::nearbyint(x[i] / d);
    q[i] = static_cast<int8_t>(r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r);
  }
  return d;
}

// The value of an OCP fp8 e4m3fn byte (bias 7, no infinities; S.1111.111 is NaN), exact,
// subnormals included.
inline float Fp8E4M3ToF32(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80) << 24;
  const uint32_t exp = (v >> 3) & 0xf, mant = v & 0x7;
  uint32_t bits;
  if (exp == 0xf && mant == 0x7) {
    bits = sign | 0x7fc00000u;
  } else if (exp != 0) {
    bits = sign | ((exp + 120) << 23) | (mant << 20);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal: mant * 2^-9, normalised.
    int shift = 0;
    uint32_t m = mant;
    while ((m & 0x8) == 0) {
      m <<= 1;
      ++shift;
    }
    bits = sign | (static_cast<uint32_t>(121 - shift) << 23) | ((m & 0x7) << 20);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// The value of an FP4 e2m1 code (the low 4 bits of `v`): sign, 2 exponent bits (bias 1),
// 1 mantissa bit: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives. Exact.
inline float Fp4E2M1ToF32(uint8_t v) {
  static constexpr float kValues[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                        -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  return kValues[v & 0xf];
}

// Element `i` of a row of packed mxfp4 codes (element 2j in the low nibble of byte j).
inline float Mxfp4At(const uint8_t* row, int64_t i) {
  const uint8_t byte = row[i >> 1];
  return Fp4E2M1ToF32((i & 1) != 0 ? static_cast<uint8_t>(byte >> 4) : byte);
}

// Element `i` of a row of packed i4 codes (element 2j in the low nibble of byte j, each
// stored as its value + 8): an integer in [-8, 7].
inline int Int4At(const uint8_t* row, int64_t i) {
  const uint8_t byte = row[i >> 1];
  return static_cast<int>((i & 1) != 0 ? byte >> 4 : byte & 0xf) - 8;
}

// The value of an e8m0 scale byte: 2^(v - 127); 0xff is NaN. Exact (2^-127 is an f32
// subnormal).
inline float E8M0ToF32(uint8_t v) {
  uint32_t bits;
  if (v == 0xff) {
    bits = 0x7fc00000u;
  } else if (v == 0) {
    bits = 0x00400000u;  // 2^-127
  } else {
    bits = static_cast<uint32_t>(v) << 23;
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace moegraph
