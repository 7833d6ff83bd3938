// AVX2/FMA/F16C building blocks of the optimised CPU kernels (private to
// kernels/cpu). Every function carries its own target attribute, so the
// library builds without -mavx2 and dispatch only calls these after checking
// the processor (CpuHasAvx2Fma).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "ir/dtype.h"
#include "ir/quant.h"
#include "kernels/cpu/cpu_features.h"
#include "support/half.h"

#define MG_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MG_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

namespace moegraph::simd {

// True when this processor (and OS) runs AVX2, FMA and F16C code.
inline bool CpuHasAvx2Fma() {
  return cpu::HasAvx2FmaF16c();
}

// Weight element types as template parameters, so each kernel is
// instantiated once per dtype with the widening inlined. kFp8 is e4m3 with block
// scales (QuantScheme::kFp8Block): Load8 / Load1 decode it unscaled, and the
// matmul drivers multiply each decoded vector by its block's scale (WeightScales). kMxfp4
// is packed FP4 e2m1 (two codes a byte, QuantScheme::kMxfp4): a row pointer is a byte
// pointer, element i lives at byte i / 2 (ElemOffset), Load8 decodes 8 codes from 4 bytes
// unscaled and the drivers multiply by the row's e8m0 scale of each 32 columns. kInt8 is
// signed 8-bit with f32 block scales (QuantScheme::kInt8Block), read as kFp8 is but for
// the decode (a sign-extending widen). kInt4 is signed 4-bit, two a byte as kMxfp4 (each the
// value + 8), with f32 scales of 1 x block_cols (QuantScheme::kInt4Block).
enum class WType { kF32, kBF16, kF16, kFp8, kMxfp4, kInt8, kInt4 };

inline bool ToWType(DType dtype, WType* out) {
  switch (dtype) {
    case DType::kF32:
      *out = WType::kF32;
      return true;
    case DType::kBF16:
      *out = WType::kBF16;
      return true;
    case DType::kF16:
      *out = WType::kF16;
      return true;
    default:
      return false;
  }
}

template <WType W>
struct WTraits;
template <>
struct WTraits<WType::kF32> {
  using T = float;
};
template <>
struct WTraits<WType::kBF16> {
  using T = uint16_t;
};
template <>
struct WTraits<WType::kF16> {
  using T = uint16_t;
};
template <>
struct WTraits<WType::kFp8> {
  using T = uint8_t;
};
template <>
struct WTraits<WType::kMxfp4> {
  using T = uint8_t;
};
template <>
struct WTraits<WType::kInt8> {
  using T = int8_t;
};
template <>
struct WTraits<WType::kInt4> {
  using T = uint8_t;
};
template <WType W>
using WElem = typename WTraits<W>::T;

// Whether W packs two elements a byte (kMxfp4, kInt4): rows are a multiple of 32 elements,
// so there are no scalar tails.
template <WType W>
constexpr bool Nibbles() {
  return W == WType::kMxfp4 || W == WType::kInt4;
}

// The offset in WElem<W> units of element i of a row (Nibbles: two elements a byte; i even
// wherever a vector or a row starts).
template <WType W>
constexpr int64_t ElemOffset(int64_t i) {
  return Nibbles<W>() ? i / 2 : i;
}

// 8 FP4 e2m1 codes (4 bytes; element 2j the low nibble of byte j) decoded exactly: the 32
// bits hold element l at bits [4l, 4l + 4), so one variable shift per lane brings each code
// down; its low 3 bits index the 8 magnitudes (_mm256_permutevar8x32_ps reads only those) and
// bit 3, shifted to bit 31, is the sign.
MG_AVX2_INLINE __m256 Fp4x8ToF32(const uint8_t* p) {
  int32_t packed;
  __builtin_memcpy(&packed, p, sizeof(packed));
  const __m256i codes =
      _mm256_srlv_epi32(_mm256_set1_epi32(packed), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
  const __m256 magnitude = _mm256_permutevar8x32_ps(
      _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f), codes);
  const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(codes, 28),
                                        _mm256_set1_epi32(static_cast<int32_t>(0x80000000u)));
  return _mm256_or_ps(magnitude, _mm256_castsi256_ps(sign));
}

// 8 i4 codes (4 bytes; element 2j the low nibble of byte j, each stored as its value + 8) as
// f32: the same per-lane shift as Fp4x8ToF32, the nibble masked, 8 subtracted.
MG_AVX2_INLINE __m256 Int4x8ToF32(const uint8_t* p) {
  int32_t packed;
  __builtin_memcpy(&packed, p, sizeof(packed));
  const __m256i codes =
      _mm256_srlv_epi32(_mm256_set1_epi32(packed), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
  const __m256i nibble = _mm256_and_si256(codes, _mm256_set1_epi32(0xf));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(nibble, _mm256_set1_epi32(8)));
}

// Int4x8ToF32 stored to out[0, 8) (for tests).
MG_AVX2 inline void StoreInt4x8(const uint8_t* p, float* out) {
  _mm256_storeu_ps(out, Int4x8ToF32(p));
}

// Fp4x8ToF32 stored to out[0, 8) (for tests).
MG_AVX2 inline void StoreFp4x8(const uint8_t* p, float* out) {
  _mm256_storeu_ps(out, Fp4x8ToF32(p));
}

