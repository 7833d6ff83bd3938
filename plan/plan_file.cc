// Plan files: Plan <-> the FlatBuffer of plan/plan.fbs, and the loader's
// checks, which treat every byte of the file as untrusted.
#include "plan/plan_file.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "ir/op_registry.h"
#include "kernels/kernel_abi.h"
#include "plan/collectives.h"
#include "plan/plan_generated.h"
#include "support/hash.h"
#include "support/mapped_file.h"
#include "support/strings.h"

namespace moegraph {
namespace {

// The schema's enums mirror the in-memory ones value for value, so converting
// is a cast and an out-of-range value survives to ValidatePlan, which reports
// it with its location.
static_assert(static_cast<int>(fb::DType::F32) == static_cast<int>(DType::kF32));
static_assert(static_cast<int>(fb::DType::F16) == static_cast<int>(DType::kF16));
static_assert(static_cast<int>(fb::DType::BF16) == static_cast<int>(DType::kBF16));
static_assert(static_cast<int>(fb::DType::I32) == static_cast<int>(DType::kI32));
static_assert(static_cast<int>(fb::DType::I64) == static_cast<int>(DType::kI64));
static_assert(static_cast<int>(fb::DType::U8) == static_cast<int>(DType::kU8));
static_assert(static_cast<int>(fb::DType::FP8E4M3) == static_cast<int>(DType::kFp8E4M3));
static_assert(static_cast<int>(fb::DType::MXFP4) == static_cast<int>(DType::kMxfp4));
static_assert(static_cast<int>(fb::DType::I8) == static_cast<int>(DType::kI8));
static_assert(static_cast<int>(fb::DType::I4) == static_cast<int>(DType::kI4));
static_assert(static_cast<int>(fb::MoePhase::Prefill) == static_cast<int>(MoePhase::kPrefill));
static_assert(static_cast<int>(fb::MoePhase::Decode) == static_cast<int>(MoePhase::kDecode));
static_assert(static_cast<int>(fb::ArgKind::Arena) == static_cast<int>(ArgKind::kArena));
static_assert(static_cast<int>(fb::ArgKind::Weight) == static_cast<int>(ArgKind::kWeight));
static_assert(static_cast<int>(fb::ArgKind::Input) == static_cast<int>(ArgKind::kInput));

// The last value of each enum; a value added to ir/ without plan.fbs (or the
// reverse) must update both, or these fail.
constexpr DType kLastDType = DType::kI4;
constexpr MoePhase kLastPhase = MoePhase::kDecode;
constexpr ArgKind kLastArgKind = ArgKind::kInput;
static_assert(static_cast<int>(fb::DType::MAX) == static_cast<int>(kLastDType));
static_assert(static_cast<int>(fb::MoePhase::MAX) == static_cast<int>(kLastPhase));
static_assert(static_cast<int>(fb::ArgKind::MAX) == static_cast<int>(kLastArgKind));
static_assert(static_cast<int>(fb::KvLayerKind::KeyValue) ==
              static_cast<int>(KvLayerKind::kKeyValue));
static_assert(static_cast<int>(fb::KvLayerKind::Latent) == static_cast<int>(KvLayerKind::kLatent));
static_assert(static_cast<int>(fb::KvLayerKind::MAX) == static_cast<int>(kLastKvLayerKind));

// Writers align the whole buffer to this, so a valid file's size is a multiple
// of it and a file cut short inside the trailing padding is still caught.
constexpr size_t kPlanAlignment = 8;

// Layers a plan may have: the attention op's `layer` attribute is at most 100000.
constexpr int32_t kMaxPlanLayers = 100001;

// The checksum footer after the flatbuffer (PLAN_FORMAT.md, "Checksum"):
// "MGCS", the flatbuffer's byte length (u32), then XXH64 (seed 0) of every
// byte before the hash (u64), all little-endian.
constexpr char kFooterMagic[4] = {'M', 'G', 'C', 'S'};
constexpr size_t kFooterHashOffset = 8;  // within the footer

uint32_t LoadU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
uint64_t LoadU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Bounds for the verifier: a plan nests about six deep; a large model's plan
// holds well under a million tables.
constexpr flatbuffers::uoffset_t kMaxDepth = 64;
constexpr flatbuffers::uoffset_t kMaxTables = 10'000'000;

// ---- Writing ----------------------------------------------------------------

using Builder = flatbuffers::FlatBufferBuilder;

fb::DType ToFb(DType dtype) {
  return static_cast<fb::DType>(dtype);
}

flatbuffers::Offset<fb::ArgRef> WriteArgRef(Builder& b, const ArgRef& ref) {
  const auto shape = b.CreateVector(ref.shape);
  return fb::CreateArgRef(b, static_cast<fb::ArgKind>(ref.kind), ref.arena_offset, ref.index,
                          ToFb(ref.dtype), shape);
}

flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::ArgRef>>> WriteArgRefs(
    Builder& b, const std::vector<ArgRef>& refs) {
  std::vector<flatbuffers::Offset<fb::ArgRef>> offsets;
  offsets.reserve(refs.size());
  for (const ArgRef& ref : refs)
    offsets.push_back(WriteArgRef(b, ref));
  return b.CreateVector(offsets);
}

flatbuffers::Offset<fb::KernelStep> WriteStep(Builder& b, const KernelStep& step) {
  const auto kernel = b.CreateString(step.kernel);
  const auto inputs = WriteArgRefs(b, step.inputs);
  const auto outputs = WriteArgRefs(b, step.outputs);
  const auto ints = b.CreateVector(step.ints);
  const auto floats = b.CreateVector(step.floats);
  return fb::CreateKernelStep(b, kernel, inputs, outputs, ints, floats, step.op_index);
}

flatbuffers::Offset<fb::KeyProgram> WriteProgram(Builder& b, const KeyProgram& program) {
  const SpecKey& k = program.key;
  const auto key = fb::CreateSpecKey(b, static_cast<fb::MoePhase>(k.phase), k.moe_num_chunk,
                                     k.max_moe_num_chunk, k.token_bucket, k.seq_bucket);
  std::vector<flatbuffers::Offset<fb::KernelStep>> step_offsets;
  step_offsets.reserve(program.steps.size());
  for (const KernelStep& step : program.steps)
    step_offsets.push_back(WriteStep(b, step));
  const auto steps = b.CreateVector(step_offsets);
  const auto logits = WriteArgRef(b, program.logits);
  const auto ir = b.CreateString(program.ir);
  return fb::CreateKeyProgram(b, key, program.arena_bytes, steps, logits, ir, program.rank);
}

flatbuffers::Offset<fb::PlanWeight> WriteWeight(Builder& b, const PlanWeight& weight) {
  const auto name = b.CreateString(weight.name);
  const auto shape = b.CreateVector(weight.shape);
  auto write_slices = [&](const std::vector<PlanWeightSlice>& in) {
    std::vector<flatbuffers::Offset<fb::PlanWeightSlice>> offsets;
    offsets.reserve(in.size());
    for (const PlanWeightSlice& slice : in) {
      const auto file = b.CreateString(slice.file);
      offsets.push_back(fb::CreatePlanWeightSlice(b, file, slice.offset, slice.bytes));
    }
    return b.CreateVector(offsets);
  };
  const auto slices = write_slices(weight.slices);
  if (!weight.quant.quantized()) {
    return fb::CreatePlanWeight(b, name, weight.experts, weight.row_offset, ToFb(weight.dtype),
                                shape, slices, 0, 0, 0, 0, 0, weight.first_expert,
                                weight.expert_slice);
  }
  const auto scale_name = b.CreateString(weight.scale_name);
  const auto scale_slices = write_slices(weight.scale_slices);
  return fb::CreatePlanWeight(b, name, weight.experts, weight.row_offset, ToFb(weight.dtype), shape,
                              slices, static_cast<uint8_t>(weight.quant.scheme),
                              weight.quant.block_rows, weight.quant.block_cols, scale_name,
                              scale_slices, weight.first_expert, weight.expert_slice);
}

// ---- Reading ----------------------------------------------------------------
// Each Read* copies one table into its struct. A required field that is absent
// makes it return false with `missing` set to the field's path below that
// table; callers prepend their own part of the path.

bool Missing(std::string* missing, std::string field) {
  *missing = std::move(field);
  return false;
}

bool Nested(std::string* missing, const std::string& parent) {
  *missing = parent + "." + *missing;
  return false;
}

std::string Indexed(const char* field, size_t index) {
  return std::string(field) + "[" + std::to_string(index) + "]";
}

template <typename T>
bool ReadScalars(const flatbuffers::Vector<T>* in, const char* field, std::vector<T>* out,
                 std::string* missing) {
  if (in == nullptr) return Missing(missing, field);
  // The verifier checks a vector's length word is 4-aligned, not that 8-byte
  // elements are 8-aligned (a corrupt offset can break that), so copy bytes
  // rather than load elements in place.
  static_assert(FLATBUFFERS_LITTLEENDIAN, "the file's little-endian scalars are copied as is");
  out->resize(in->size());
  if (!out->empty()) std::memcpy(out->data(), in->Data(), out->size() * sizeof(T));
  return true;
}

bool ReadString(const flatbuffers::String* in, const char* field, std::string* out,
                std::string* missing) {
  if (in == nullptr) return Missing(missing, field);
  out->assign(in->data(), in->size());
  return true;
}

bool ReadArgRef(const fb::ArgRef& in, ArgRef* out, std::string* missing) {
  out->kind = static_cast<ArgKind>(in.kind());
  out->arena_offset = in.arena_offset();
  out->index = in.index();
  out->dtype = static_cast<DType>(in.dtype());
  return ReadScalars(in.shape(), "shape", &out->shape, missing);
}

bool ReadArgRefs(const flatbuffers::Vector<flatbuffers::Offset<fb::ArgRef>>* in, const char* field,
                 std::vector<ArgRef>* out, std::string* missing) {
  if (in == nullptr) return Missing(missing, field);
  out->resize(in->size());
  for (flatbuffers::uoffset_t i = 0; i < in->size(); ++i) {
    if (!ReadArgRef(*in->Get(i), &(*out)[i], missing)) return Nested(missing, Indexed(field, i));
  }
  return true;
}

bool ReadStep(const fb::KernelStep& in, KernelStep* out, std::string* missing) {
  out->op_index = in.op_index();
  return ReadString(in.kernel(), "kernel", &out->kernel, missing) &&
         ReadArgRefs(in.inputs(), "inputs", &out->inputs, missing) &&
         ReadArgRefs(in.outputs(), "outputs", &out->outputs, missing) &&
         ReadScalars(in.ints(), "ints", &out->ints, missing) &&
         ReadScalars(in.floats(), "floats", &out->floats, missing);
}

bool ReadProgram(const fb::KeyProgram& in, KeyProgram* out, std::string* missing) {
  const fb::SpecKey* key = in.key();
  if (key == nullptr) return Missing(missing, "key");
  out->key.phase = static_cast<MoePhase>(key->phase());
  out->key.moe_num_chunk = key->moe_num_chunk();
  out->key.max_moe_num_chunk = key->max_moe_num_chunk();
  out->key.token_bucket = key->token_bucket();
  out->key.seq_bucket = key->seq_bucket();
  out->arena_bytes = in.arena_bytes();
  out->rank = in.rank();
  const auto* steps = in.steps();
  if (steps == nullptr) return Missing(missing, "steps");
  out->steps.resize(steps->size());
  for (flatbuffers::uoffset_t i = 0; i < steps->size(); ++i) {
    if (!ReadStep(*steps->Get(i), &out->steps[i], missing)) {
      return Nested(missing, Indexed("steps", i));
    }
  }
  if (in.logits() == nullptr) return Missing(missing, "logits");
  if (!ReadArgRef(*in.logits(), &out->logits, missing)) return Nested(missing, "logits");
  return ReadString(in.ir(), "ir", &out->ir, missing);
}

bool ReadWeight(const fb::PlanWeight& in, PlanWeight* out, std::string* missing) {
  out->experts = in.experts();
  out->first_expert = in.first_expert();
  out->expert_slice = in.expert_slice();
  out->row_offset = in.row_offset();
  out->dtype = static_cast<DType>(in.dtype());
  if (!ReadString(in.name(), "name", &out->name, missing) ||
      !ReadScalars(in.shape(), "shape", &out->shape, missing)) {
    return false;
  }
  auto read_slices = [&](const auto* slices, const char* field, std::vector<PlanWeightSlice>* to) {
    if (slices == nullptr) return Missing(missing, field);
    to->resize(slices->size());
    for (flatbuffers::uoffset_t i = 0; i < slices->size(); ++i) {
      const fb::PlanWeightSlice& slice = *slices->Get(i);
      (*to)[i].offset = slice.offset();
      (*to)[i].bytes = slice.bytes();
      if (!ReadString(slice.file(), "file", &(*to)[i].file, missing)) {
        return Nested(missing, Indexed(field, i));
      }
    }
    return true;
  };
  if (!read_slices(in.slices(), "slices", &out->slices)) return false;
  out->quant.scheme = static_cast<QuantScheme>(in.quant());
  if (!out->quant.quantized()) return true;
  out->quant.block_rows = in.block_rows();
  out->quant.block_cols = in.block_cols();
  return ReadString(in.scale_name(), "scale_name", &out->scale_name, missing) &&
         read_slices(in.scale_slices(), "scale_slices", &out->scale_slices);
}

bool ReadModel(const fb::PlanModelInfo& in, PlanModelInfo* out, std::string* missing) {
  out->vocab_size = in.vocab_size();
  out->num_layers = in.num_layers();
  out->num_kv_heads = in.num_kv_heads();
  out->head_dim = in.head_dim();
  out->max_position_embeddings = in.max_position_embeddings();
  return ReadString(in.family(), "family", &out->family, missing) &&
         ReadString(in.config_json(), "config_json", &out->config_json, missing);
}

bool ReadKeyOptions(const fb::KeySetOptions& in, KeySetOptions* out, std::string* missing) {
  out->prefill = in.prefill();
  out->decode = in.decode();
  out->chunk_size = in.chunk_size();
  out->max_chunks = in.max_chunks();
  out->expert_parallel = in.expert_parallel();
  out->max_prefill_seqs = in.max_prefill_seqs();
  return ReadScalars(in.decode_buckets(), "decode_buckets", &out->decode_buckets, missing) &&
         ReadScalars(in.prefill_buckets(), "prefill_buckets", &out->prefill_buckets, missing);
}

// A plan written before kv_layers existed cached every layer as f32 K/V of
// the model's num_kv_heads x head_dim: absent, that is what it reads as (a
// num_layers too large for a layer index is left for the validator to name).
void ReadKvLayers(const fb::Plan& in, Plan* out) {
  const auto* layers = in.kv_layers();
  if (layers == nullptr) {
    const PlanModelInfo& m = out->model;
    if (m.num_layers > 0 && m.num_layers <= kMaxPlanLayers) {
      out->kv_layers.assign(static_cast<size_t>(m.num_layers),
                            PlanKvLayer{KvLayerKind::kKeyValue, m.num_kv_heads, m.head_dim,
                                        /*window=*/0, DType::kF32});
    }
    return;
  }
  out->kv_layers.resize(layers->size());
  for (flatbuffers::uoffset_t i = 0; i < layers->size(); ++i) {
    const fb::PlanKvLayer& l = *layers->Get(i);
    out->kv_layers[i] = PlanKvLayer{static_cast<KvLayerKind>(l.kind()), l.num_kv_heads(),
                                    l.head_dim(), l.window(), static_cast<DType>(l.dtype())};
  }
}

// A list of file fingerprints (checkpoint_files, packed_weight_files) into `out`.
bool ReadFileList(const flatbuffers::Vector<flatbuffers::Offset<fb::PlanCheckpointFile>>& files,
                  const char* field, std::vector<PlanCheckpointFile>* out, std::string* missing) {
  out->resize(files.size());
  for (flatbuffers::uoffset_t i = 0; i < files.size(); ++i) {
    const fb::PlanCheckpointFile& f = *files.Get(i);
    PlanCheckpointFile& o = (*out)[i];
    o.bytes = f.bytes();
    o.mtime_ns = f.mtime_ns();
    o.sampled_hash = f.sampled_hash();
    o.full_hash = f.full_hash();
    if (!ReadString(f.file(), "file", &o.file, missing)) {
      return Nested(missing, Indexed(field, i));
    }
  }
  return true;
}

bool ReadPlan(const fb::Plan& in, Plan* out, std::string* missing) {
  out->format_version = in.format_version();
  out->keys_share_one_arena = in.keys_share_one_arena();
  if (in.model() == nullptr) return Missing(missing, "model");
  if (!ReadModel(*in.model(), &out->model, missing)) return Nested(missing, "model");
  if (!ReadString(in.model_dir(), "model_dir", &out->model_dir, missing)) return false;
  const auto* weights = in.weights();
  if (weights == nullptr) return Missing(missing, "weights");
  out->weights.resize(weights->size());
  for (flatbuffers::uoffset_t i = 0; i < weights->size(); ++i) {
    if (!ReadWeight(*weights->Get(i), &out->weights[i], missing)) {
      return Nested(missing, Indexed("weights", i));
    }
  }
  if (in.key_options() == nullptr) return Missing(missing, "key_options");
  if (!ReadKeyOptions(*in.key_options(), &out->key_options, missing)) {
    return Nested(missing, "key_options");
  }
  const auto* programs = in.programs();
  if (programs == nullptr) return Missing(missing, "programs");
  out->programs.resize(programs->size());
  for (flatbuffers::uoffset_t i = 0; i < programs->size(); ++i) {
    if (!ReadProgram(*programs->Get(i), &out->programs[i], missing)) {
      return Nested(missing, Indexed("programs", i));
    }
  }
  if (!ReadString(in.source_ir(), "source_ir", &out->source_ir, missing) ||
      !ReadString(in.compile_options(), "compile_options", &out->compile_options, missing)) {
    return false;
  }
  out->op_set_hash = in.op_set_hash();
  const auto* files = in.checkpoint_files();
  if (files == nullptr) return Missing(missing, "checkpoint_files");
  if (!ReadFileList(*files, "checkpoint_files", &out->checkpoint_files, missing)) return false;
  // Optional: plans without packed weights (and those written before them) have none.
  if (const auto* packed = in.packed_weight_files()) {
    if (!ReadFileList(*packed, "packed_weight_files", &out->packed_weight_files, missing)) {
      return false;
    }
  }
  // Optional: plans written before tokenizers were recorded have none.
  if (const auto* tokenizer_files = in.tokenizer_files()) {
    out->tokenizer_files.resize(tokenizer_files->size());
    for (flatbuffers::uoffset_t i = 0; i < tokenizer_files->size(); ++i) {
      const fb::PlanTokenizerFile& f = *tokenizer_files->Get(i);
      out->tokenizer_files[i].full_hash = f.full_hash();
      if (!ReadString(f.file(), "file", &out->tokenizer_files[i].file, missing)) {
        return Nested(missing, Indexed("tokenizer_files", i));
      }
    }
  }
  ReadKvLayers(in, out);
  return true;
}

// ---- Checks -------------------------------------------------------------------

bool IsKnown(DType dtype) {
  return static_cast<int>(dtype) <= static_cast<int>(kLastDType);
}
bool IsKnown(MoePhase phase) {
  return static_cast<int>(phase) <= static_cast<int>(kLastPhase);
}
bool IsKnown(ArgKind kind) {
  return static_cast<int>(kind) <= static_cast<int>(kLastArgKind);
}

std::string EnumValue(auto value) {
  return std::to_string(static_cast<int>(value));
}

std::string SupportedVersionsString() {
  std::string out;
  for (uint32_t v : kSupportedPlanVersions) {
    if (!out.empty()) out += ", ";
    out += std::to_string(v);
  }
  return out;
}

Status CheckVersion(uint32_t version, std::string_view source_name) {
  const bool supported =
      std::find(std::begin(kSupportedPlanVersions), std::end(kSupportedPlanVersions), version) !=
      std::end(kSupportedPlanVersions);
  if (supported) return Status::Ok();
  return FailedPrecondition(
      std::string(source_name) + ": plan format version " + std::to_string(version) +
      " is not supported by this build (supports: " + SupportedVersionsString() +
      "); recompile the plan");
}

// Walks a plan and reports the first thing that would make running it unsafe
// or wrong. Arithmetic on sizes is overflow-checked: every number is untrusted.
class PlanValidator {
 public:
  PlanValidator(const Plan& plan, std::string_view source_name)
      : plan_(plan), source_name_(source_name) {}

