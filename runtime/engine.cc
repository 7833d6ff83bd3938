// Engine: load, bind, capture, step.
#include "runtime/engine.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <set>

#include "ir/op_registry.h"
#include "plan/collectives.h"
#include "plan/plan_file.h"
#include "runtime/program_check.h"
#include "support/hash.h"
#include "support/log.h"
#include "support/memory.h"
#include "support/strings.h"

namespace moegraph {

// ---- Device backends ---------------------------------------------------------
//
// The host side stays as on the CPU (mmapped weights, KvCache bookkeeping,
// ForwardMetaBuffers filled by Step); DeviceState holds the device copies the
// kernels read. Per step, the host ForwardMeta arrays and tokens are packed
// into one staging block and uploaded with one copy on the backend's stream,
// outside any capture, before the replay.

struct Engine::DeviceState {
  std::vector<std::byte*> allocations;  // backend memory, freed by ~Engine
  std::vector<TensorArg> weights;       // device TensorArgs, by weight-table index
  std::vector<KvLayerView> kv_layers;   // host array of the device layers' views
  KvCacheView kv;                       // the host view's dims, kv_layers
  std::byte* meta = nullptr;            // device: ForwardMetaView, then its arrays
  std::vector<std::byte> staging;       // host image of `meta`
  // Byte offsets of the token ids and of each kMetaArrays entry in `meta` /
  // `staging`, with their element counts.
  struct Array {
    size_t offset = 0;
    size_t count = 0;
  };
  Array tokens;
  Array arrays[std::size(kMetaArrays)];
};

StatusOr<std::unique_ptr<Engine>> Engine::Open(const std::string& plan_path,
                                               const EngineOptions& options) {
  MG_ASSIGN_OR_RETURN(Plan plan, ReadPlanFile(plan_path));
  EngineOptions with_dir = options;
  if (with_dir.plan_dir.empty()) {
    with_dir.plan_dir = std::filesystem::path(plan_path).parent_path().string();
  }
  return Load(std::move(plan), with_dir);
}

namespace {

// The tokens a batch feeds.
int32_t BatchTokens(const std::vector<SequenceStep>& batch) {
  int32_t n = 0;
  for (const SequenceStep& s : batch)
    n += static_cast<int32_t>(s.tokens.size());
  return n;
}

// What every rank's plan must agree on: its layout, model, op set, keys and each rank's
// collectives (plan/collectives.h), hashed.
uint64_t RanksFingerprint(const Plan& plan) {
  std::string text = std::to_string(plan.key_options.expert_parallel) + "|" + plan.model.family +
                     "|" + std::to_string(plan.model.vocab_size) + "|" +
                     std::to_string(plan.op_set_hash);
  for (const KeyProgram& p : plan.programs) {
    text += "|" + std::to_string(p.rank) + " " + p.key.ToString();
    for (const std::string& c : CollectiveSequence(p))
      text += ";" + c;
  }
  return HashBytes(text);
}

}  // namespace

Status AgreeAcrossRanks(Communicator& comm, const Status& local, int64_t* agreed,
                        size_t num_agreed) {
  const int ranks = comm.world_size(), rank = comm.rank();
  // values[0]: ranks - (the lowest failing rank), 0 when none failed; then the caller's.
  std::vector<int64_t> values(1 + num_agreed);
  values[0] = local.ok() ? 0 : ranks - rank;
  for (size_t i = 0; i < num_agreed; ++i)
    values[1 + i] = agreed[i];
  MG_RETURN_IF_ERROR(
      comm.AllReduceMaxHost(values.data(), values.size()).WithContext("expert-parallel agreement"));
  for (size_t i = 0; i < num_agreed; ++i)
    agreed[i] = values[1 + i];
  if (values[0] == 0) return Status::Ok();
  const int failed = ranks - static_cast<int>(values[0]);
  // The failing rank's code and message, to every rank.
  constexpr size_t kMessageBytes = 1024;
  std::vector<char> mine(kMessageBytes, '\0'), all(kMessageBytes * static_cast<size_t>(ranks));
  if (!local.ok()) {
    mine[0] = static_cast<char>(local.code());
    local.message().copy(mine.data() + 1, kMessageBytes - 2);
  }
  MG_RETURN_IF_ERROR(comm.AllGatherHost(mine.data(), all.data(), kMessageBytes)
                         .WithContext("expert-parallel error exchange"));
  const char* theirs = all.data() + kMessageBytes * static_cast<size_t>(failed);
  const std::string message(theirs + 1, strnlen(theirs + 1, kMessageBytes - 1));
  return Status(static_cast<StatusCode>(theirs[0]),
                "rank " + std::to_string(failed) + " of " + std::to_string(ranks) + ": " + message);
}

StatusOr<std::unique_ptr<Engine>> Engine::Load(Plan plan, const EngineOptions& options) {
  Communicator* comm = options.communicator;
  if (comm == nullptr || comm->world_size() <= 1) return LoadOnThisRank(std::move(plan), options);
  // Every rank takes part in the agreement below whatever happened to its own load, so a rank
  // that fails (its files, its memory, another plan) fails every rank instead of leaving
  // them waiting for it in their first step.
  const uint64_t fingerprint = RanksFingerprint(plan);
  StatusOr<std::unique_ptr<Engine>> engine = LoadOnThisRank(std::move(plan), options);
  Status loaded = engine.status();
  std::vector<uint64_t> prints(static_cast<size_t>(comm->world_size()));
  MG_RETURN_IF_ERROR(comm->AllGatherHost(&fingerprint, prints.data(), sizeof(fingerprint))
                         .WithContext("expert-parallel load agreement"));
  for (size_t r = 1; r < prints.size() && loaded.ok(); ++r) {
    if (prints[r] != prints[0]) {
      loaded = FailedPrecondition(
          "rank " + std::to_string(r) +
          " opened a plan that is not rank 0's (another layout, "
          "model, op set, key set or collectives): every rank must open the same plan");
    }
  }
  MG_RETURN_IF_ERROR(moegraph::AgreeAcrossRanks(*comm, loaded));
  return engine;
}

StatusOr<std::unique_ptr<Engine>> Engine::LoadOnThisRank(Plan plan, const EngineOptions& options) {
  if (plan.programs.empty()) return InvalidArgument("the plan holds no keys");
  MG_RETURN_IF_ERROR(CheckPlanPrograms(plan));
  const int32_t ranks = plan.key_options.expert_parallel;
  const Communicator* comm = options.communicator;
  if (ranks > 1 && (comm == nullptr || comm->world_size() != ranks)) {
    return FailedPrecondition(
        "the plan is for " + std::to_string(ranks) + " expert-parallel ranks (compile-model --ep " +
        std::to_string(ranks) + ") but " +
        (comm == nullptr ? std::string("no communicator was given")
                         : "the " + std::string(comm->kind()) + " communicator has " +
                               std::to_string(comm->world_size()) + " ranks") +
        ": run it as `mpirun -np " + std::to_string(ranks) +
        " run-model ...`, or open it with a communicator of that many ranks");
  }
  if (ranks == 1 && comm != nullptr && comm->world_size() > 1) {
    return FailedPrecondition("the plan is for one rank but the " + std::string(comm->kind()) +
                              " communicator has " + std::to_string(comm->world_size()) +
                              " ranks: compile it with --ep " + std::to_string(comm->world_size()) +
                              ", or run one process");
  }
  if (options.kv_block_size <= 0) return InvalidArgument("KV block size must be > 0");
  int32_t max_tokens = 0, max_seqs = 0;
  for (const KeyProgram& p : plan.programs) {
    max_tokens = std::max(max_tokens, p.key.token_bucket);
    max_seqs = std::max(max_seqs, p.key.seq_bucket);
  }
  // Every size below comes from the plan: overflow-checked, in 64 bits. The
  // cache's geometry is the plan's kv_layers, one entry per layer.
  const PlanModelInfo& m = plan.model;
  if (plan.kv_layers.empty()) {
    return InvalidArgument("the plan declares no KV-cache layers (kv_layers is empty)");
  }
  KvCacheConfig kv_config;
  kv_config.layers = plan.kv_layers;
  kv_config.block_size = options.kv_block_size;
  // Sliding-window layers keep each sequence in a ring (one per sequence a
  // step can hold), sized for the largest token bucket; full layers page.
  kv_config.num_rings = max_seqs;
  kv_config.max_step_tokens = max_tokens;
  // The budget counts the bytes the layers really store, in their dtypes: the
  // rings first, the rest buys blocks of the full layers.
  MG_ASSIGN_OR_RETURN(
      const uint64_t block_bytes,
      KvCache::BlockBytes(kv_config.layers, options.kv_block_size, kv_config.max_step_tokens));
  MG_ASSIGN_OR_RETURN(const uint64_t ring_bytes_per_seq, KvCache::RingBytes(kv_config));
  uint64_t ring_bytes = 0;
  if (__builtin_mul_overflow(ring_bytes_per_seq, static_cast<uint64_t>(std::max(max_seqs, 0)),
                             &ring_bytes)) {
    return ResourceExhausted("the plan's sliding-window KV rings overflow 64 bits");
  }
  const int64_t max_positions = std::max<int64_t>(m.max_position_embeddings, 1);
  const int64_t blocks_per_full_seq =
      (max_positions + options.kv_block_size - 1) / options.kv_block_size;
  uint64_t budget = options.kv_cache_bytes;
  if (budget == 0) {
    budget = block_bytes > 0 ? DefaultKvCacheBytes(max_seqs, blocks_per_full_seq, block_bytes,
                                                   PhysicalMemoryBytes())
                             : 0;
    if (__builtin_add_overflow(budget, ring_bytes, &budget)) budget = UINT64_MAX;
  }
  if (budget < ring_bytes) {
    return InvalidArgument("KV cache budget of " + FormatBytes(budget) +
                           " is less than the sliding-window rings' " + FormatBytes(ring_bytes));
  }
  // Without full layers the blocks are bookkeeping only (no bytes).
  kv_config.num_blocks = static_cast<int32_t>(
      std::min<uint64_t>(block_bytes > 0 ? (budget - ring_bytes) / block_bytes
                                         : static_cast<uint64_t>(std::max(max_seqs, 1)) *
                                               static_cast<uint64_t>(blocks_per_full_seq),
                         uint64_t{1} << 30));
  if (kv_config.num_blocks < 1) {
    return InvalidArgument("KV cache budget of " + FormatBytes(budget) + " holds no block of " +
                           FormatBytes(block_bytes));
  }
  // A sequence can hold no more blocks than its positions need, nor than the
  // cache has: the block tables are sized by the smaller, not by
  // max_position_embeddings alone (which a plan may set to 2^31 - 1).
  const auto max_blocks_per_seq =
      static_cast<int32_t>(std::min<int64_t>(blocks_per_full_seq, kv_config.num_blocks));
  MG_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackendByName(options));
  if (ranks > 1 && !backend->host_memory()) {
    return Unimplemented(
        "an expert-parallel plan runs on CPU ranks (backend cpu, under mpirun): "
        "its ep_dispatch / ep_combine exchange counts on the host, which no "
        "captured CUDA graph may wait for, and GPU collectives over NCCL are "
        "not built yet");
  }
  // A device backend keeps the cache data on the device (InitDevice); the
  // host keeps only the block bookkeeping.
  kv_config.allocate_storage = backend->host_memory();
  MG_ASSIGN_OR_RETURN(KvCache kv, KvCache::Create(kv_config));
  MG_ASSIGN_OR_RETURN(ForwardMetaBuffers meta,
                      ForwardMetaBuffers::Create(max_tokens, max_seqs, max_blocks_per_seq));
  std::unique_ptr<Engine> engine(
      new Engine(std::move(plan), options, std::move(backend), std::move(kv), std::move(meta)));
  MG_RETURN_IF_ERROR(engine->BindWeights());
  const int64_t arena_bytes = engine->plan_.max_arena_bytes();
  StatusOr<std::byte*> arena = engine->backend_->Allocate(static_cast<size_t>(arena_bytes));
  if (!arena.ok()) {
    return ResourceExhausted("cannot allocate the step arena of " + std::to_string(arena_bytes) +
                             " bytes (the largest key's arena_bytes): " + arena.status().message());
  }
  engine->arena_ = *arena;
  engine->arena_bytes_ = static_cast<uint64_t>(engine->plan_.max_arena_bytes());
  engine->bindings_.arena = engine->arena_;
  engine->bindings_.arena_bytes = engine->arena_bytes_;
  if (!engine->backend_->host_memory()) MG_RETURN_IF_ERROR(engine->InitDevice());
  MG_RETURN_IF_ERROR(engine->CaptureAll());
  return engine;
}

