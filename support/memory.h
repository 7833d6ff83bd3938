// The machine's memory, for refusing a host allocation that cannot fit before
// it is tried (Linux may overcommit it and kill the process later, and the
// sanitizers abort on it instead of throwing std::bad_alloc).
#pragma once

#include <cstdint>

namespace moegraph {

// Physical memory in bytes; 0 when the system does not say.
uint64_t PhysicalMemoryBytes();

// True when a host allocation of `bytes` cannot fit in physical memory.
inline bool ExceedsPhysicalMemory(uint64_t bytes) {
  const uint64_t physical = PhysicalMemoryBytes();
  return physical != 0 && bytes > physical;
}

}  // namespace moegraph
