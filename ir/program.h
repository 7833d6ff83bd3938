// A lowered program: the fixed list of kernel steps of one specialization
// key, with every argument resolved to an arena offset, a weight index or a
// graph input. lower-to-kernels produces it; plans store it; the runtime
// captures and replays it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/dtype.h"
#include "ir/spec_key.h"

namespace moegraph {

enum class ArgKind : uint8_t {
  kArena = 0,   // arena_offset bytes into the step arena
  kWeight = 1,  // index into the plan's weight table
  kInput = 2,   // graph data input `index` (0: token ids), a static runtime buffer
};

struct ArgRef {
  ArgKind kind = ArgKind::kArena;
  int64_t arena_offset = 0;
  int32_t index = 0;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  int64_t bytes() const { return DTypeStorageBytes(dtype, numel()); }
  bool operator==(const ArgRef& other) const = default;
};

struct KernelStep {
  std::string kernel;  // the op kind; the backend picks its implementation at capture
  std::vector<ArgRef> inputs;
  std::vector<ArgRef> outputs;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  int32_t op_index = -1;  // the op in the key's lowered IR (for traces and errors)
  bool operator==(const KernelStep& other) const = default;
};

struct KeyProgram {
  SpecKey key;
  int64_t arena_bytes = 0;
  std::vector<KernelStep> steps;
  ArgRef logits;     // [seq_bucket, vocab] f32 in the arena
  std::string ir;    // the key's final IR text (graph-dump reads it)
  int32_t rank = 0;  // the expert-parallel rank whose program this is (0 on one rank)
  bool operator==(const KeyProgram& other) const = default;
};

}  // namespace moegraph