  // The steps name ops and pack their parameters in the registry's order: a
  // plan from a build with another op set would be misread, so it is refused.
  Status CheckOpSet() const {
    if (plan_.op_set_hash == OpSetHash()) return Status::Ok();
    return FailedPrecondition(std::string(source_name_) + ": the plan was compiled by a build " +
                              "with another op set (op-set hash " + Hex(plan_.op_set_hash) +
                              ", this build " + Hex(OpSetHash()) +
                              "); recompile it with this build's compile-model");
  }

  static std::string Hex(uint64_t v) {
    char buf[19];
    std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(v));
    return buf;
  }

  Status Run() {
    MG_RETURN_IF_ERROR(CheckVersion(plan_.format_version, source_name_));
    MG_RETURN_IF_ERROR(CheckOpSet());
    MG_RETURN_IF_ERROR(CheckModel());
    MG_RETURN_IF_ERROR(CheckKvLayers());
    MG_RETURN_IF_ERROR(CheckKeyOptions());
    for (size_t i = 0; i < plan_.weights.size(); ++i) {
      MG_RETURN_IF_ERROR(CheckWeight(i));
    }
    MG_RETURN_IF_ERROR(CheckCheckpointFiles());
    MG_RETURN_IF_ERROR(CheckTokenizerFiles());
    std::map<std::tuple<int32_t, int, int32_t, int32_t, int32_t, int32_t>, size_t> seen_keys;
    for (size_t i = 0; i < plan_.programs.size(); ++i) {
      MG_RETURN_IF_ERROR(CheckProgram(i));
      const KeyProgram& p = plan_.programs[i];
      const SpecKey& k = p.key;
      const auto [it, inserted] =
          seen_keys.emplace(std::make_tuple(p.rank, static_cast<int>(k.phase), k.moe_num_chunk,
                                            k.max_moe_num_chunk, k.token_bucket, k.seq_bucket),
                            i);
      if (!inserted) {
        const bool ranks = plan_.key_options.expert_parallel > 1;
        return Error("program '" + k.ToString() + "' is a duplicate key (programs #" +
                     std::to_string(it->second) + " and #" + std::to_string(i) +
                     (ranks ? ", both of rank " + std::to_string(p.rank) : std::string()) +
                     "); expected one program per key" + (ranks ? " and rank" : ""));
      }
    }
    const Status agree = CheckRanksAgree(plan_);
    if (!agree.ok()) return Error(agree.message());
    return Status::Ok();
  }

