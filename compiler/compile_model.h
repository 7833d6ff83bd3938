// The compile driver: a Hugging Face model directory in, a Plan out
// (frontend -> generic graph -> per-key pipeline -> weight manifest).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "compiler/pipeline.h"
#include "compiler/quantize_weights.h"
#include "frontends/hf_model.h"
#include "plan/plan.h"

namespace moegraph {

struct CompileModelOptions {
  KeySetOptions keys;
  PipelineOptions pipeline;
  std::string command_line;  // recorded in the plan
  // Record each checkpoint file's full content hash (one read of the
  // checkpoint at compile time) so a load can detect changed values.
  bool hash_checkpoint = true;
  // The KV cache's storage dtype (kF32, kF16 or kBF16); unset: DefaultKvDType.
  std::optional<DType> kv_dtype;
  // kInt8 / kInt4: quantize the matmul weights (QuantizeWeights) in blocks of 1 x
  // `quant_block_cols` into `packed_weights_path`, a file in the directory the plan will be
  // written to (PackedWeightsPath of it).
  WeightFormat weights = WeightFormat::kCheckpoint;
  int32_t quant_block_cols = kDefaultQuantBlockCols;
  std::string packed_weights_path;
  // Called after each weight QuantizeWeights packs (done, total); may be empty.
  std::function<void(size_t, size_t)> quantize_progress;
  // Filled with what QuantizeWeights did, when `weights` is not kCheckpoint (may be null).
  QuantizeReport* quantize_report = nullptr;
};

// The KV dtype a model gets without --kv-dtype: its checkpoint's 16-bit float
// dtype for a 16-bit checkpoint, f32 otherwise. The checkpoint's dtype is
// config.json's torch_dtype ("bfloat16", "float16", "float32") when it names
// one of these, else the weights': bf16 or f16 when every float weight has
// that dtype, f32 otherwise.
DType DefaultKvDType(const HfModel& model);

// What each layer caches, from the graph's attention ops (their layer,
// num_kv_heads and head_dim attributes), in `dtype`: one entry per layer
// 0..num_layers-1. InvalidArgument for a layer index out of range, a layer
// without an attention op, or one whose attention ops disagree.
StatusOr<std::vector<PlanKvLayer>> KvLayersFromGraph(const Graph& graph, int32_t num_layers,
                                                     DType dtype);

// Compiles `model` into a plan. `progress` is called after each key.
StatusOr<Plan> CompileModel(const HfModel& model, const CompileModelOptions& options,
                            const std::function<void(const CompileProgress&)>& progress = {});

}  // namespace moegraph
