// Checkpoint weights for model definitions: the loader that resolves a logical weight (plain,
// per-expert stacked, or a row range of a fused expert tensor) against the checkpoint with
// shape and dtype checks, and the weight list a family publishes for the checkpoint writers.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/safetensors.h"
#include "frontends/builder.h"
#include "frontends/quantization.h"
#include "support/status.h"

namespace moegraph {

// How the demo, golden and bench writers fill a tensor with random values.
enum class WeightInit {
  kEmbedding,  // ~N(0, 1)
  kLinear,     // [out_features, in_features]: ~N(0, 1) / sqrt(in_features)
  kNorm,       // ~1 + 0.1 N(0, 1)
  kBias,       // [out_features]: ~0.1 N(0, 1)
  // MXFP4 experts (U8, whatever the checkpoint's dtype): uniformly random code bytes
  // [E, N, K / 32, 16], and e8m0 scales [E, N, K / 32] around 1 / (3.2 sqrt(K)) (the RMS of a
  // uniformly random FP4 code is about 3.2), so the dequantized weights are ~N(0, 1 / K) in
  // scale like kLinear's.
  kMxfp4Blocks,
  kMxfp4Scales,
};

// The dtype a writer stores `init`'s tensor in: U8 for the MXFP4 kinds, else `dtype`.
inline DType WeightInitDType(WeightInit init, DType dtype) {
  return init == WeightInit::kMxfp4Blocks || init == WeightInit::kMxfp4Scales ? DType::kU8 : dtype;
}

// The e8m0 byte of an MXFP4 scale for K inputs, `jitter` (in {-1, 0, 1}) off its centre.
uint8_t Mxfp4ScaleByte(int64_t k, int jitter);

// One tensor of a family's checkpoint, under its Hugging Face name.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  WeightInit init = WeightInit::kLinear;
  // Stored f32 whatever the checkpoint's dtype, as transformers keeps it
  // (_keep_in_fp32_modules_strict: the GLM4-MoE and Ernie routers and correction biases).
  bool keep_f32 = false;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
};

// The three projections of a stack of SwiGLU experts, each [E, rows, K].
struct ExpertWeights {
  ValueId gate = kNoValue;  // [E, I, H]
  ValueId up = kNoValue;    // [E, I, H]
  ValueId down = kNoValue;  // [E, H, I]
};

// The projections' names in a family's published per-expert layout
// (`experts.{e}.<name>.weight`): gate_proj/up_proj/down_proj, or Mixtral's w1/w3/w2.
struct ExpertNames {
  std::string gate = "gate_proj";
  std::string up = "up_proj";
  std::string down = "down_proj";
};

// Resolves logical weights against a checkpoint and records them in a GraphBuilder as typed
// `weight` values. Every error names the file and the tensor and says what was expected:
// NotFound for a missing tensor, InvalidArgument for a shape that disagrees with the config or
// experts of one stack in different dtypes, Unimplemented for a dtype no kernel reads.
//
// With a `quantization` config, a tensor that has a scale tensor (ScaleTensorName:
// "<name>_scale_inv") and lies outside modules_to_not_convert is a quantized weight: its value has
// the scheme's storage dtype and its weight op names the scales (`quant`, `scale`, `block_rows`,
// `block_cols`; ir/quant.h). Plain, Stacked and FusedRows apply it; Squeezed never does.
class WeightLoader {
 public:
  WeightLoader(const Checkpoint& checkpoint, GraphBuilder& builder,
               QuantizationConfig quantization = {})
      : ckpt_(checkpoint), b_(builder), quant_(std::move(quantization)) {}

  // Whether the checkpoint has `name` (to pick between layouts).
  bool Has(const std::string& name) const { return ckpt_.Get(name).ok(); }

  // The tensor `name`, which must have `shape`.
  StatusOr<ValueId> Plain(const std::string& name, const std::vector<int64_t>& shape);

  // The tensor `name` stored as `stored` (`shape` with leading size-1 dims, e.g. a [1, E] bias)
  // as a `shape` weight: the same bytes, which ResolveWeight accepts.
  StatusOr<ValueId> Squeezed(const std::string& name, const std::vector<int64_t>& stored,
                             const std::vector<int64_t>& shape);

  // Tensors `pattern` with {e} = 0..num_experts-1, each `shape`, stacked as one
  // [num_experts, ...shape] weight named by the pattern.
  StatusOr<ValueId> Stacked(const std::string& pattern, int64_t num_experts,
                            const std::vector<int64_t>& shape);

  // Rows [row_offset, row_offset + rows) of every expert of the fused tensor `name`, stored as
  // `stored` = [E, R, K], as a stacked [E, rows, K] weight (no copy: `row_offset` attribute).
  StatusOr<ValueId> FusedRows(const std::string& name, const std::vector<int64_t>& stored,
                              int64_t row_offset, int64_t rows);

  // The MXFP4 expert stack `<base>_blocks` (U8 [E, N, K / 32, 16]: two FP4 e2m1 codes a byte)
  // with its scales `<base>_scales` (U8 e8m0 [E, N, K / 32]) as one [E, N, K] mxfp4 weight
  // (`shape`), under a quantization_config of quant_method "mxfp4".
  StatusOr<ValueId> Mxfp4Experts(const std::string& base, const std::vector<int64_t>& shape);

  const QuantizationConfig& quantization() const { return quant_; }

  // The experts of an MoE block under `prefix` ("model.layers.3.mlp."), in whichever layout the
  // checkpoint has: published per-expert tensors `experts.{e}.<names.gate|up|down>.weight`, or
  // transformers' fused `experts.gate_up_proj` [E, 2I, H] (gate rows first) and
  // `experts.down_proj` [E, H, I].
  StatusOr<ExpertWeights> Experts(const std::string& prefix, int64_t num_experts,
                                  int64_t intermediate, int64_t hidden,
                                  const ExpertNames& names = {});

 private:
  // `quantized`: the tensor may be a quantized weight (Plain, Stacked, FusedRows); its weight
  // op attributes are then added to `attrs`.
  StatusOr<const SafetensorsTensor*> Lookup(const std::string& name,
                                            const std::vector<int64_t>& shape,
                                            AttrMap* attrs = nullptr) const;

  const Checkpoint& ckpt_;
  GraphBuilder& b_;
  QuantizationConfig quant_;
};

}  // namespace moegraph