 private:
  Status Error(const std::string& what) const {
    return DataLoss(std::string(source_name_) + ": " + what);
  }

  // numel × dtype size of `shape`, which must be known-dtype with dims >= 0.
  // nullopt on int64 overflow.
  static std::optional<int64_t> CheckedBytes(const std::vector<int64_t>& shape, DType dtype) {
    int64_t bits = DTypeBits(dtype);
    for (int64_t d : shape) {
      if (__builtin_mul_overflow(bits, d, &bits)) return std::nullopt;
    }
    return (bits + 7) / 8;  // DTypeStorageBytes, checked
  }

  // Dtype known, rank <= kMaxRank, dims >= 0 and a size that fits int64.
  // `what()` names the tensor; it is called only on error.
  template <typename What>
  Status CheckTensor(const What& what, DType dtype, const std::vector<int64_t>& shape,
                     int64_t* bytes) const {
    if (!IsKnown(dtype)) {
      return Error(what() + " has dtype value " + EnumValue(dtype) + ", expected 0.." +
                   EnumValue(kLastDType) + " (f32 .. i4)");
    }
    if (shape.size() > static_cast<size_t>(kMaxRank)) {
      return Error(what() + " has rank " + std::to_string(shape.size()) + ", expected at most " +
                   std::to_string(kMaxRank));
    }
    for (int64_t d : shape) {
      if (d < 0) return Error(what() + " has a negative dim: " + ShapeString(shape));
    }
    const std::optional<int64_t> b = CheckedBytes(shape, dtype);
    if (!b) {
      return Error(what() + " " + DTypeName(dtype) + " " + ShapeString(shape) +
                   " is too large: its byte size overflows int64");
    }
    *bytes = *b;
    return Status::Ok();
  }

