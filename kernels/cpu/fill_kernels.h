// Fill kernels.
#pragma once

#include "kernels/kernel_abi.h"

namespace moegraph {

// out[0] (any dtype) = 0.
void RefZeros(const KernelArgs& args);

}  // namespace moegraph
