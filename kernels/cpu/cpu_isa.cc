#include "kernels/cpu/cpu_isa.h"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "kernels/cpu/cpu_features.h"

namespace moegraph {
namespace {

// Asks Linux for the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA):
// without it the first tile instruction raises SIGILL. The permission holds for the whole
// process, threads started before and after.
bool RequestAmxTiles() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

// The tile configuration the probe loads: palette 1, tiles 0-2 of 16 rows x 64 bytes.
struct alignas(64) ProbeTileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64};
  uint8_t rows[16] = {16, 16, 16};
};

// One tile product the AMX GEMM relies on, checked: 16 x 32 bf16 (row i all i + 1) times 16
// pairs x 16 columns (column j all j - 8, bf16) accumulated onto 0.5, in f32. Exact in f32:
// c[i][j] = 0.5 + 32 (i + 1)(j - 8).
__attribute__((target("amx-tile,amx-bf16,avx512f"))) bool AmxProbePasses() {
  const ProbeTileConfig config;
  alignas(64) uint16_t a[16 * 32], b[16 * 32];
  alignas(64) float c[16 * 16];
  auto bf16 = [](float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    return static_cast<uint16_t>(bits >> 16);
  };
  for (int i = 0; i < 16; ++i) {
    for (int k = 0; k < 32; ++k) {
      a[i * 32 + k] = bf16(static_cast<float>(i + 1));
      b[i * 32 + k] = bf16(static_cast<float>(k / 2 - 8));  // pair row i, column k / 2
    }
  }
  for (float& v : c)
    v = 0.5f;
  _tile_loadconfig(&config);
  _tile_loadd(0, c, 64);
  _tile_loadd(1, a, 64);
  _tile_loadd(2, b, 64);
  _tile_dpbf16ps(0, 1, 2);
  _tile_stored(0, c, 64);
  _tile_release();
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      if (c[i * 16 + j] != 0.5f + 32.0f * static_cast<float>((i + 1) * (j - 8))) return false;
    }
  }
  return true;
}

CpuIsa Detect() {
  if (cpu::HasAvx512FBwDqVl() && cpu::HasAvx2FmaF16c()) {
    if (cpu::HasAmxBf16() && RequestAmxTiles() && AmxProbePasses()) return CpuIsa::kAmx;
    return CpuIsa::kAvx512;
  }
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
    std::fprintf(
        stderr,
        "moegraph: ignoring MOEGRAPH_CPU_ISA='%s': expected reference, avx2, avx512 or amx\n", env);
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
    features = static_cast<int>(DetectedCpuIsa()) >= static_cast<int>(CpuIsa::kAvx512)
                   ? "avx2 fma f16c avx512f avx512bw avx512dq avx512vl"
               : DetectedCpuIsa() == CpuIsa::kAvx2 ? "avx2 fma f16c"
                                                   : "";
  }
  return (model.empty() ? std::string("unknown x86-64 processor") : model) + " [" + features + "]";
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAmx:
      return "amx";
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

bool CpuIsaAtLeast(CpuIsa isa) {
  return static_cast<int>(SelectedCpuIsa()) >= static_cast<int>(isa);
}

bool CpuHasAvx512Vnni() {
  static const bool has = cpu::HasAvx512Vnni();
  return has;
}

std::string CpuKernelsName() {
  const CpuIsa isa = SelectedCpuIsa();
  return std::string(CpuIsaName(isa)) +
         (CpuIsaAtLeast(CpuIsa::kAvx512) && CpuHasAvx512Vnni() ? "+vnni" : "");
}

CpuIsa SetCpuIsa(CpuIsa isa) {
  const CpuIsa used = Lower(isa, DetectedCpuIsa());
  Selected().store(static_cast<int>(used), std::memory_order_relaxed);
  return used;
}

}  // namespace moegraph