  // Fingerprints name distinct files; when a plan has any, every weight slice's
  // file has one (a plan without weights, or from a test, may have none).
  Status CheckCheckpointFiles() const {
    std::map<std::string, size_t> files;
    const auto add = [&](const std::vector<PlanCheckpointFile>& list, const char* field,
                         const char* dir) {
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string& file = list[i].file;
        const std::string where = std::string(field) + "[" + std::to_string(i) + "]";
        if (file.empty()) return Error(where + " names no file");
        // A file name in its directory, as compile-model records it: nothing outside.
        if (file.find('/') != std::string::npos || file == "." || file == "..") {
          return Error(where + " is '" + file + "', expected a file name inside " + dir);
        }
        if (!files.emplace(file, i).second) {
          return Error("checkpoint_files and packed_weight_files list '" + file + "' twice");
        }
      }
      return Status::Ok();
    };
    MG_RETURN_IF_ERROR(add(plan_.checkpoint_files, "checkpoint_files", "model_dir"));
    MG_RETURN_IF_ERROR(
        add(plan_.packed_weight_files, "packed_weight_files", "the plan's directory"));
    if (files.empty()) return Status::Ok();
    for (const PlanWeight& w : plan_.weights) {
      std::vector<PlanWeightSlice> all = w.slices;
      all.insert(all.end(), w.scale_slices.begin(), w.scale_slices.end());
      for (const PlanWeightSlice& slice : all) {
        if (!slice.file.empty() && files.count(slice.file) == 0) {
          return Error("weight '" + w.name + "' is read from '" + slice.file +
                       "', which neither checkpoint_files nor packed_weight_files lists");
        }
      }
    }
    return Status::Ok();
  }

  // Each recorded tokenizer file is one of the names compile-model looks for, at most once.
  Status CheckTokenizerFiles() const {
    std::set<std::string> seen;
    for (size_t i = 0; i < plan_.tokenizer_files.size(); ++i) {
      const std::string& file = plan_.tokenizer_files[i].file;
      const bool known =
          std::any_of(std::begin(kPlanTokenizerFileNames), std::end(kPlanTokenizerFileNames),
                      [&](const char* name) { return file == name; });
      if (!known) {
        return Error("tokenizer_files[" + std::to_string(i) + "] is '" + file +
                     "', expected tokenizer.json, tokenizer_config.json or "
                     "generation_config.json");
      }
      if (!seen.insert(file).second) return Error("tokenizer_files lists '" + file + "' twice");
    }
    return Status::Ok();
  }

  Status CheckModel() const {
    const PlanModelInfo& m = plan_.model;
    for (const auto& [name, value] : {std::pair<const char*, int32_t>{"vocab_size", m.vocab_size},
                                      {"num_layers", m.num_layers},
                                      {"num_kv_heads", m.num_kv_heads},
                                      {"head_dim", m.head_dim},
                                      {"max_position_embeddings", m.max_position_embeddings}}) {
      if (value < 0) {
        return Error(std::string("model.") + name + " is " + std::to_string(value) +
                     ", expected >= 0");
      }
    }
    return Status::Ok();
  }

