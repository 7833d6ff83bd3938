// Which instruction set the optimised CPU kernels use, chosen at run time from the
// processor's features: AMX (AVX-512 plus AMX-TILE / AMX-BF16 tiles, once Linux granted the
// process the tile state and a probe multiplied two tiles right) for the prefill GEMM of bf16
// weights (amx_gemm.cc); AVX-512 (F, BW, DQ, VL, with the OS saving the ZMM and mask
// registers) for the packed GEMM of the other weights (and, with AVX512-VNNI, the integer dot
// products of int8 / int4 weights); AVX2/FMA/F16C for everything else; or none (the reference
// kernels only). Each level includes the ones below it.
// MOEGRAPH_CPU_ISA=avx512|avx2|reference lowers the choice (to measure or test the narrower
// path on a wider machine); it never raises it past what the CPU runs.
#pragma once

#include <string>
#include <string_view>

namespace moegraph {

enum class CpuIsa { kReference, kAvx2, kAvx512, kAmx };

// "reference", "avx2", "avx512", "amx".
const char* CpuIsaName(CpuIsa isa);

// The widest ISA this processor and OS run (cpuid and xgetbv, read once).
CpuIsa DetectedCpuIsa();

// The ISA the kernels use: DetectedCpuIsa() lowered by MOEGRAPH_CPU_ISA (read at the first
// call) or by SetCpuIsa.
CpuIsa SelectedCpuIsa();

// Makes the kernels use `isa`, capped at DetectedCpuIsa(); returns the ISA now in use. For
// tests and benchmarks that run every path one after the other; kernels read the choice
// when they run, so set it only while no kernel runs.
CpuIsa SetCpuIsa(CpuIsa isa);

// Whether the selected ISA includes `isa` (SelectedCpuIsa() is `isa` or wider).
bool CpuIsaAtLeast(CpuIsa isa);

// Whether this processor has AVX512-VNNI (with AVX-512 F/BW/DQ/VL; cpuid, read once).
bool CpuHasAvx512Vnni();

// The ISA the kernels use as logs print it: CpuIsaName(SelectedCpuIsa()), with "+vnni" when
// the int8 / int4 weights' integer dot products use AVX512-VNNI ("avx512+vnni", "amx+vnni").
std::string CpuKernelsName();

// Parses "reference" / "avx2" / "avx512" / "amx"; false for anything else.
bool ParseCpuIsa(std::string_view name, CpuIsa* out);

// The processor for benchmark headers: its model name and the vector features the kernels
// care about, from /proc/cpuinfo (cpuid where that is missing):
// "Intel(R) Xeon(R) Processor [avx2 fma f16c avx512f ... amx_tile]".
std::string CpuSummary();

// Every ISA this machine runs, narrowest first (kReference always).
inline constexpr CpuIsa kAllCpuIsas[] = {CpuIsa::kReference, CpuIsa::kAvx2, CpuIsa::kAvx512,
                                         CpuIsa::kAmx};

}  // namespace moegraph
