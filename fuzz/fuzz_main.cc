// The libFuzzer entry point of one fuzz binary: MOEGRAPH_FUZZ_ENTRY names its
// target in fuzz_targets.h (set per binary by fuzz/CMakeLists.txt).
#include "fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return moegraph::fuzz::LibFuzzerResult(moegraph::fuzz::MOEGRAPH_FUZZ_ENTRY(data, size));
}