  // One entry per layer, each a known kind and cache dtype with positive dims
  // whose per-token bytes, summed over the layers, fit int64. Whether the
  // attention steps agree with them is runtime/program_check's.
  Status CheckKvLayers() const {
    const std::vector<PlanKvLayer>& layers = plan_.kv_layers;
    if (layers.size() != static_cast<size_t>(std::max(plan_.model.num_layers, 0))) {
      return Error("kv_layers has " + std::to_string(layers.size()) +
                   " entries, expected one per layer (model.num_layers is " +
                   std::to_string(plan_.model.num_layers) + ")");
    }
    int64_t total = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      const PlanKvLayer& l = layers[i];
      const std::string field = "kv_layers[" + std::to_string(i) + "]";
      if (static_cast<int>(l.kind) > static_cast<int>(kLastKvLayerKind)) {
        return Error(field + ".kind is " + EnumValue(l.kind) + ", expected 0.." +
                     EnumValue(kLastKvLayerKind) + " (key_value, latent)");
      }
      if (!IsKnown(l.dtype) || !IsKvCacheDType(l.dtype)) {
        return Error(field + ".dtype is " +
                     (IsKnown(l.dtype) ? std::string(DTypeName(l.dtype)) : EnumValue(l.dtype)) +
                     ", expected f32, f16 or bf16");
      }
      for (const auto& [name, value] :
           {std::pair<const char*, int32_t>{"num_kv_heads", l.num_kv_heads},
            {"head_dim", l.head_dim}}) {
        if (value <= 0) {
          return Error(field + "." + name + " is " + std::to_string(value) + ", expected > 0");
        }
      }
      if (l.window < 0) {
        return Error(field + ".window is " + std::to_string(l.window) +
                     ", expected >= 0 (0: no sliding window)");
      }
      const std::optional<int64_t> bytes = KvLayerBytesPerToken(l);
      if (!bytes || __builtin_add_overflow(total, *bytes, &total)) {
        return Error(field + " (" + std::to_string(l.num_kv_heads) + " KV heads of " +
                     std::to_string(l.head_dim) + ", " + DTypeName(l.dtype) +
                     "): the KV cache's bytes per token overflow int64");
      }
    }
    return Status::Ok();
  }

  // The runtime picks keys with these (KeyForStep divides by chunk_size).
  Status CheckKeyOptions() const {
    const KeySetOptions& o = plan_.key_options;
    for (const auto& [name, value] : {std::pair<const char*, int32_t>{"chunk_size", o.chunk_size},
                                      {"max_chunks", o.max_chunks},
                                      {"expert_parallel", o.expert_parallel},
                                      {"max_prefill_seqs", o.max_prefill_seqs}}) {
      if (value <= 0) {
        return Error(std::string("key_options.") + name + " is " + std::to_string(value) +
                     ", expected > 0");
      }
    }
    for (const auto& [name, buckets] :
         {std::pair<const char*, const std::vector<int32_t>*>{"decode_buckets", &o.decode_buckets},
          {"prefill_buckets", &o.prefill_buckets}}) {
      for (int32_t b : *buckets) {
        if (b <= 0) {
          return Error(std::string("key_options.") + name + " holds " + std::to_string(b) +
                       ", expected buckets > 0");
        }
      }
    }
    return Status::Ok();
  }

  Status CheckWeight(size_t index) const {
    const PlanWeight& w = plan_.weights[index];
    if (w.name.empty()) return Error("weight #" + std::to_string(index) + " has an empty name");
    const std::string what = "weight '" + w.name + "'";
    int64_t bytes = 0;
    MG_RETURN_IF_ERROR(CheckTensor([&] { return what; }, w.dtype, w.shape, &bytes));
    if (w.experts < 0) {
      return Error(what + " has experts " + std::to_string(w.experts) + ", expected >= 0");
    }
    if (w.row_offset < 0) {
      return Error(what + " has row_offset " + std::to_string(w.row_offset) + ", expected >= 0");
    }
    if (w.first_expert < 0 || (w.first_expert > 0 && !w.expert_slice)) {
      return Error(what + " has first_expert " + std::to_string(w.first_expert) +
                   ", expected >= 0, and 0 unless it is an expert slice");
    }
    const int64_t expected_slices = w.experts > 0 ? w.experts : 1;
    if (w.experts > 0 && (w.shape.empty() || w.shape[0] != w.experts)) {
      return Error(what + " is stacked over " + std::to_string(w.experts) +
                   " experts but has shape " + ShapeString(w.shape) + ", expected [" +
                   std::to_string(w.experts) + ", ...]");
    }
    if (static_cast<int64_t>(w.slices.size()) != expected_slices) {
      return Error(what + " has " + std::to_string(w.slices.size()) + " slices, expected " +
                   std::to_string(expected_slices) +
                   (w.experts > 0 ? " (one per expert)" : " (it is not stacked)"));
    }
    uint64_t total = 0;
    for (size_t s = 0; s < w.slices.size(); ++s) {
      const PlanWeightSlice& slice = w.slices[s];
      const std::string where = what + " slice " + std::to_string(s);
      if (slice.file.empty()) return Error(where + " names no file");
      uint64_t end = 0;
      if (__builtin_add_overflow(slice.offset, slice.bytes, &end) ||
          __builtin_add_overflow(total, slice.bytes, &total)) {
        return Error(where + ": offset " + std::to_string(slice.offset) + " + " +
                     std::to_string(slice.bytes) + " bytes overflows");
      }
    }
    if (total != static_cast<uint64_t>(bytes)) {
      return Error(what + ": its slices hold " + std::to_string(total) + " bytes, but " +
                   DTypeName(w.dtype) + " " + ShapeString(w.shape) + " is " +
                   std::to_string(bytes) + " bytes");
    }
    // Every expert slice is one [shape[1:]] tensor.
    for (size_t s = 0; s < w.slices.size(); ++s) {
      if (w.slices[s].bytes != w.slices[0].bytes) {
        return Error(what + " slice " + std::to_string(s) + " holds " +
                     std::to_string(w.slices[s].bytes) + " bytes, expected " +
                     std::to_string(w.slices[0].bytes) + " like slice 0");
      }
    }
    return CheckWeightQuant(w, what);
  }

  // A quantized weight: a known scheme of its dtype, positive blocks, and one scale slice of
  // the scale matrix's size per weight slice.
  Status CheckWeightQuant(const PlanWeight& w, const std::string& what) const {
    if (!w.quant.quantized()) {
      if (!w.scale_slices.empty() || IsQuantStorage(w.dtype)) {
        return Error(what + " is " + DTypeName(w.dtype) + " with " +
                     std::to_string(w.scale_slices.size()) +
                     " scale slices but names no quantization scheme");
      }
      return Status::Ok();
    }
    if (w.quant.scheme != QuantScheme::kFp8Block && w.quant.scheme != QuantScheme::kMxfp4 &&
        w.quant.scheme != QuantScheme::kInt8Block && w.quant.scheme != QuantScheme::kInt4Block) {
      return Error(what + " has quantization scheme " +
                   std::to_string(static_cast<int>(w.quant.scheme)) +
                   ", expected 1 (fp8_block), 2 (mxfp4), 3 (int8_block) or 4 (int4_block)");
    }
    if (w.dtype != QuantWeightDType(w.quant.scheme) || w.shape.size() < 2) {
      return Error(what + " is " + DTypeName(w.dtype) + " " + ShapeString(w.shape) + ", but " +
                   QuantSchemeName(w.quant.scheme) + " weights are " +
                   DTypeName(QuantWeightDType(w.quant.scheme)) + " [..., N, K]");
    }
    if (w.quant.block_rows < 1 || w.quant.block_cols < 1) {
      return Error(what + " has scale blocks " + std::to_string(w.quant.block_rows) + " x " +
                   std::to_string(w.quant.block_cols) + ", expected positive sizes");
    }
    // Two codes a byte: rows of K / 2 bytes, scales over whole rows of 32-column groups.
    if (IsNibbleStorage(w.dtype) &&
        (w.shape.back() % 32 != 0 || w.quant.block_rows != 1 || w.quant.block_cols % 32 != 0 ||
         (w.quant.scheme == QuantScheme::kMxfp4 && w.quant.block_cols != 32))) {
      return Error(what + " is " + DTypeName(w.dtype) + " " + ShapeString(w.shape) +
                   " with scale blocks " + std::to_string(w.quant.block_rows) + " x " +
                   std::to_string(w.quant.block_cols) +
                   ", expected K a multiple of 32 and blocks of 1 x 32 (mxfp4) or 1 x a multiple "
                   "of 32 (int4_block)");
    }
    if (w.scale_name.empty()) return Error(what + " names no scale tensor");
    if (w.scale_slices.size() != w.slices.size()) {
      return Error(what + " has " + std::to_string(w.scale_slices.size()) +
                   " scale slices, expected " + std::to_string(w.slices.size()) +
                   " (one per slice)");
    }
    const int64_t n = w.shape[w.shape.size() - 2], k = w.shape.back();
    const uint64_t want = static_cast<uint64_t>(w.quant.ScaleRows(n) * w.quant.ScaleCols(k)) *
                          DTypeBytes(QuantScaleDType(w.quant.scheme));
    for (size_t s = 0; s < w.scale_slices.size(); ++s) {
      const PlanWeightSlice& slice = w.scale_slices[s];
      uint64_t end = 0;
      if (slice.file.empty() || slice.bytes != want ||
          __builtin_add_overflow(slice.offset, slice.bytes, &end)) {
        return Error(what + " scale slice " + std::to_string(s) + " is '" + slice.file + "' @" +
                     std::to_string(slice.offset) + " (" + std::to_string(slice.bytes) +
                     " bytes), expected a file and " + std::to_string(want) + " bytes");
      }
    }
    return Status::Ok();
  }

  // `where` builds the argument's name; called only on error.
  template <typename Where>
  Status CheckArgRef(const ArgRef& ref, const KeyProgram& program, const Where& where) const {
    if (!IsKnown(ref.kind)) {
      return Error(where() + " has arg kind value " + EnumValue(ref.kind) +
                   ", expected 0 (arena), 1 (weight) or 2 (input)");
    }
    int64_t bytes = 0;
    MG_RETURN_IF_ERROR(CheckTensor(where, ref.dtype, ref.shape, &bytes));
    switch (ref.kind) {
      case ArgKind::kWeight: {
        if (ref.index < 0 || static_cast<size_t>(ref.index) >= plan_.weights.size()) {
          return Error(where() + " refers to weight index " + std::to_string(ref.index) +
                       ", expected 0 <= index < " + std::to_string(plan_.weights.size()) +
                       " (the plan's weight count)");
        }
        const PlanWeight& w = plan_.weights[ref.index];
        if (ref.dtype != w.dtype || ref.shape != w.shape) {
          return Error(where() + " reads weight '" + w.name + "' as " + DTypeName(ref.dtype) + " " +
                       ShapeString(ref.shape) + ", but the weight is " + DTypeName(w.dtype) + " " +
                       ShapeString(w.shape));
        }
        break;
      }
      case ArgKind::kArena: {
        int64_t end = 0;
        if (ref.arena_offset < 0 || __builtin_add_overflow(ref.arena_offset, bytes, &end) ||
            end > program.arena_bytes) {
          return Error(where() + " at arena offset " + std::to_string(ref.arena_offset) + " (" +
                       std::to_string(bytes) + " bytes) lies outside the arena of " +
                       std::to_string(program.arena_bytes) + " bytes");
        }
        // Kernels load and store whole elements.
        const int64_t element = static_cast<int64_t>(DTypeBytes(ref.dtype));
        if (element == 0) {
          return Error(where() + " is " + DTypeName(ref.dtype) +
                       " in the arena: that is a weight storage format, expected an "
                       "activation dtype");
        }
        if (ref.arena_offset % element != 0) {
          return Error(where() + " at arena offset " + std::to_string(ref.arena_offset) +
                       " is misaligned for " + DTypeName(ref.dtype) + ": expected a multiple of " +
                       std::to_string(element) + " bytes");
        }
        break;
      }
      case ArgKind::kInput:
        if (ref.index < 0) {
          return Error(where() + " refers to input index " + std::to_string(ref.index) +
                       ", expected >= 0");
        }
        break;
    }
    return Status::Ok();
  }

  Status CheckProgram(size_t index) const {
    const KeyProgram& p = plan_.programs[index];
    const SpecKey& k = p.key;
    if (!IsKnown(k.phase)) {
      return Error("program #" + std::to_string(index) + " has phase value " + EnumValue(k.phase) +
                   ", expected 0 (prefill) or 1 (decode)");
    }
    const std::string name = "program '" + k.ToString() + "'";
    if (k.token_bucket <= 0 || k.seq_bucket <= 0) {
      return Error(name + " has an empty bucket; expected tokens > 0 and seqs > 0");
    }
    if (k.moe_num_chunk < 1 || k.moe_num_chunk > k.max_moe_num_chunk) {
      return Error(name + " has a bad chunk count; expected 1 <= chunks <= max_chunks");
    }
    if (p.arena_bytes < 0) {
      return Error(name + " has arena_bytes " + std::to_string(p.arena_bytes) + ", expected >= 0");
    }
    if (p.rank < 0 || p.rank >= plan_.key_options.expert_parallel) {
      return Error(name + " is for rank " + std::to_string(p.rank) + ", expected 0 <= rank < " +
                   std::to_string(plan_.key_options.expert_parallel) +
                   " (key_options.expert_parallel)");
    }
    ArenaDataflow dataflow(*this);
    for (size_t s = 0; s < p.steps.size(); ++s) {
      const KernelStep& step = p.steps[s];
      const auto step_name = [&] {
        return name + " step " + std::to_string(s) + " (" + step.kernel + ")";
      };
      if (step.kernel.empty()) return Error(step_name() + " has no kernel name");
      if (step.ints.size() > static_cast<size_t>(kMaxKernelInts) ||
          step.floats.size() > static_cast<size_t>(kMaxKernelFloats)) {
        return Error(step_name() + " has " + std::to_string(step.ints.size()) + " ints and " +
                     std::to_string(step.floats.size()) + " floats; the kernel ABI takes at most " +
                     std::to_string(kMaxKernelInts) + " and " + std::to_string(kMaxKernelFloats));
      }
      if (step.op_index < -1) {
        return Error(step_name() + " has op_index " + std::to_string(step.op_index) +
                     ", expected >= -1");
      }
      for (size_t f = 0; f < step.floats.size(); ++f) {
        if (!std::isfinite(step.floats[f])) {
          return Error(step_name() + " float parameter " + std::to_string(f) + " is " +
                       std::to_string(step.floats[f]) + ", expected a finite number");
        }
      }
      for (size_t a = 0; a < step.inputs.size(); ++a) {
        MG_RETURN_IF_ERROR(CheckArgRef(
            step.inputs[a], p, [&] { return step_name() + " input " + std::to_string(a); }));
      }
      for (size_t a = 0; a < step.outputs.size(); ++a) {
        const auto out_name = [&] { return step_name() + " output " + std::to_string(a); };
        MG_RETURN_IF_ERROR(CheckArgRef(step.outputs[a], p, out_name));
        // Weights are mapped read-only and inputs are the runtime's.
        if (step.outputs[a].kind != ArgKind::kArena) {
          return Error(out_name() + " is not in the arena; kernels write only to the arena");
        }
      }
      MG_RETURN_IF_ERROR(dataflow.Step(s, step, step_name));
    }
    if (p.steps.empty()) {
      return Error(name + " has no steps; expected a program that computes the logits");
    }
    const auto logits_name = [&] { return name + " logits"; };
    MG_RETURN_IF_ERROR(CheckArgRef(p.logits, p, logits_name));
    const std::vector<int64_t> logits_shape = {k.seq_bucket, plan_.model.vocab_size};
    if (p.logits.kind != ArgKind::kArena || p.logits.shape != logits_shape) {
      return Error(logits_name() + " is " + ShapeString(p.logits.shape) +
                   (p.logits.kind == ArgKind::kArena ? " in" : " not in") +
                   " the arena, expected an arena tensor " + ShapeString(logits_shape) +
                   " ([seq_bucket, vocab_size])");
    }
    return dataflow.Logits(p.logits, logits_name);
  }

  // Replays a program's arena writes (DESIGN §6: every value has its own
  // arena range while it is live, memory-plan's invariant). Each arena input
  // must be exactly the output of the last step that wrote any of its bytes,
  // with that output's dtype and shape: this rejects reading bytes no step
  // wrote, a value overwritten (in part) while still live, and a step whose
  // outputs overlap its own inputs or each other. Zero-byte arguments take no
  // space and are skipped.
  class ArenaDataflow {
   public:
    explicit ArenaDataflow(const PlanValidator& validator) : v_(validator) {}

    template <typename StepName>
    Status Step(size_t index, const KernelStep& step, const StepName& step_name) {
      for (size_t a = 0; a < step.inputs.size(); ++a) {
        const ArgRef& in = step.inputs[a];
        if (in.kind != ArgKind::kArena || in.bytes() == 0) continue;
        MG_RETURN_IF_ERROR(
            CheckRead(in, [&] { return step_name() + " input " + std::to_string(a); }));
      }
      for (size_t a = 0; a < step.outputs.size(); ++a) {
        const ArgRef& out = step.outputs[a];
        if (out.bytes() == 0) continue;
        const auto out_name = [&] { return step_name() + " output " + std::to_string(a); };
        for (size_t i = 0; i < step.inputs.size(); ++i) {
          const ArgRef& in = step.inputs[i];
          if (in.kind == ArgKind::kArena && in.bytes() > 0 && Overlap(in, out)) {
            return v_.Error(out_name() + " " + Range(out) + " overlaps input " + std::to_string(i) +
                            " " + Range(in) +
                            "; expected outputs that do not alias the step's inputs");
          }
        }
        for (size_t o = 0; o < a; ++o) {
          if (step.outputs[o].bytes() > 0 && Overlap(step.outputs[o], out)) {
            return v_.Error(out_name() + " " + Range(out) + " overlaps output " +
                            std::to_string(o) + " " + Range(step.outputs[o]));
          }
        }
      }
      for (size_t a = 0; a < step.outputs.size(); ++a) {
        if (step.outputs[a].bytes() > 0) Write(step.outputs[a], index, a, step.kernel);
      }
      return Status::Ok();
    }

    template <typename What>
    Status Logits(const ArgRef& logits, const What& what) const {
      return CheckRead(logits, what);
    }

   private:
    struct Written {
      int64_t end = 0;
      size_t step = 0;
      size_t output = 0;
      std::string kernel;
      DType dtype = DType::kF32;
      std::vector<int64_t> shape;
    };

    static bool Overlap(const ArgRef& a, const ArgRef& b) {
      return a.arena_offset < b.arena_offset + b.bytes() &&
             b.arena_offset < a.arena_offset + a.bytes();
    }
    static std::string Range(const ArgRef& ref) {
      return "[" + std::to_string(ref.arena_offset) + ", " +
             std::to_string(ref.arena_offset + ref.bytes()) + ")";
    }
    static std::string Writer(const Written& w) {
      return "step " + std::to_string(w.step) + " (" + w.kernel + ") output " +
             std::to_string(w.output);
    }

    template <typename What>
    Status CheckRead(const ArgRef& ref, const What& what) const {
      const int64_t begin = ref.arena_offset, end = begin + ref.bytes();
      const auto it = live_.find(begin);
      if (it != live_.end() && it->second.end == end && it->second.dtype == ref.dtype &&
          it->second.shape == ref.shape) {
        return Status::Ok();
      }
      // Say what holds those bytes instead.
      auto overlapping = live_.end();
      for (auto w = live_.begin(); w != live_.end() && w->first < end; ++w) {
        if (w->second.end > begin) {
          overlapping = w;
          break;
        }
      }
      if (it != live_.end()) {
        return v_.Error(what() + " " + Range(ref) + " reads " + Writer(it->second) + " as " +
                        DTypeName(ref.dtype) + " " + ShapeString(ref.shape) + ", but it wrote " +
                        DTypeName(it->second.dtype) + " " + ShapeString(it->second.shape) +
                        " ending at " + std::to_string(it->second.end));
      }
      if (overlapping != live_.end()) {
        return v_.Error(what() + " " + Range(ref) +
                        " is not the output of one earlier step: " + Writer(overlapping->second) +
                        " wrote [" + std::to_string(overlapping->first) + ", " +
                        std::to_string(overlapping->second.end) +
                        ") over it; expected a live value that no later output overwrote");
      }
      return v_.Error(what() + " " + Range(ref) +
                      " reads arena bytes that no earlier step wrote (or that a later output "
                      "overwrote); expected the output of an earlier step");
    }

    void Write(const ArgRef& ref, size_t step, size_t output, const std::string& kernel) {
      const int64_t begin = ref.arena_offset, end = begin + ref.bytes();
      // Values this write overlaps are dead from here on, whole.
      auto it = live_.lower_bound(begin);
      if (it != live_.begin() && std::prev(it)->second.end > begin) --it;
      while (it != live_.end() && it->first < end)
        it = live_.erase(it);
      live_[begin] = Written{end, step, output, kernel, ref.dtype, ref.shape};
    }

    const PlanValidator& v_;
    std::map<int64_t, Written> live_;  // by arena offset; disjoint
  };

  const Plan& plan_;
  std::string_view source_name_;
};