Engine::Engine(Plan plan, const EngineOptions& options, std::unique_ptr<Backend> backend,
               KvCache kv, ForwardMetaBuffers meta)
    : plan_(std::move(plan)),
      options_(options),
      backend_(std::move(backend)),
      kv_(std::move(kv)),
      meta_(std::move(meta)) {
  bindings_.weights = &weights_;
  bindings_.inputs = {const_cast<int32_t*>(meta_.tokens())};
  bindings_.meta = &meta_.view();
  bindings_.kv = &kv_.view();
  bindings_.num_threads = options.num_threads > 0 ? options.num_threads : omp_get_max_threads();
  bindings_.comm = options.communicator;
  rank_ = options.communicator != nullptr ? options.communicator->rank() : 0;
}

Engine::~Engine() {
  captured_.clear();  // graphs first: they point into everything below
  if (device_) {
    for (std::byte* p : device_->allocations)
      backend_->Free(p);
  }
  if (arena_) backend_->Free(arena_);
}

namespace {

size_t AlignUp(size_t bytes, size_t alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

}  // namespace

uint64_t DefaultKvCacheBytes(int64_t max_seqs, int64_t blocks_per_seq, uint64_t block_bytes,
                             uint64_t physical_memory_bytes) {
  // Saturating: a plan may declare 2^31 - 1 positions.
  uint64_t blocks = 0, bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(std::max<int64_t>(max_seqs, 1)),
                             static_cast<uint64_t>(std::max<int64_t>(blocks_per_seq, 1)),
                             &blocks) ||
      __builtin_mul_overflow(blocks, block_bytes, &bytes)) {
    bytes = UINT64_MAX;
  }
  const uint64_t cap =
      physical_memory_bytes > 0 ? physical_memory_bytes / 4 : kKvCacheFallbackBytes;
  return std::min(bytes, std::max(cap, block_bytes));
}

