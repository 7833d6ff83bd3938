// The kernel ABI's one out-of-line piece: contract violations.
#include "kernels/kernel_abi.h"

#include <cstdio>
#include <cstdlib>

namespace moegraph {

void KernelContractViolation(const char* kernel, const char* what) {
  std::fprintf(stderr,
               "moegraph internal error: kernel '%s' called against its contract: %s "
               "(load-time step verification should have rejected this)\n",
               kernel, what);
  std::abort();
}

}  // namespace moegraph
