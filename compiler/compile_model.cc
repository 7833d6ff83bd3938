// The compile driver.
#include "compiler/compile_model.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include "checkpoint/weights.h"
#include "ir/op_registry.h"
#include "ir/printer.h"
#include "support/hash.h"
#include "support/mapped_file.h"
#include "tokenizer/generation_config.h"
#include "tokenizer/tokenizer.h"

namespace moegraph {
namespace {

// Records the tokenizer files of `dir` that exist (kPlanTokenizerFileNames), after checking that
// they load and fit the model: the tokenizer's ids and the eos ids are below `vocab_size`.
StatusOr<std::vector<PlanTokenizerFile>> FindTokenizerFiles(const std::string& dir,
                                                            int32_t vocab_size) {
  std::vector<PlanTokenizerFile> files;
  for (const char* name : kPlanTokenizerFileNames) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    if (!std::filesystem::exists(path)) continue;
    MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    const std::string_view file = name;
    if (file == "tokenizer.json") {
      StatusOr<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::FromJson(text, path);
      if (!tok.ok()) return tok.status().WithContext(path);
      if (tok->vocab_size() > vocab_size) {
        return InvalidArgument(
            path + ": the tokenizer has ids up to " + std::to_string(tok->vocab_size() - 1) +
            ", expected below config.json's vocab_size " + std::to_string(vocab_size));
      }
    } else if (file == "tokenizer_config.json") {
      MG_RETURN_IF_ERROR(tokenizer::ParseTokenizerConfig(text, path).status());
    } else {
      MG_ASSIGN_OR_RETURN(tokenizer::GenerationConfig config,
                          tokenizer::ParseGenerationConfig(text, path));
      for (int32_t id : config.eos_token_ids) {
        if (id < 0 || id >= vocab_size) {
          return InvalidArgument(path + ": eos_token_id " + std::to_string(id) +
                                 " is outside config.json's vocab [0, " +
                                 std::to_string(vocab_size) + ")");
        }
      }
    }
    files.push_back(PlanTokenizerFile{name, HashBytes(text)});
  }
  return files;
}

// The KV-cache entry an op declares, for the ops that read the cache:
// "attention" (K and V per KV head) and "mla_attention" (one latent row of
// kv_lora_rank + qk_rope_head_dim per token).
std::optional<PlanKvLayer> KvLayerOfOp(const Op& op) {
  if (op.def == nullptr) return std::nullopt;
  PlanKvLayer layer;
  if (op.def->name == "attention") {
    layer.kind = KvLayerKind::kKeyValue;
    layer.num_kv_heads = static_cast<int32_t>(op.IntAttr("num_kv_heads"));
    layer.head_dim = static_cast<int32_t>(op.IntAttr("head_dim"));
    layer.window = static_cast<int32_t>(op.IntAttr("window", 0));
    return layer;
  }
  if (op.def->name == "mla_attention") {
    layer.kind = KvLayerKind::kLatent;
    layer.num_kv_heads = 1;
    layer.head_dim =
        static_cast<int32_t>(op.IntAttr("kv_lora_rank") + op.IntAttr("qk_rope_head_dim"));
    return layer;
  }
  return std::nullopt;
}

std::string DescribeKvLayer(const PlanKvLayer& l) {
  if (l.kind == KvLayerKind::kLatent) return "a latent row of " + std::to_string(l.head_dim);
  return std::to_string(l.num_kv_heads) + " KV heads of " + std::to_string(l.head_dim) +
         (l.window > 0 ? ", window " + std::to_string(l.window) : "");
}

}  // namespace

DType DefaultKvDType(const HfModel& model) {
  const std::string& torch_dtype = model.decoder().torch_dtype;
  if (torch_dtype == "bfloat16") return DType::kBF16;
  if (torch_dtype == "float16") return DType::kF16;
  if (torch_dtype == "float32") return DType::kF32;
  std::optional<DType> common;
  for (const std::string& name : model.checkpoint.TensorNames()) {
    StatusOr<const SafetensorsTensor*> tensor = model.checkpoint.Get(name);
    if (!tensor.ok() || !IsFloat((*tensor)->dtype)) continue;
    if (common && *common != (*tensor)->dtype) return DType::kF32;
    common = (*tensor)->dtype;
  }
  return common && (*common == DType::kBF16 || *common == DType::kF16) ? *common : DType::kF32;
}

StatusOr<std::vector<PlanKvLayer>> KvLayersFromGraph(const Graph& graph, int32_t num_layers,
                                                     DType dtype) {
  if (!IsKvCacheDType(dtype)) {
    return InvalidArgument(std::string("KV cache dtype must be f32, f16 or bf16, got ") +
                           DTypeName(dtype));
  }
  std::vector<std::optional<PlanKvLayer>> layers(static_cast<size_t>(std::max(num_layers, 0)));
  for (const Op& op : graph.ops()) {
    std::optional<PlanKvLayer> entry = KvLayerOfOp(op);
    if (!entry) continue;
    entry->dtype = dtype;
    const int64_t layer = op.IntAttr("layer", -1);
    if (layer < 0 || layer >= num_layers) {
      return InvalidArgument("op '" + op.name() + "' (" + op.def->name + ") has layer " +
                             std::to_string(layer) + ", expected 0 <= layer < " +
                             std::to_string(num_layers) + " (the model's layers)");
    }
    std::optional<PlanKvLayer>& slot = layers[static_cast<size_t>(layer)];
    if (slot && *slot != *entry) {
      return InvalidArgument("layer " + std::to_string(layer) + " has attention ops of two KV " +
                             "geometries: " + DescribeKvLayer(*slot) + " and, at op '" + op.name() +
                             "', " + DescribeKvLayer(*entry) + "; expected one per layer");
    }
    slot = *entry;
  }
  std::vector<PlanKvLayer> out;
  out.reserve(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    if (!layers[l]) {
      return InvalidArgument(
          "layer " + std::to_string(l) +
          " has no attention op: nothing declares what it keeps in the KV cache");
    }
    out.push_back(*layers[l]);
  }
  return out;
}