StatusOr<std::unique_ptr<Backend>> CreateBackendByName(const EngineOptions& options) {
  if (options.backend == "cpu") return CreateCpuBackend();
  if (options.backend == "cpu-reference") {
    CpuBackendOptions cpu;
    cpu.reference_kernels_only = true;
    return CreateCpuBackend(cpu);
  }
  if (options.backend == "cuda") return CreateCudaBackend(options.device);
  return InvalidArgument("unknown backend '" + options.backend +
                         "' (expected cpu, cpu-reference or cuda)");
}

Status Engine::InitDevice() {
  device_ = std::make_unique<DeviceState>();
  DeviceState& d = *device_;
  auto allocate = [&](size_t bytes, const char* what) -> StatusOr<std::byte*> {
    StatusOr<std::byte*> p = backend_->Allocate(bytes);
    if (!p.ok()) {
      return ResourceExhausted("cannot allocate " + std::string(what) + " on the device (" +
                               std::to_string(bytes) + " bytes): " + p.status().message());
    }
    d.allocations.push_back(*p);
    return *p;
  };

  // Weights: every slice 256-byte aligned in one allocation, then the device
  // arrays of expert slice pointers for the stacked ones.
  size_t slice_bytes = 0, num_pointers = 0;
  for (const PlanWeight& pw : plan_.weights) {
    for (const PlanWeightSlice& slice : pw.slices)
      slice_bytes += AlignUp(slice.bytes, 256);
    for (const PlanWeightSlice& slice : pw.scale_slices)
      slice_bytes += AlignUp(slice.bytes, 256);
  }
  for (const TensorArg& w : weights_) {
    if (w.expert_data != nullptr) num_pointers += static_cast<size_t>(w.shape[0]);
    if (w.expert_scales != nullptr) num_pointers += static_cast<size_t>(w.shape[0]);
  }
  MG_ASSIGN_OR_RETURN(std::byte * block,
                      allocate(slice_bytes + num_pointers * sizeof(void*), "the weights"));
  std::vector<const void*> pointers;
  pointers.reserve(num_pointers);
  size_t at = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    const TensorArg& host = weights_[i];
    const PlanWeight& pw = plan_.weights[i];
    TensorArg device = host;
    const bool stacked = host.expert_data != nullptr;
    if (stacked && static_cast<int64_t>(pw.slices.size()) != host.shape[0]) {
      return Internal("weight '" + pw.name + "' has " + std::to_string(pw.slices.size()) +
                      " slices for " + std::to_string(host.shape[0]) + " experts");
    }
    if (!stacked && pw.slices.size() != 1) {
      return Internal("weight '" + pw.name + "' has " + std::to_string(pw.slices.size()) +
                      " slices but is not stacked");
    }
    const size_t first_pointer = pointers.size();
    for (size_t s = 0; s < pw.slices.size(); ++s) {
      const void* src = stacked ? host.expert_data[s] : host.data;
      MG_RETURN_IF_ERROR(backend_->Upload(block + at, src, pw.slices[s].bytes)
                             .WithContext("uploading weight '" + pw.name + "'"));
      if (s == 0) device.data = block + at;
      if (stacked) pointers.push_back(block + at);
      at += AlignUp(pw.slices[s].bytes, 256);
    }
    if (stacked) {
      device.expert_data =
          reinterpret_cast<const void* const*>(block + slice_bytes) + first_pointer;
    }
    // A quantized weight's scales: one slice per weight slice, placed the same way.
    if (host.quant.quantized()) {
      if (pw.scale_slices.size() != pw.slices.size()) {
        return Internal("weight '" + pw.name + "' has " + std::to_string(pw.scale_slices.size()) +
                        " scale slices for " + std::to_string(pw.slices.size()) + " slices");
      }
      const size_t first_scale_pointer = pointers.size();
      for (size_t s = 0; s < pw.scale_slices.size(); ++s) {
        const void* src = stacked ? host.expert_scales[s] : host.scales;
        MG_RETURN_IF_ERROR(backend_->Upload(block + at, src, pw.scale_slices[s].bytes)
                               .WithContext("uploading the scales of weight '" + pw.name + "'"));
        if (s == 0) device.scales = block + at;
        if (stacked) pointers.push_back(block + at);
        at += AlignUp(pw.scale_slices[s].bytes, 256);
      }
      if (stacked) {
        device.expert_scales =
            reinterpret_cast<const void* const*>(block + slice_bytes) + first_scale_pointer;
      }
    }
    d.weights.push_back(device);
  }
  MG_RETURN_IF_ERROR(
      backend_->Upload(block + slice_bytes, pointers.data(), pointers.size() * sizeof(void*)));

  // KV cache: the host KvCache keeps the block tables; the data lives here,
  // laid out as the host's would be (per-layer offsets, each layer's dtype).
  MG_ASSIGN_OR_RETURN(std::byte * kv_data,
                      allocate(static_cast<size_t>(kv_.bytes()), "the KV cache"));
  d.kv_layers = kv_.LayerViewsAt(kv_data);
  d.kv = kv_.view();
  d.kv.layers = d.kv_layers.data();

  // ForwardMeta: the view struct first, then every array, 256-byte aligned.
  const size_t tokens = meta_.max_tokens(), seqs = meta_.max_seqs();
  const size_t blocks_per_seq = static_cast<size_t>(meta_.view().max_blocks_per_seq);
  size_t bytes = AlignUp(sizeof(ForwardMetaView), 256);
  auto place = [&](DeviceState::Array& array, size_t count) {
    array.offset = bytes;
    array.count = count;
    bytes += AlignUp(count * sizeof(int32_t), 256);
  };
  place(d.tokens, tokens);
  for (size_t i = 0; i < std::size(kMetaArrays); ++i) {
    place(d.arrays[i], MetaArrayLength(kMetaArrays[i].extent, tokens, seqs, blocks_per_seq));
  }
  MG_ASSIGN_OR_RETURN(d.meta, allocate(bytes, "the ForwardMeta buffers"));
  d.staging.assign(bytes, std::byte{0});

  bindings_.weights = &d.weights;
  bindings_.inputs = {d.meta + d.tokens.offset};
  bindings_.meta = reinterpret_cast<const ForwardMetaView*>(d.meta);
  bindings_.kv = &d.kv;
  // The capture's warm-up reads the (empty) ForwardMeta: upload it now.
  return UploadStepInputs();
}

