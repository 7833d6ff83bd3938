// Processor feature detection for the CPU kernels' dispatch (private to kernels/cpu), with
// cpuid and xgetbv directly: GCC and Clang agree on <cpuid.h>, but not on every name that
// __builtin_cpu_supports accepts (Clang 14 rejects "f16c").
#pragma once

#include <cpuid.h>

#include <cstdint>

namespace moegraph::cpu {

// XCR0: the register state the OS saves and restores on a context switch. Inline asm,
// because _xgetbv needs the xsave target on the caller; only call it after cpuid reports
// OSXSAVE.
inline uint64_t Xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

// True when the processor has AVX2, FMA and F16C and the OS saves the YMM registers.
inline bool HasAvx2FmaF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kFma = 1u << 12, kOsxsave = 1u << 27, kAvx = 1u << 28, kF16c = 1u << 29;
  const unsigned leaf1_needed = kFma | kOsxsave | kAvx | kF16c;
  if ((ecx & leaf1_needed) != leaf1_needed) return false;
  // XCR0 bits 1 and 2: the OS saves the XMM and YMM state.
  if ((Xcr0() & 0x6u) != 0x6u) return false;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kAvx2 = 1u << 5;  // leaf 7, EBX
  return (ebx & kAvx2) != 0;
}

// True when the processor has AVX-512 F, DQ, BW and VL and the OS saves the opmask and ZMM
// registers (XCR0 bits 5-7 with 1-2).
inline bool HasAvx512FBwDqVl() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kOsxsave = 1u << 27;
  if ((ecx & kOsxsave) == 0 || (Xcr0() & 0xE6u) != 0xE6u) return false;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kF = 1u << 16, kDq = 1u << 17, kBw = 1u << 30, kVl = 1u << 31;
  const unsigned needed = kF | kDq | kBw | kVl;  // leaf 7, EBX
  return (ebx & needed) == needed;
}

// True when HasAvx512FBwDqVl and the processor has AVX512-VNNI (vpdpbusd).
inline bool HasAvx512Vnni() {
  if (!HasAvx512FBwDqVl()) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx & (1u << 11)) != 0;  // leaf 7, ECX
}

// True when HasAvx512FBwDqVl, the processor has AMX-TILE and AMX-BF16, and the OS manages the
// tile state (XCR0 bits 17-18). Linux still refuses the tile instructions (SIGILL) until the
// process asks for them: RequestAmxTiles in cpu_isa.cc.
inline bool HasAmxBf16() {
  if (!HasAvx512FBwDqVl()) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24;  // leaf 7, EDX
  if ((edx & (kAmxBf16 | kAmxTile)) != (kAmxBf16 | kAmxTile)) return false;
  constexpr uint64_t kTileState = (uint64_t{1} << 17) | (uint64_t{1} << 18);
  return (Xcr0() & kTileState) == kTileState;
}

}  // namespace moegraph::cpu