// An e8m0 scale as f32: the byte as the exponent field (2^(v - 127)). As E8M0ToF32 for
// v in [1, 254]; 0 gives 0 (not 2^-127) and 255 gives +inf (not NaN): no published
// checkpoint holds either.
MG_AVX2_INLINE float E8M0Scale(uint8_t v) {
  return __builtin_bit_cast(float, static_cast<uint32_t>(v) << 23);
}

// 8 e4m3 bytes decoded exactly (as Fp8E4M3ToF32): a normal value's exponent and
// mantissa bits move into place with the bias added (e + 120); a subnormal is
// m * 2^-9; 0x7f / 0xff are NaN; the sign is or-ed in last.
MG_AVX2_INLINE __m256 Fp8x8ToF32(const uint8_t* p) {
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m256i mag = _mm256_and_si256(v, _mm256_set1_epi32(0x7f));
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24);
  const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23));
  const __m256 subnormal = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(1.0f / 512));
  const __m256i is_subnormal = _mm256_cmpgt_epi32(_mm256_set1_epi32(8), mag);
  __m256 r =
      _mm256_blendv_ps(_mm256_castsi256_ps(normal), subnormal, _mm256_castsi256_ps(is_subnormal));
  const __m256i is_nan = _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7f));
  r = _mm256_or_ps(r, _mm256_castsi256_ps(_mm256_and_si256(is_nan, _mm256_set1_epi32(0x7fc00000))));
  return _mm256_or_ps(r, _mm256_castsi256_ps(sign));
}

// Fp8x8ToF32 stored to out[0, 8) (for tests: an AVX2 entry point that takes no __m256).
MG_AVX2 inline void StoreFp8x8(const uint8_t* p, float* out) {
  _mm256_storeu_ps(out, Fp8x8ToF32(p));
}

// 8 consecutive weights widened to f32 (kFp8, kInt8: decoded, unscaled).
template <WType W>
MG_AVX2_INLINE __m256 Load8(const WElem<W>* p) {
  if constexpr (W == WType::kF32) {
    return _mm256_loadu_ps(p);
  } else if constexpr (W == WType::kFp8) {
    return Fp8x8ToF32(p);
  } else if constexpr (W == WType::kMxfp4) {
    return Fp4x8ToF32(p);
  } else if constexpr (W == WType::kInt4) {
    return Int4x8ToF32(p);
  } else if constexpr (W == WType::kInt8) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  } else if constexpr (W == WType::kBF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

// One weight widened to f32 (not Nibbles, whose rows are a multiple of 32: no tails).
template <WType W>
MG_AVX2_INLINE float Load1(const WElem<W>* p) {
  static_assert(!Nibbles<W>(), "mxfp4 / int4 rows have no scalar tails");
  if constexpr (W == WType::kF32) {
    return *p;
  } else if constexpr (W == WType::kFp8) {
    return Fp8E4M3ToF32(*p);
  } else if constexpr (W == WType::kInt8) {
    return static_cast<float>(*p);
  } else if constexpr (W == WType::kBF16) {
    return Bf16ToF32(*p);
  } else {
    return _cvtsh_ss(*p);
  }
}

// Sum of the 8 lanes in a fixed order: ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)).
// Hsum4 reduces four vectors with exactly the same order per vector, so the
// result of a dot product never depends on how many were reduced together.
MG_AVX2_INLINE float Hsum(__m256 v) {
  const __m256 h = _mm256_hadd_ps(v, v);
  const __m256 hh = _mm256_hadd_ps(h, h);
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(hh), _mm256_extractf128_ps(hh, 1)));
}

MG_AVX2_INLINE __m128 Hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// exp(x) for 8 lanes, relative error ~2e-7 (Cephes expf polynomial); inputs
// below -87.3 give 0, above 88.7 give +inf, NaN stays NaN.
MG_AVX2_INLINE __m256 Exp8(__m256 x) {
  const __m256 kHi = _mm256_set1_ps(88.7228391f);
  const __m256 kLo = _mm256_set1_ps(-87.3365448f);
  const __m256 too_small = _mm256_cmp_ps(x, kLo, _CMP_LT_OQ);
  const __m256 too_big = _mm256_cmp_ps(x, kHi, _CMP_GT_OQ);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, kLo), kHi);
  // exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2].
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n is in [-126, 128]: build 2^n in two halves so n = 128 does not overflow the exponent.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half1 = _mm256_srai_epi32(ni, 1);
  const __m256i half2 = _mm256_sub_epi32(ni, half1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half2, bias), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_andnot_ps(too_small, y);
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), too_big);
  // NaN inputs: min/max above returned a number; put the NaN back.
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// silu(a) * b = a / (1 + exp(-a)) * b for 8 lanes.
MG_AVX2_INLINE __m256 SiluMul8(__m256 a, __m256 b) {
  const __m256 e = Exp8(_mm256_sub_ps(_mm256_setzero_ps(), a));
  return _mm256_mul_ps(_mm256_div_ps(a, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), b);
}

// ---- Static thread split ----------------------------------------------------------

// [begin, end) of `units` for thread `t` of `num_threads` (contiguous, in order).
inline void SplitRange(int64_t units, int t, int num_threads, int64_t* begin, int64_t* end) {
  *begin = units * t / num_threads;
  *end = units * (t + 1) / num_threads;
}

}  // namespace moegraph::simd