// The root of `bytes` (a flatbuffer without footer) once the FlatBuffers
// verifier accepts it; `aligned` keeps an aligned copy alive if one is needed.
// DataLoss without the source name (callers add it).
Status VerifiedRoot(std::string_view bytes, std::vector<uint64_t>* aligned, const fb::Plan** root) {
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return DataLoss("the flatbuffer is corrupt: " + std::to_string(bytes.size()) +
                    " bytes is over the 2 GiB FlatBuffers limit");
  }
  if (bytes.size() % kPlanAlignment != 0) {
    return DataLoss("the flatbuffer is corrupt or truncated: its size " +
                    std::to_string(bytes.size()) + " is not a multiple of " +
                    std::to_string(kPlanAlignment) + " bytes as every plan's is");
  }
  // FlatBuffers reads scalars in place: give it an aligned copy if need be.
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (reinterpret_cast<uintptr_t>(data) % kPlanAlignment != 0) {
    aligned->resize(bytes.size() / sizeof(uint64_t));
    std::memcpy(aligned->data(), bytes.data(), bytes.size());
    data = reinterpret_cast<const uint8_t*>(aligned->data());
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = kMaxTables;
  flatbuffers::Verifier verifier(data, bytes.size(), options);
  if (!fb::VerifyPlanBuffer(verifier)) {
    return DataLoss(
        "the flatbuffer is corrupt or truncated (the FlatBuffers verifier rejected it); "
        "expected a complete plan file as compile-model writes it");
  }
  *root = fb::GetPlan(data);
  return Status::Ok();
}

}  // namespace

