// CPU kernel selection.
#include "kernels/cpu/dispatch.h"

#include "ir/op_registry.h"

namespace moegraph {

CpuKernelChoice SelectCpuKernel(const KernelStep& step, bool reference_only) {
  CpuKernelChoice choice;
  const OpDef* def = LookupOp(step.kernel);
  if (def) choice.fn = def->reference;
  (void)reference_only;
  return choice;
}

}  // namespace moegraph