Status Engine::UploadStepInputs() {
  DeviceState& d = *device_;
  ForwardMetaView view = meta_.view();  // scalars; the pointers are replaced below
  auto pack = [&](const DeviceState::Array& array, const int32_t* host) {
    std::memcpy(d.staging.data() + array.offset, host, array.count * sizeof(int32_t));
    return reinterpret_cast<const int32_t*>(d.meta + array.offset);
  };
  pack(d.tokens, meta_.tokens());
  for (size_t i = 0; i < std::size(kMetaArrays); ++i) {
    const auto member = kMetaArrays[i].member;
    view.*member = pack(d.arrays[i], view.*member);
  }
  std::memcpy(d.staging.data(), &view, sizeof(view));
  return backend_->Upload(d.meta, d.staging.data(), d.staging.size());
}

Status Engine::BindWeights() {
  const std::string dir = options_.model_dir.empty() ? plan_.model_dir : options_.model_dir;
  MG_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(dir));
  checkpoint_.emplace(std::move(checkpoint));
  const std::string plan_dir = options_.plan_dir.empty() ? "." : options_.plan_dir;
  for (const PlanCheckpointFile& packed : plan_.packed_weight_files) {
    const std::string path = plan_dir + "/" + packed.file;
    MG_RETURN_IF_ERROR(checkpoint_->AddFile(path).WithContext(
        "the plan's packed weights (compile-model --weights; they stay beside the plan)"));
  }
  weights_.clear();
  // An expert-parallel rank binds (and so pages in) only what its own programs read: its
  // experts, not the other ranks'.
  std::vector<bool> read(plan_.weights.size(), false);
  for (const KeyProgram& program : plan_.programs) {
    if (program.rank != rank_) continue;
    for (const KernelStep& step : program.steps) {
      for (const ArgRef& in : step.inputs) {
        if (in.kind == ArgKind::kWeight && static_cast<size_t>(in.index) < read.size()) {
          read[static_cast<size_t>(in.index)] = true;
        }
      }
    }
  }
  for (size_t i = 0; i < plan_.weights.size(); ++i) {
    const PlanWeight& pw = plan_.weights[i];
    if (!read[i]) {
      weights_.push_back(TensorArg{});  // another rank's
      continue;
    }
    Op op;
    op.def = LookupOp("weight");
    op.attrs["name"] = pw.name;
    if (pw.experts > 0) op.attrs["experts"] = pw.experts;
    // An expert-parallel rank's experts: its share of the checkpoint's (rank 0's from 0).
    if (pw.expert_slice) op.attrs["first_expert"] = pw.first_expert;
    if (pw.row_offset > 0) op.attrs["row_offset"] = pw.row_offset;
    if (pw.quant.quantized()) {
      op.attrs["quant"] = std::string(QuantSchemeName(pw.quant.scheme));
      op.attrs["scale"] = pw.scale_name;
      op.attrs["block_rows"] = static_cast<int64_t>(pw.quant.block_rows);
      op.attrs["block_cols"] = static_cast<int64_t>(pw.quant.block_cols);
    }
    std::vector<Dim> dims;
    for (int64_t d : pw.shape)
      dims.push_back(Dim::Static(d));
    StatusOr<ResolvedWeight> resolved =
        ResolveWeight(op, Type::Tensor(pw.dtype, dims), *checkpoint_);
    if (!resolved.ok()) {
      return resolved.status().WithContext("binding weight '" + pw.name + "' of the plan to " +
                                           dir);
    }
    if (resolved->slices.size() != pw.slices.size()) {
      return DataLoss("weight '" + pw.name + "': the plan lists " +
                      std::to_string(pw.slices.size()) + " slices, the checkpoint gives " +
                      std::to_string(resolved->slices.size()));
    }
    for (size_t s = 0; s < pw.slices.size(); ++s) {
      const WeightSlice& got = resolved->slices[s];
      const PlanWeightSlice& want = pw.slices[s];
      const std::string got_file = std::filesystem::path(got.file).filename().string();
      if (got_file != want.file || got.offset != want.offset || got.bytes != want.bytes) {
        return DataLoss("weight '" + pw.name + "' slice " + std::to_string(s) + ": the plan " +
                        "expects " + want.file + " @" + std::to_string(want.offset) + " (" +
                        std::to_string(want.bytes) + " bytes) but " + dir + " has it in " +
                        got_file + " @" + std::to_string(got.offset) + " (" +
                        std::to_string(got.bytes) +
                        " bytes); the checkpoint changed since the "
                        "plan was compiled: recompile it");
      }
      weight_bytes_ += got.bytes;
    }
    if (resolved->scale_slices.size() != pw.scale_slices.size()) {
      return DataLoss("weight '" + pw.name + "': the plan lists " +
                      std::to_string(pw.scale_slices.size()) + " scale slices, the checkpoint " +
                      "gives " + std::to_string(resolved->scale_slices.size()));
    }
    for (size_t s = 0; s < pw.scale_slices.size(); ++s) {
      const WeightSlice& got = resolved->scale_slices[s];
      const PlanWeightSlice& want = pw.scale_slices[s];
      const std::string got_file = std::filesystem::path(got.file).filename().string();
      if (got_file != want.file || got.offset != want.offset || got.bytes != want.bytes) {
        return DataLoss("weight '" + pw.name + "' scale slice " + std::to_string(s) +
                        ": the plan expects " + want.file + " @" + std::to_string(want.offset) +
                        " but " + dir + " has it in " + got_file + " @" +
                        std::to_string(got.offset) +
                        "; the checkpoint changed since the plan was compiled: recompile it");
      }
      weight_bytes_ += got.bytes;
    }
    weight_args_.Bind(static_cast<ValueId>(i), *resolved);
    weights_.push_back(*weight_args_.Find(static_cast<ValueId>(i)));
  }
  // Same names, shapes and offsets, but other values?
  MG_RETURN_IF_ERROR(
      CheckCheckpointFiles(plan_.packed_weight_files, plan_dir, options_.checkpoint_check));
  return CheckCheckpointFiles(plan_.checkpoint_files, dir, options_.checkpoint_check);
}