std::string SerializePlan(const Plan& plan) {
  Builder b;
  // Makes the finished size a multiple of kPlanAlignment whatever the plan holds.
  b.TrackMinAlign(kPlanAlignment);

  const PlanModelInfo& m = plan.model;
  const auto family = b.CreateString(m.family);
  const auto config_json = b.CreateString(m.config_json);
  const auto model = fb::CreatePlanModelInfo(b, family, config_json, m.vocab_size, m.num_layers,
                                             m.num_kv_heads, m.head_dim, m.max_position_embeddings);
  const auto model_dir = b.CreateString(plan.model_dir);

  std::vector<flatbuffers::Offset<fb::PlanWeight>> weight_offsets;
  weight_offsets.reserve(plan.weights.size());
  for (const PlanWeight& w : plan.weights)
    weight_offsets.push_back(WriteWeight(b, w));
  const auto weights = b.CreateVector(weight_offsets);

  const KeySetOptions& o = plan.key_options;
  const auto decode_buckets = b.CreateVector(o.decode_buckets);
  const auto prefill_buckets = b.CreateVector(o.prefill_buckets);
  const auto key_options =
      fb::CreateKeySetOptions(b, o.prefill, o.decode, o.chunk_size, o.max_chunks, o.expert_parallel,
                              decode_buckets, prefill_buckets, o.max_prefill_seqs);

  std::vector<flatbuffers::Offset<fb::KeyProgram>> program_offsets;
  program_offsets.reserve(plan.programs.size());
  for (const KeyProgram& p : plan.programs)
    program_offsets.push_back(WriteProgram(b, p));
  const auto programs = b.CreateVector(program_offsets);

  const auto source_ir = b.CreateString(plan.source_ir);
  const auto compile_options = b.CreateString(plan.compile_options);
  const auto file_list = [&](const std::vector<PlanCheckpointFile>& files) {
    std::vector<flatbuffers::Offset<fb::PlanCheckpointFile>> offsets;
    offsets.reserve(files.size());
    for (const PlanCheckpointFile& f : files) {
      const auto name = b.CreateString(f.file);
      offsets.push_back(
          fb::CreatePlanCheckpointFile(b, name, f.bytes, f.mtime_ns, f.sampled_hash, f.full_hash));
    }
    return b.CreateVector(offsets);
  };
  const auto checkpoint_files = file_list(plan.checkpoint_files);
  const auto packed_weight_files = file_list(plan.packed_weight_files);
  std::vector<flatbuffers::Offset<fb::PlanTokenizerFile>> tokenizer_file_offsets;
  for (const PlanTokenizerFile& f : plan.tokenizer_files) {
    tokenizer_file_offsets.push_back(
        fb::CreatePlanTokenizerFile(b, b.CreateString(f.file), f.full_hash));
  }
  const auto tokenizer_files = b.CreateVector(tokenizer_file_offsets);
  std::vector<flatbuffers::Offset<fb::PlanKvLayer>> kv_layer_offsets;
  kv_layer_offsets.reserve(plan.kv_layers.size());
  for (const PlanKvLayer& l : plan.kv_layers) {
    kv_layer_offsets.push_back(fb::CreatePlanKvLayer(b, static_cast<fb::KvLayerKind>(l.kind),
                                                     l.num_kv_heads, l.head_dim, l.window,
                                                     ToFb(l.dtype)));
  }
  const auto kv_layers = b.CreateVector(kv_layer_offsets);
  const auto root =
      fb::CreatePlan(b, plan.format_version, model, model_dir, weights, key_options, programs,
                     source_ir, compile_options, plan.keys_share_one_arena, checkpoint_files,
                     plan.op_set_hash, tokenizer_files, kv_layers, packed_weight_files);
  fb::FinishPlanBuffer(b, root);
  return AppendPlanChecksum(
      std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()));
}

