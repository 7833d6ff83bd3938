// A compiled plan in memory: everything compile-model decides and the runtime
// needs — the model, the weight manifest (where each weight's bytes are, never
// the bytes), the key set, and one lowered program per key. plan/plan_file
// reads and writes it as a FlatBuffers file (plan/plan.fbs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/dtype.h"
#include "ir/kv_layer.h"
#include "ir/program.h"
#include "ir/quant.h"
#include "ir/spec_key.h"

namespace moegraph {

// Where one weight (or one expert slice of a stacked weight) lies.
struct PlanWeightSlice {
  std::string file;  // relative to Plan::model_dir
  uint64_t offset = 0;
  uint64_t bytes = 0;
  bool operator==(const PlanWeightSlice& other) const = default;
};

struct PlanWeight {
  std::string name;        // checkpoint name; "{e}" stands for the expert index
  int64_t experts = 0;     // > 0: stacked [experts, ...], one slice per expert
  int64_t row_offset = 0;  // rows taken from a fused expert tensor
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<PlanWeightSlice> slices;
  // A quantized weight (ir/quant.h): its scheme and blocks, its scales' checkpoint name
  // ("{e}" as in `name`) and one scale slice per slice above.
  WeightQuant quant;
  std::string scale_name;
  std::vector<PlanWeightSlice> scale_slices;
  // An expert-parallel rank's share of a weight of every expert (expert_slice): of a
  // stacked one the checkpoint's experts [first_expert, first_expert + experts), of a plain
  // [E, ...] one (expert biases) its rows [first_expert, first_expert + shape[0]). Neither
  // on one rank.
  bool expert_slice = false;
  int64_t first_expert = 0;
  bool operator==(const PlanWeight& other) const = default;
};

// What compile-model saw of one checkpoint file, to detect a file changed
// since (checkpoint/weights.h CheckCheckpointFiles).
struct PlanCheckpointFile {
  std::string file;           // relative to Plan::model_dir
  uint64_t bytes = 0;         // the file's size
  int64_t mtime_ns = 0;       // its modification time
  uint64_t sampled_hash = 0;  // SampledFileHash: its size and sampled pages
  uint64_t full_hash = 0;     // XXH64 of the whole file; 0: not recorded
  bool operator==(const PlanCheckpointFile& other) const = default;
};

// A tokenizer file compile-model found in the model directory; the runtime reads it again and
// refuses it when its hash changed (runtime/plan_tokenizer.h).
struct PlanTokenizerFile {
  std::string file;        // relative to Plan::model_dir: one of kPlanTokenizerFileNames
  uint64_t full_hash = 0;  // XXH64 of the whole file
  bool operator==(const PlanTokenizerFile& other) const = default;
};
inline constexpr const char* kPlanTokenizerFileNames[] = {"tokenizer.json", "tokenizer_config.json",
                                                          "generation_config.json"};

// What the runtime needs to know of the model beyond the programs.
struct PlanModelInfo {
  std::string family;       // "qwen3_moe"
  std::string config_json;  // the checkpoint's config.json, verbatim
  int32_t vocab_size = 0;
  int32_t num_layers = 0;
  // The config's attention geometry, for information: the KV cache is sized
  // from Plan::kv_layers, never from these.
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t max_position_embeddings = 0;
  bool operator==(const PlanModelInfo& other) const = default;
};

struct Plan {
  static constexpr uint32_t kFormatVersion = 2;

  uint32_t format_version = kFormatVersion;
  PlanModelInfo model;
  std::string model_dir;  // the checkpoint directory the weights are read from
  std::vector<PlanWeight> weights;
  // key_options.expert_parallel is the plan's layout: that many expert-parallel ranks
  // (EP x DP, DESIGN §9), each with its own program for every key (KeyProgram::rank).
  KeySetOptions key_options;
  std::vector<KeyProgram> programs;  // by rank, then largest token bucket first
  std::string source_ir;             // the generic graph's text
  std::string compile_options;       // the compile-model command line
  // Keys never run concurrently on one stream, so one arena of the largest
  // key's size serves them all (written into the plan as an assumption).
  bool keys_share_one_arena = true;
  std::vector<PlanCheckpointFile> checkpoint_files;  // every file the weights are read from
  // OpSetHash() of the build that compiled the plan: what its steps' kernel
  // names and parameter lists mean. A build with another op set refuses it.
  uint64_t op_set_hash = 0;
  // The model directory's tokenizer files (kPlanTokenizerFileNames) that exist; empty: none.
  std::vector<PlanTokenizerFile> tokenizer_files;
  // What each layer keeps in the KV cache, by layer index (one entry per
  // layer), derived from the graph's attention ops. The runtime sizes and
  // pages the cache from these alone.
  std::vector<PlanKvLayer> kv_layers;
  // Weights files compile-model wrote (--weights int8): safetensors files in the plan
  // file's directory, named relative to it; weight slices in them name these files.
  std::vector<PlanCheckpointFile> packed_weight_files;

  int64_t max_arena_bytes() const {
    int64_t m = 0;
    for (const KeyProgram& p : programs)
      m = p.arena_bytes > m ? p.arena_bytes : m;
    return m;
  }
  bool operator==(const Plan& other) const = default;
};

}  // namespace moegraph