StatusOr<Plan> CompileModel(const HfModel& model, const CompileModelOptions& options,
                            const std::function<void(const CompileProgress&)>& progress) {
  Plan plan;
  plan.model = model.Info();
  plan.model_dir = std::filesystem::absolute(model.dir).lexically_normal().string();
  plan.compile_options = options.command_line;
  // The graph and the tensors the plan reads: the model's own, or (--weights int8|int4) its
  // matmul weights quantized into the packed file, which then joins the checkpoint.
  const Graph* graph = &model.graph;
  const Checkpoint* checkpoint = &model.checkpoint;
  Graph quantized;
  Checkpoint with_packed;
  std::string packed_file;
  if (options.weights != WeightFormat::kCheckpoint) {
    const std::string& path = options.packed_weights_path;
    if (path.empty()) {
      return InvalidArgument(std::string("--weights ") + WeightFormatName(options.weights) +
                             " needs a packed weights file path");
    }
    packed_file = std::filesystem::path(path).filename().string();
    if (std::filesystem::exists(std::filesystem::path(model.dir) / packed_file)) {
      return InvalidArgument("the packed weights file name '" + packed_file +
                             "' is also a file of the checkpoint directory " + model.dir +
                             "; write the plan under another name");
    }
    quantized = model.graph;
    MG_ASSIGN_OR_RETURN(QuantizeReport report,
                        QuantizeWeights(quantized, model.checkpoint, path,
                                        QuantizeOptions{options.weights, options.quant_block_cols},
                                        options.quantize_progress));
    if (options.quantize_report != nullptr) *options.quantize_report = report;
    MG_ASSIGN_OR_RETURN(with_packed, Checkpoint::Open(model.dir));
    MG_RETURN_IF_ERROR(with_packed.AddFile(path));
    graph = &quantized;
    checkpoint = &with_packed;
  }
  plan.source_ir = PrintGraph(*graph);
  MG_ASSIGN_OR_RETURN(plan.kv_layers,
                      KvLayersFromGraph(*graph, plan.model.num_layers,
                                        options.kv_dtype.value_or(DefaultKvDType(model))));
  PipelineOptions pipeline = options.pipeline;
  pipeline.chunk_size = options.keys.chunk_size;
  WeightTable table;
  MG_RETURN_IF_ERROR(CompileKeys(*graph, options.keys, pipeline, plan, table, progress));
  for (const WeightTable::Entry& entry : table.entries()) {
    Op op;
    op.def = LookupOp("weight");
    op.attrs = entry.attrs;
    MG_ASSIGN_OR_RETURN(ResolvedWeight resolved, ResolveWeight(op, entry.type, *checkpoint));
    PlanWeight w;
    w.name = entry.name;
    w.experts = op.IntAttr("experts", 0);
    w.expert_slice = op.HasAttr("first_expert");
    w.first_expert = op.IntAttr("first_expert", 0);
    w.row_offset = op.IntAttr("row_offset", 0);
    w.dtype = resolved.dtype;
    w.shape = resolved.shape;
    for (const WeightSlice& s : resolved.slices) {
      w.slices.push_back(
          PlanWeightSlice{std::filesystem::path(s.file).filename().string(), s.offset, s.bytes});
    }
    w.quant = resolved.quant;
    w.scale_name = resolved.scale_name;
    for (const WeightSlice& s : resolved.scale_slices) {
      w.scale_slices.push_back(
          PlanWeightSlice{std::filesystem::path(s.file).filename().string(), s.offset, s.bytes});
    }
    plan.weights.push_back(std::move(w));
  }
  // Fingerprints of the files the weights come from, to detect a checkpoint
  // changed after this compile.
  std::set<std::string> files;
  for (const PlanWeight& w : plan.weights) {
    for (const PlanWeightSlice& s : w.slices)
      files.insert(s.file);
    for (const PlanWeightSlice& s : w.scale_slices)
      files.insert(s.file);
  }
  for (const std::string& file : files) {
    if (file == packed_file) {
      // Written above: always fully hashed (the read is of a file just written).
      const std::string dir =
          std::filesystem::path(options.packed_weights_path).parent_path().string();
      MG_ASSIGN_OR_RETURN(PlanCheckpointFile fingerprint,
                          FingerprintCheckpointFile(dir.empty() ? "." : dir, file, true));
      plan.packed_weight_files.push_back(std::move(fingerprint));
      continue;
    }
    MG_ASSIGN_OR_RETURN(PlanCheckpointFile fingerprint,
                        FingerprintCheckpointFile(model.dir, file, options.hash_checkpoint));
    plan.checkpoint_files.push_back(std::move(fingerprint));
  }
  MG_ASSIGN_OR_RETURN(plan.tokenizer_files, FindTokenizerFiles(model.dir, plan.model.vocab_size));
  plan.op_set_hash = OpSetHash();
  return plan;
}

}  // namespace moegraph
