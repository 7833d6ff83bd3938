// Processor feature detection for the CPU kernels' dispatch (private to kernels/cpu), with
// cpuid and xgetbv directly: GCC and Clang agree on <cpuid.h>, but not on every name that
// __builtin_cpu_supports accepts (Clang 14 rejects "f16c").
#pragma once

#include <cpuid.h>

#include <cstdint>

namespace moegraph::cpu {

// True when the processor has AVX2, FMA and F16C and the OS saves the YMM registers.
inline bool HasAvx2FmaF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kFma = 1u << 12, kOsxsave = 1u << 27, kAvx = 1u << 28, kF16c = 1u << 29;
  const unsigned leaf1_needed = kFma | kOsxsave | kAvx | kF16c;
  if ((ecx & leaf1_needed) != leaf1_needed) return false;
  // XCR0 bits 1 and 2: the OS saves and restores the XMM and YMM state. Inline asm, because
  // _xgetbv needs the xsave target on the caller.
  uint32_t xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6u) != 0x6u) return false;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kAvx2 = 1u << 5;  // leaf 7, EBX
  return (ebx & kAvx2) != 0;
}

}  // namespace moegraph::cpu
