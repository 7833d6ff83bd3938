#include "kernels/cpu/cpu_isa.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "kernels/cpu/cpu_features.h"

namespace moegraph {
namespace {

CpuIsa Detect() {
  if (cpu::HasAvx512FBwDqVl() && cpu::HasAvx2FmaF16c()) return CpuIsa::kAvx512;
  if (cpu::HasAvx2FmaF16c()) return CpuIsa::kAvx2;
  return CpuIsa::kReference;
}

CpuIsa Lower(CpuIsa a, CpuIsa b) {
  return static_cast<int>(a) < static_cast<int>(b) ? a : b;
}

// The detected ISA lowered by MOEGRAPH_CPU_ISA; a value that names no ISA is reported once
// and ignored.
CpuIsa Initial() {
  const CpuIsa detected = DetectedCpuIsa();
  const char* env = std::getenv("MOEGRAPH_CPU_ISA");
  if (env == nullptr || *env == '\0') return detected;
  CpuIsa requested;
  if (!ParseCpuIsa(env, &requested)) {
    std::fprintf(stderr,
                 "moegraph: ignoring MOEGRAPH_CPU_ISA='%s': expected reference, avx2 or avx512\n",
                 env);
    return detected;
  }
  return Lower(requested, detected);
}

std::atomic<int>& Selected() {
  static std::atomic<int> selected{static_cast<int>(Initial())};
  return selected;
}

// The vector features the kernels use or could, as /proc/cpuinfo spells them.
constexpr const char* kReportedFlags[] = {
    "avx2",        "fma",         "f16c",        "avx512f",  "avx512bw", "avx512dq", "avx512vl",
    "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"};

}  // namespace

std::string CpuSummary() {
  std::string model, flags;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line) && (model.empty() || flags.empty());) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string field = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (field == "model name" && model.empty()) model = value;
    if (field == "flags" && flags.empty()) flags = " " + value + " ";
  }
  std::string features;
  for (const char* flag : kReportedFlags) {
    if (flags.find(" " + std::string(flag) + " ") != std::string::npos) {
      features += (features.empty() ? "" : " ") + std::string(flag);
    }
  }
  if (flags.empty()) {  // no /proc/cpuinfo: what cpuid says
    features = DetectedCpuIsa() == CpuIsa::kAvx512
                   ? "avx2 fma f16c avx512f avx512bw avx512dq avx512vl"
               : DetectedCpuIsa() == CpuIsa::kAvx2 ? "avx2 fma f16c"
                                                   : "";
  }
  return (model.empty() ? std::string("unknown x86-64 processor") : model) + " [" + features + "]";
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kReference:
      break;
  }
  return "reference";
}

bool ParseCpuIsa(std::string_view name, CpuIsa* out) {
  for (CpuIsa isa : kAllCpuIsas) {
    if (name == CpuIsaName(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

CpuIsa DetectedCpuIsa() {
  static const CpuIsa detected = Detect();
  return detected;
}

CpuIsa SelectedCpuIsa() {
  return static_cast<CpuIsa>(Selected().load(std::memory_order_relaxed));
}

bool CpuHasAvx512Vnni() {
  static const bool has = cpu::HasAvx512Vnni();
  return has;
}

std::string CpuKernelsName() {
  const CpuIsa isa = SelectedCpuIsa();
  return std::string(CpuIsaName(isa)) +
         (isa == CpuIsa::kAvx512 && CpuHasAvx512Vnni() ? "+vnni" : "");
}

CpuIsa SetCpuIsa(CpuIsa isa) {
  const CpuIsa used = Lower(isa, DetectedCpuIsa());
  Selected().store(static_cast<int>(used), std::memory_order_relaxed);
  return used;
}

}  // namespace moegraph
