// Step-by-step re-verification of loaded programs.
#include "runtime/program_check.h"

#include <optional>
#include <utility>

#include "ir/op_registry.h"
#include "ir/verifier.h"

namespace moegraph {
namespace {

Type TypeOf(const ArgRef& ref) {
  std::vector<Dim> dims;
  for (int64_t d : ref.shape)
    dims.push_back(Dim::Static(d));
  return Type::Tensor(ref.dtype, std::move(dims));
}

// The step as `graph @step(%meta, %in0, ...) { %out... = kernel(...) }`.
StatusOr<Graph> StepAsGraph(const KernelStep& step) {
  const OpDef* def = LookupOp(step.kernel);
  if (!def || !def->Has(kKernel)) {
    return DataLoss("unknown kernel '" + step.kernel + "'");
  }
  const size_t num_ints = def->params ? def->params->num_ints : 0;
  const size_t num_floats = def->params ? def->params->num_floats : 0;
  if (step.ints.size() != num_ints || step.floats.size() != num_floats) {
    return DataLoss("'" + step.kernel + "' takes " + std::to_string(num_ints) + " integer and " +
                    std::to_string(num_floats) + " float parameters, the step has " +
                    std::to_string(step.ints.size()) + " and " +
                    std::to_string(step.floats.size()));
  }
  Graph graph("step");
  std::vector<ValueId> operands;
  const ValueId meta = graph.AddInput("meta", Type::ForwardMeta());
  if (def->Has(kNeedsForwardMeta)) operands.push_back(meta);
  for (size_t i = 0; i < step.inputs.size(); ++i) {
    operands.push_back(graph.AddInput("in" + std::to_string(i), TypeOf(step.inputs[i])));
  }
  AttrMap attrs;
  if (def->params) {
    for (const ParamFieldInfo& f : *def->params) {
      if (f.kind == AttrKind::kInt) {
        attrs[f.name] = step.ints[f.wire_index];
      } else {
        attrs[f.name] = static_cast<double>(step.floats[f.wire_index]);
      }
    }
  }
  std::vector<Type> results;
  for (const ArgRef& out : step.outputs)
    results.push_back(TypeOf(out));
  const int32_t index = graph.AddOp(def, operands, std::move(attrs), results, "out");
  for (ValueId r : graph.ops()[index].results)
    graph.AddOutput(r);
  return graph;
}

// The value of kernel parameter `name` of `step` (a param of `def`), if it has one.
std::optional<int64_t> IntParam(const OpDef& def, const KernelStep& step, const char* name) {
  if (def.params == nullptr) return std::nullopt;
  for (const ParamFieldInfo& f : *def.params) {
    if (f.kind == AttrKind::kInt && std::string_view(f.name) == name &&
        static_cast<size_t>(f.wire_index) < step.ints.size()) {
      return step.ints[f.wire_index];
    }
  }
  return std::nullopt;
}

// Parameters whose range depends on the plan, not only on the op: the op
// registry bounds `layer` by a constant, and `row_offset` (a MoE chunk's first
// token row) not at all.
Status CheckPlanDependentParams(const Plan& plan, const KeyProgram& program,
                                const KernelStep& step) {
  const OpDef* def = LookupOp(step.kernel);
  if (def == nullptr) return Status::Ok();  // StepAsGraph names it
  const PlanModelInfo& m = plan.model;
  if (const std::optional<int64_t> layer = IntParam(*def, step, "layer")) {
    if (*layer < 0 || *layer >= m.num_layers) {
      return DataLoss("layer " + std::to_string(*layer) + " is out of range: the model has " +
                      std::to_string(m.num_layers) + " layers (expected 0 <= layer < " +
                      std::to_string(m.num_layers) + ")");
    }
    // A layer's op reads the KV cache: its geometry must be the layer's entry.
    if (*layer >= static_cast<int64_t>(plan.kv_layers.size())) {
      return DataLoss("layer " + std::to_string(*layer) + " has no kv_layers entry (the plan has " +
                      std::to_string(plan.kv_layers.size()) + ")");
    }
    const PlanKvLayer& entry = plan.kv_layers[static_cast<size_t>(*layer)];
    // mla_attention reads a latent cache (rows of kv_lora_rank + qk_rope_head_dim); every
    // other layer op a key/value cache.
    const std::optional<int64_t> rank = IntParam(*def, step, "kv_lora_rank");
    const std::optional<int64_t> rope = IntParam(*def, step, "qk_rope_head_dim");
    const bool latent = rank.has_value() && rope.has_value();
    const KvLayerKind kind = latent ? KvLayerKind::kLatent : KvLayerKind::kKeyValue;
    if (entry.kind != kind) {
      return DataLoss("kv_layers[" + std::to_string(*layer) + "] has kind " +
                      std::to_string(static_cast<int>(entry.kind)) + ", but '" + step.kernel +
                      "' reads a " +
                      (latent ? "latent cache (kind 1)" : "key/value cache (kind 0)"));
    }
    if (latent && *rank + *rope != entry.head_dim) {
      return DataLoss("kv_lora_rank + qk_rope_head_dim is " + std::to_string(*rank + *rope) +
                      ", but the KV cache's latent row has " + std::to_string(entry.head_dim) +
                      " (kv_layers[" + std::to_string(*layer) + "].head_dim)");
    }
    for (const auto& [name, expected] :
         {std::pair<const char*, int32_t>{"num_kv_heads", entry.num_kv_heads},
          {"head_dim", entry.head_dim},
          {"window", entry.window}}) {
      const std::optional<int64_t> value = IntParam(*def, step, name);
      if (value && *value != expected) {
        return DataLoss(std::string(name) + " is " + std::to_string(*value) +
                        ", but the KV cache has " + std::to_string(expected) + " (kv_layers[" +
                        std::to_string(*layer) + "]." + name + ")");
      }
    }
  }
  if (const std::optional<int64_t> row_offset = IntParam(*def, step, "row_offset")) {
    const int64_t rows =
        !step.inputs.empty() && !step.inputs[0].shape.empty() ? step.inputs[0].shape[0] : 0;
    const int64_t tokens = program.key.token_bucket;
    if (*row_offset < 0 || *row_offset > tokens || rows > tokens - *row_offset) {
      return DataLoss("row_offset " + std::to_string(*row_offset) + " with " +
                      std::to_string(rows) +
                      " rows is out of range: expected row_offset + rows "
                      "<= the key's token bucket " +
                      std::to_string(tokens));
    }
  }
  return Status::Ok();
}

}  // namespace

Status CheckPlanPrograms(const Plan& plan) {
  for (const KeyProgram& program : plan.programs) {
    const std::string key = "plan program " + program.key.ToString();
    if (program.steps.empty()) return DataLoss(key + ": the program has no steps");
    // The runtime copies [seqs, vocab] floats out of the logits slot.
    const ArgRef& logits = program.logits;
    if (logits.kind != ArgKind::kArena || logits.dtype != DType::kF32 ||
        logits.shape != std::vector<int64_t>{program.key.seq_bucket, plan.model.vocab_size}) {
      return DataLoss(key + ": logits must be an f32 arena slot of [" +
                      std::to_string(program.key.seq_bucket) + ", " +
                      std::to_string(plan.model.vocab_size) + "]");
    }
    for (size_t i = 0; i < program.steps.size(); ++i) {
      const KernelStep& step = program.steps[i];
      const std::string where = key + ", step " + std::to_string(i) + " ('" + step.kernel + "')";
      for (const ArgRef& in : step.inputs) {
        // The one graph input is the token ids, a runtime buffer of the bucket's size.
        if (in.kind == ArgKind::kInput &&
            (in.index != 0 || in.dtype != DType::kI32 ||
             in.shape != std::vector<int64_t>{program.key.token_bucket})) {
          return DataLoss(where + ": input slot " + std::to_string(in.index) +
                          " must be the i32 token ids [" +
                          std::to_string(program.key.token_bucket) + "]");
        }
      }
      MG_RETURN_IF_ERROR(CheckPlanDependentParams(plan, program, step).WithContext(where));
      StatusOr<Graph> graph = StepAsGraph(step);
      if (!graph.ok()) return graph.status().WithContext(where);
      std::vector<Diagnostic> faults = VerifyGraph(*graph);
      if (!faults.empty()) {
        return DataLoss(where + ": its arguments break the op's rules: " + faults[0].message);
      }
    }
  }
  return Status::Ok();
}

}  // namespace moegraph
