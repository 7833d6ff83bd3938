// Fill kernels.
#include "kernels/cpu/fill_kernels.h"

#include <cstring>

namespace moegraph {

void RefZeros(const KernelArgs& args) {
  const TensorArg& out = args.out[0];
  std::memset(out.data, 0, static_cast<size_t>(out.numel()) * DTypeBytes(out.dtype));
}

}  // namespace moegraph