std::string AppendPlanChecksum(std::string flatbuffer) {
  const auto length = static_cast<uint32_t>(flatbuffer.size());
  flatbuffer.append(kFooterMagic, sizeof(kFooterMagic));
  flatbuffer.append(reinterpret_cast<const char*>(&length), sizeof(length));
  const uint64_t hash = HashBytes(flatbuffer);
  flatbuffer.append(reinterpret_cast<const char*>(&hash), sizeof(hash));
  return flatbuffer;
}

StatusOr<Plan> DeserializePlan(std::string_view bytes, std::string_view source_name) {
  const std::string source(source_name);
  const std::string expected_id = fb::PlanIdentifier();
  constexpr size_t kHeaderBytes =
      sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength;
  if (bytes.size() < kHeaderBytes) {
    return DataLoss(source + ": not a moegraph plan: " + std::to_string(bytes.size()) +
                    " bytes is too short for the " + std::to_string(kHeaderBytes) +
                    "-byte header with file identifier '" + expected_id + "'");
  }
  const std::string_view id =
      bytes.substr(sizeof(flatbuffers::uoffset_t), flatbuffers::kFileIdentifierLength);
  if (id != expected_id) {
    std::string printable;
    for (char c : id) {
      if (c >= 0x20 && c < 0x7f) {
        printable += c;
      } else {
        static constexpr char kHex[] = "0123456789abcdef";
        const auto u = static_cast<unsigned char>(c);
        printable += std::string("\\x") + kHex[u >> 4] + kHex[u & 15];
      }
    }
    return DataLoss(source + ": not a moegraph plan: file identifier is '" + printable +
                    "', expected '" + expected_id + "'");
  }
  // The checksum first: an edited file is named as such, whatever the edit broke.
  std::vector<uint64_t> aligned;
  const fb::Plan* old_root = nullptr;
  if (bytes.size() < kHeaderBytes + kPlanFooterBytes ||
      std::memcmp(bytes.data() + bytes.size() - kPlanFooterBytes, kFooterMagic,
                  sizeof(kFooterMagic)) != 0) {
    // A plan of a format before checksums is refused by its version.
    if (VerifiedRoot(bytes, &aligned, &old_root).ok()) {
      MG_RETURN_IF_ERROR(CheckVersion(old_root->format_version(), source_name));
    }
    return DataLoss(source + ": the plan has no checksum footer ('MGCS' in its last " +
                    std::to_string(kPlanFooterBytes) +
                    " bytes): the file is truncated or was not written by a plan writer; "
                    "expected a complete plan file as compile-model writes it");
  }
  const char* footer = bytes.data() + bytes.size() - kPlanFooterBytes;
  const size_t flatbuffer_bytes = bytes.size() - kPlanFooterBytes;
  if (LoadU32(footer + sizeof(kFooterMagic)) != flatbuffer_bytes) {
    return DataLoss(source + ": the checksum footer records a " +
                    std::to_string(LoadU32(footer + sizeof(kFooterMagic))) +
                    "-byte flatbuffer, but " + std::to_string(flatbuffer_bytes) +
                    " bytes precede it: the file was truncated or edited after it was written");
  }
  const uint64_t stored = LoadU64(footer + kFooterHashOffset);
  const uint64_t computed = HashBytes(bytes.data(), bytes.size() - sizeof(uint64_t));
  if (stored != computed) {
    return DataLoss(source + ": checksum mismatch (XXH64 of the file is " + FormatHash(computed) +
                    ", its footer records " + FormatHash(stored) +
                    "): the plan was changed after it was written; recompile it");
  }
  const fb::Plan* root_ptr = nullptr;
  MG_RETURN_IF_ERROR(
      VerifiedRoot(bytes.substr(0, flatbuffer_bytes), &aligned, &root_ptr).WithContext(source));
  const fb::Plan& root = *root_ptr;
  MG_RETURN_IF_ERROR(CheckVersion(root.format_version(), source_name));
  Plan plan;
  std::string missing;
  if (!ReadPlan(root, &plan, &missing)) {
    return DataLoss(source + ": required field '" + missing + "' is missing; every version-" +
                    std::to_string(root.format_version()) + " plan has it (the file is corrupt)");
  }
  MG_RETURN_IF_ERROR(ValidatePlan(plan, source_name));
  return plan;
}

Status ValidatePlan(const Plan& plan, std::string_view source_name) {
  return PlanValidator(plan, source_name).Run();
}

Status WritePlanFile(const Plan& plan, const std::string& path) {
  MG_RETURN_IF_ERROR(ValidatePlan(plan, path));
  return WriteFileAtomically(path, SerializePlan(plan));
}

StatusOr<Plan> ReadPlanFile(const std::string& path) {
  MG_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return DeserializePlan(bytes, path);
}

}  // namespace moegraph
