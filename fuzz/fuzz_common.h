// Shared fixtures of the libFuzzer targets and the seed writer: a scratch
// directory, the demo checkpoint, a small plan compiled from it, the sharded
// checkpoint the index.json target reads, and the per-input size caps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ir/spec_key.h"
#include "plan/plan.h"

namespace moegraph::fuzz {

// Inputs above these sizes are skipped, so one input cannot take seconds.
inline constexpr size_t kMaxPlanBytes = 1 << 20;
inline constexpr size_t kMaxSafetensorsBytes = 256 << 10;
inline constexpr size_t kMaxJsonBytes = 64 << 10;
inline constexpr size_t kMaxIrBytes = 256 << 10;

// The first byte of a safetensors-target input: what the rest of it is.
enum class SafetensorsInput : uint8_t {
  kFile = 0,   // a whole safetensors file
  kIndex = 1,  // model.safetensors.index.json for ShardedCheckpointDir()'s shards
};

// A fresh directory under /dev/shm (or $TMPDIR) removed at exit; aborts if it
// cannot be made (a harness without scratch space cannot run at all).
const std::string& ScratchDir();

// Writes `bytes` to `path`; aborts on failure.
void WriteFileOrDie(const std::string& path, std::string_view bytes);

// The demo checkpoint (frontends/demo_model.h), written once into ScratchDir().
const std::string& DemoModelDir();

// The key set of SmallDemoPlan(): one prefill key (4 tokens, 1 sequence) and
// one decode key (1 token), one MoE chunk of 16 rows.
KeySetOptions SmallDemoKeys();

// The demo model compiled for SmallDemoKeys() (compiled once; aborts on error).
const Plan& SmallDemoPlan();
// The same with --weights int8: its matmul weights read from a packed weights file in
// ScratchDir() (Plan::packed_weight_files, i8 int8_block weights).
const Plan& SmallDemoInt8Plan();

// A directory with two small safetensors shards of demo tensors and no index:
// the index.json target writes model.safetensors.index.json next to them.
const std::string& ShardedCheckpointDir();
// The index.json that ShardedCheckpointDir() needs.
std::string ShardedCheckpointIndex();

// A small safetensors file of a few demo tensors (norm weights), with metadata.
std::string SmallSafetensorsFile();

// The keys the IR target runs its pipeline for, chosen by the input's first byte.
inline constexpr int kNumIrKeys = 3;
SpecKey IrKey(uint8_t selector);

}  // namespace moegraph::fuzz