Status Engine::CaptureAll() {
  captured_.clear();
  captured_.resize(plan_.programs.size());
  if (options_.eager) return Status::Ok();
  const size_t total =
      static_cast<size_t>(std::count_if(plan_.programs.begin(), plan_.programs.end(),
                                        [&](const KeyProgram& p) { return p.rank == rank_; }));
  size_t done = 0;
  for (size_t i = 0; i < plan_.programs.size(); ++i) {
    const KeyProgram& program = plan_.programs[i];
    if (program.rank != rank_) continue;  // another expert-parallel rank's
    if (options_.on_capture) options_.on_capture(done++, total, program.key);
    MG_ASSIGN_OR_RETURN(captured_[i], backend_->Capture(program, bindings_));
    if (LogEnabled("capture")) {
      const std::string isa = backend_->KernelIsa();
      LogLine("capture", program.key.ToString() + ": " + std::to_string(captured_[i]->num_steps()) +
                             " steps, arena " + FormatBytes(program.arena_bytes) +
                             (isa.empty() ? std::string() : ", " + isa + " kernels"));
    }
  }
  return Status::Ok();
}

int Engine::ProgramIndex(const SpecKey& key) const {
  for (size_t i = 0; i < plan_.programs.size(); ++i) {
    if (plan_.programs[i].key == key && plan_.programs[i].rank == rank_) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

int32_t Engine::CachedTokens(int64_t seq_id) const {
  auto it = cached_tokens_.find(seq_id);
  return it == cached_tokens_.end() ? 0 : it->second;
}

void Engine::Release(int64_t seq_id) {
  kv_.Release(seq_id);
  cached_tokens_.erase(seq_id);
}

Status Engine::CheckBatch(const std::vector<SequenceStep>& batch) const {
  if (batch.empty() && !distributed()) return InvalidArgument("empty batch");
  std::set<int64_t> seen;
  const int32_t vocab = plan_.model.vocab_size;
  int64_t blocks_needed = 0, rings_needed = 0;
  for (const SequenceStep& s : batch) {
    const std::string seq = "sequence " + std::to_string(s.seq_id);
    if (!seen.insert(s.seq_id).second) return InvalidArgument(seq + " appears twice in the batch");
    if (s.tokens.empty()) return InvalidArgument(seq + " feeds no tokens");
    if (s.num_cached != CachedTokens(s.seq_id)) {
      return InvalidArgument(seq + " says " + std::to_string(s.num_cached) +
                             " tokens are cached, the engine holds " +
                             std::to_string(CachedTokens(s.seq_id)));
    }
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      if (s.tokens[i] < 0 || s.tokens[i] >= vocab) {
        return InvalidArgument(seq + ": token id " + std::to_string(s.tokens[i]) + " at " +
                               std::to_string(i) + " is outside the vocabulary [0, " +
                               std::to_string(vocab) + ")");
      }
    }
    const int64_t total = s.num_cached + static_cast<int64_t>(s.tokens.size());
    if (total > plan_.model.max_position_embeddings) {
      return InvalidArgument(seq + " would reach " + std::to_string(total) +
                             " tokens, past max_position_embeddings " +
                             std::to_string(plan_.model.max_position_embeddings));
    }
    blocks_needed += kv_.BlocksFor(total) - static_cast<int64_t>(kv_.BlockTable(s.seq_id).size());
    if (kv_.has_rings() && kv_.RingOf(s.seq_id) < 0) ++rings_needed;
  }
  if (rings_needed > kv_.num_free_rings()) {
    return ResourceExhausted("KV cache exhausted: the batch needs " + std::to_string(rings_needed) +
                             " more sliding-window rings, " + std::to_string(kv_.num_free_rings()) +
                             " of " + std::to_string(kv_.config().num_rings) +
                             " are free; finish or release sequences");
  }
  if (blocks_needed > kv_.num_free_blocks()) {
    return ResourceExhausted(
        "KV cache exhausted: the batch needs " + std::to_string(blocks_needed) + " more blocks, " +
        std::to_string(kv_.num_free_blocks()) + " of " + std::to_string(kv_.config().num_blocks) +
        " are free; finish or release sequences, or give a larger "
        "KV cache budget");
  }
  return Status::Ok();
}

StatusOr<const KeyProgram*> Engine::ProgramFor(const std::vector<SequenceStep>& batch,
                                               SpecKey* key_out) const {
  const int32_t num_tokens = BatchTokens(batch);
  const MoePhase phase = PhaseOf(batch);
  const SpecKey key =
      KeyForStep(phase, num_tokens, static_cast<int32_t>(batch.size()), plan_.key_options);
  if (key_out) *key_out = key;
  const int index = ProgramIndex(key);
  if (index < 0) return MissingKey(key, batch);
  return &plan_.programs[index];
}

Status Engine::MissingKey(const SpecKey& key, const std::vector<SequenceStep>& batch) const {
  const int32_t num_tokens = BatchTokens(batch);
  std::string have;
  for (const KeyProgram& p : plan_.programs) {
    if (p.key.phase == key.phase && p.rank == rank_) have += "\n  " + p.key.ToString();
  }
  return NotFound("no compiled key for this step: " + std::to_string(num_tokens) + " tokens in " +
                  std::to_string(batch.size()) + " sequences (" + MoePhaseName(key.phase) +
                  ") needs " + key.ToString() + "; the plan has:" + have);
}

Status Engine::AgreeAcrossRanks(const Status& local, int64_t* agreed, size_t num_agreed) {
  return moegraph::AgreeAcrossRanks(*options_.communicator, local, agreed, num_agreed);
}

StatusOr<SpecKey> Engine::AgreeOnKey(const std::vector<SequenceStep>& batch,
                                     const Status& checked) {
  const int32_t num_tokens = BatchTokens(batch);
  const auto num_seqs = static_cast<int32_t>(batch.size());
  if (!distributed()) {
    MG_RETURN_IF_ERROR(checked);
    return KeyForStep(PhaseOf(batch), num_tokens, num_seqs, plan_.key_options);
  }
  // An empty rank does not force prefill: it runs the empty forward in whichever phase the
  // others agree on.
  const bool prefill = !batch.empty() && PhaseOf(batch) == MoePhase::kPrefill;
  int64_t agreed[2] = {prefill ? 1 : 0, MoeNumChunks(num_tokens, plan_.key_options.chunk_size)};
  MG_RETURN_IF_ERROR(AgreeAcrossRanks(checked, agreed, 2));
  const MoePhase phase = agreed[0] != 0 ? MoePhase::kPrefill : MoePhase::kDecode;
  return KeyForStep(phase, num_tokens, num_seqs, plan_.key_options,
                    static_cast<int32_t>(agreed[1]));
}

StatusOr<StepLogits> Engine::Step(const std::vector<SequenceStep>& batch) {
  MG_ASSIGN_OR_RETURN(const SpecKey key, AgreeOnKey(batch, CheckBatch(batch)));
  const int index = ProgramIndex(key);
  // A step that fails leaves the cache as it found it: the blocks reserved
  // for this step's tokens go back (no sequence holds blocks it never cached).
  Status prepared = index < 0 ? MissingKey(key, batch) : PrepareStep(batch, key);
  // Every rank must reach the collectives or none: agree once more on what only this rank's
  // key and cache could refuse.
  if (distributed()) prepared = AgreeAcrossRanks(prepared);
  if (!prepared.ok()) {
    for (const SequenceStep& s : batch)
      kv_.ShrinkTo(s.seq_id, s.num_cached);
    return prepared;
  }
  const KeyProgram* program = &plan_.programs[index];
  if (LogEnabled("dispatch")) {
    const int32_t num_tokens = BatchTokens(batch);
    LogLine(
        "dispatch",
        key.ToString() + " for " + std::to_string(num_tokens) + " tokens in " +
            std::to_string(batch.size()) + " sequences (" +
            (batch.empty()                         ? "the empty forward"
             : key.phase == MoePhase::kDecode      ? "all decoding one token"
             : PhaseOf(batch) == MoePhase::kDecode ? "decoding, in the ranks' agreed prefill step"
                                                   : "a prompt is in the batch") +
            (key.max_moe_num_chunk > key.moe_num_chunk
                 ? "; " + std::to_string(key.max_moe_num_chunk - key.moe_num_chunk) +
                       " empty MoE chunks for the other ranks"
                 : std::string()) +
            (distributed() ? "; rank " + std::to_string(rank_) : std::string()) + "; chunk size " +
            std::to_string(plan_.key_options.chunk_size) + ")" +
            (options_.eager ? " [eager" : " [replay") +
            (backend_->KernelIsa().empty() ? "" : ", " + backend_->KernelIsa()) + "]");
  }
  const Status ran = RunStep(*program);
  if (!ran.ok()) {
    for (const SequenceStep& s : batch)
      kv_.ShrinkTo(s.seq_id, s.num_cached);
    return ran;
  }
  for (const SequenceStep& s : batch) {
    cached_tokens_[s.seq_id] = s.num_cached + static_cast<int32_t>(s.tokens.size());
  }
  last_key_ = key;
  StepLogits logits;
  logits.num_seqs = static_cast<int32_t>(batch.size());
  logits.vocab = plan_.model.vocab_size;
  logits.data.resize(static_cast<size_t>(logits.num_seqs) * logits.vocab);
  if (device_) {
    MG_RETURN_IF_ERROR(backend_->Download(logits.data.data(), arena_ + program->logits.arena_offset,
                                          logits.data.size() * sizeof(float)));
  } else {
    std::memcpy(logits.data.data(), arena_ + program->logits.arena_offset,
                logits.data.size() * sizeof(float));
  }
  return logits;
}

Status Engine::PrepareStep(const std::vector<SequenceStep>& batch, const SpecKey& key) {
  for (const SequenceStep& s : batch) {
    MG_RETURN_IF_ERROR(kv_.Reserve(s.seq_id, s.num_cached + static_cast<int64_t>(s.tokens.size())));
  }
  MG_RETURN_IF_ERROR(meta_.Fill(batch, key.token_bucket, key.seq_bucket, kv_));
  if (device_) MG_RETURN_IF_ERROR(UploadStepInputs());
  return Status::Ok();
}

Status Engine::RunStep(const KeyProgram& program) {
  const int index = static_cast<int>(&program - plan_.programs.data());
  if (options_.eager || !captured_[index]) {
    MG_RETURN_IF_ERROR(backend_->RunEager(program, bindings_, observer_));
  } else {
    captured_[index]->Replay(observer_);
  }
  return backend_->Synchronize();
}

Status Engine::RunEagerObserved(const SpecKey& key, StepObserver* observer) {
  const int index = ProgramIndex(key);
  if (index < 0) return NotFound("no key " + key.ToString());
  return backend_->RunEager(plan_.programs[index], bindings_, observer);
}

Status Engine::ReplayKey(const SpecKey& key, StepObserver* observer) {
  const int index = ProgramIndex(key);
  if (index < 0 || !captured_[index]) return NotFound("no captured key " + key.ToString());
  captured_[index]->Replay(observer);
  return Status::Ok();
}

}  // namespace moegraph
