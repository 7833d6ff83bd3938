// Resolving a graph's weight values to checkpoint bytes, and binding them as
// kernel arguments.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "checkpoint/safetensors.h"
#include "ir/graph.h"
#include "kernels/kernel_abi.h"
#include "plan/plan.h"
#include "support/status.h"

namespace moegraph {

// Where one weight (or one expert's slice of a stacked weight) lives.
struct WeightSlice {
  std::string file;     // checkpoint file path
  uint64_t offset = 0;  // absolute byte offset in the file
  uint64_t bytes = 0;
  const std::byte* data = nullptr;  // into the checkpoint's mapping, when resolved from one
};

// One weight value: the whole tensor, or one slice per expert; a quantized one also its
// scales, one slice per slice of the weight.
struct ResolvedWeight {
  std::string name;  // the weight op's `name` attribute
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // the IR type's dims
  bool stacked = false;
  std::vector<WeightSlice> slices;
  WeightQuant quant;       // scheme kNone: not quantized
  std::string scale_name;  // the weight op's `scale` attribute
  std::vector<WeightSlice> scale_slices;
};

// Finds the bytes of weight op `op` (typed `type`) in `checkpoint`; the dtype
// must match the IR type exactly, and so must the shape, up to leading size-1
// dims of the stored tensor (Ernie's [1, E] score-correction bias is the graph's
// [E]: the same bytes). A quantized weight's scales (attributes `quant`, `scale`,
// `block_rows`, `block_cols`) resolve with it: QuantScaleDType, shaped
// QuantScaleShape of the stored tensor; a fused expert tensor's row range must then start
// on a block boundary.
StatusOr<ResolvedWeight> ResolveWeight(const Op& op, const Type& type,
                                       const Checkpoint& checkpoint);

// How much of a checkpoint Engine::Load reads to detect one changed since
// compile (same names, shapes and sizes, other values). Measured on the
// bench-a3b-4l model (PLAN_FORMAT.md): sampled pages take milliseconds, a
// full hash runs at disk or page-cache speed.
enum class CheckpointCheck {
  kSampled,  // each file's size and an XXH64 of its header, tail and 62 spread pages
  kAuto,     // kSampled, plus a full hash of every file whose mtime changed since compile
  kFull,     // kSampled, plus a full hash of every file
};

// compile-model's fingerprint of `dir`/`file`: size, mtime, the sampled hash
// and, if `full_hash`, the XXH64 of the whole file (a full read).
StatusOr<PlanCheckpointFile> FingerprintCheckpointFile(const std::string& dir,
                                                       const std::string& file, bool full_hash);

// Compares the files of `dir` with what the plan recorded at compile time;
// DataLoss naming the file and what differs ("recompile the plan"). A full
// hash is compared only where one was recorded.
Status CheckCheckpointFiles(const std::vector<PlanCheckpointFile>& recorded, const std::string& dir,
                            CheckpointCheck check);

// Kernel arguments for every weight value of a graph.
class WeightArgs {
 public:
  // Adds `weight` (whose slices carry data pointers) as the argument of `id`.
  void Bind(ValueId id, const ResolvedWeight& weight);
  const TensorArg* Find(ValueId id) const;

  static StatusOr<WeightArgs> FromCheckpoint(const Graph& graph, const Checkpoint& checkpoint);

 private:
  std::unordered_map<ValueId, TensorArg> args_;
  std::vector<std::unique_ptr<std::vector<const void*>>> expert_pointers_;
};

}  // namespace moegraph
