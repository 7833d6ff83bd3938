// Engine: owns a loaded plan, its weights, a backend, the arena, the paged KV
// cache and one captured program per key (captured at load, largest first).
// step() builds ForwardMeta from the batch, picks the key, copies the dynamic
// inputs into the static buffers, replays, and returns the logits of the last
// token of each sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "checkpoint/weights.h"
#include "kernels/communicator.h"
#include "plan/plan.h"
#include "runtime/backend.h"
#include "runtime/forward_meta.h"
#include "runtime/kv_cache.h"
#include "support/status.h"

namespace moegraph {

struct EngineOptions {
  int num_threads = 0;  // 0: OpenMP's default
  bool eager = false;   // run steps one by one instead of replaying captures
  int32_t kv_block_size = 16;
  // KV cache budget; sets the block count. 0: DefaultKvCacheBytes, room for
  // every sequence of the plan's largest sequence bucket at its full context.
  uint64_t kv_cache_bytes = 0;
  std::string model_dir;  // overrides the plan's checkpoint directory
  // Where the plan's packed weights files (Plan::packed_weight_files) are: Open sets it to
  // the plan file's directory when empty; Load(plan) reads them from "." when empty.
  std::string plan_dir;
  // How much of the checkpoint to read to detect one changed since compile
  // (checkpoint/weights.h): kAuto hashes a file in full only when its mtime moved.
  CheckpointCheck checkpoint_check = CheckpointCheck::kAuto;
  // Where kernels run: "cpu" (default), "cpu-reference" (reference kernels
  // only) or "cuda". A device backend gets device copies of the weights, the
  // KV cache and the ForwardMeta buffers (see Engine::DeviceState).
  std::string backend = "cpu";
  int device = 0;  // the CUDA device of backend "cuda"
  // Called while capturing at load: (index, total, key).
  std::function<void(size_t, size_t, const SpecKey&)> on_capture;
  // This process's end of the plan's expert-parallel group (not owned; it must outlive the
  // engine): required when the plan has key_options.expert_parallel > 1 ranks, and then of
  // that many ranks. The engine runs its rank's programs.
  Communicator* communicator = nullptr;
};

// [num_seqs, vocab] fp32 logits of the last token of each sequence.
struct StepLogits {
  int32_t num_seqs = 0;
  int32_t vocab = 0;
  std::vector<float> data;
  const float* row(int32_t s) const { return data.data() + static_cast<size_t>(s) * vocab; }
};

// Without a known memory size, DefaultKvCacheBytes caps the cache at this.
inline constexpr uint64_t kKvCacheFallbackBytes = 256ull << 20;

// The default KV cache budget: `max_seqs` sequences of `blocks_per_seq` blocks of `block_bytes`
// (the plan's largest sequence bucket, each at max_position_embeddings), at most a quarter of
// `physical_memory_bytes` (kKvCacheFallbackBytes when that is 0) and at least one block. The
// storage's pages are mapped as sequences write them, so an unused budget costs no resident
// memory on the CPU backend.
uint64_t DefaultKvCacheBytes(int64_t max_seqs, int64_t blocks_per_seq, uint64_t block_bytes,
                             uint64_t physical_memory_bytes);

// Expert parallelism: every rank of `comm` calls this together. Each learns whether any
// rank's `local` failed (then the lowest failing rank's code and message, naming the rank,
// is returned on every rank), and values[0..count) become their maximum over the ranks.
Status AgreeAcrossRanks(Communicator& comm, const Status& local, int64_t* values = nullptr,
                        size_t count = 0);

// The backend EngineOptions::backend names.
StatusOr<std::unique_ptr<Backend>> CreateBackendByName(const EngineOptions& options);

class Engine {
 public:
  // With a communicator of several ranks every rank must call Load (or Open) together: a
  // rank whose load fails, or that opens another plan, fails it on every rank.
  static StatusOr<std::unique_ptr<Engine>> Load(Plan plan, const EngineOptions& options);
  static StatusOr<std::unique_ptr<Engine>> Open(const std::string& plan_path,
                                                const EngineOptions& options);
  ~Engine();

  // Runs one step. Each SequenceStep's num_cached must equal the tokens the
  // engine holds for that sequence (0 for a new one).
  //
  // On a rank of an expert-parallel plan every rank calls Step together (a rank with nothing
  // to run passes an empty batch: the empty forward). The ranks first agree, in one small
  // all-reduce, on the phase (decode only if no rank prefills) and on the largest chunk
  // count; each then runs the key of (agreed phase, its own chunk count, the agreed maximum,
  // its own bucket). An input error on any rank fails the step on every rank, with that
  // rank's message, before any rank runs.
  StatusOr<StepLogits> Step(const std::vector<SequenceStep>& batch);
  // Forgets a sequence and frees its KV blocks.
  void Release(int64_t seq_id);
  // Tokens cached for a sequence (0 if unknown).
  int32_t CachedTokens(int64_t seq_id) const;

  const Plan& plan() const { return plan_; }
  const KvCache& kv_cache() const { return kv_; }
  const SpecKey& last_key() const { return last_key_; }
  bool eager() const { return options_.eager; }
  void set_eager(bool eager) { options_.eager = eager; }
  // Times every kernel of the following steps (traces); nullptr turns it off.
  void set_observer(StepObserver* observer) { observer_ = observer; }
  // Runs the key's program step by step with an observer (traces, benchmarks).
  Status RunEagerObserved(const SpecKey& key, StepObserver* observer);
  // Replays a captured key (benchmarks): inputs are whatever the buffers hold.
  Status ReplayKey(const SpecKey& key, StepObserver* observer = nullptr);
  // The key a batch would use, and its program (or an error naming the keys).
  StatusOr<const KeyProgram*> ProgramFor(const std::vector<SequenceStep>& batch,
                                         SpecKey* key) const;
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t arena_bytes() const { return arena_bytes_; }
  int num_threads() const { return bindings_.num_threads; }
  const Backend& backend() const { return *backend_; }
  // The expert-parallel group (null on one rank) and this engine's rank in it.
  Communicator* communicator() const { return options_.communicator; }
  int rank() const { return rank_; }
  bool distributed() const { return options_.communicator != nullptr; }
  // Expert parallelism: every rank calls this together. Each learns whether any rank's
  // `local` failed (then the lowest failing rank's code and message, naming the rank, is
  // returned on every rank), and values[0..count) become their maximum over the ranks.
  Status AgreeAcrossRanks(const Status& local, int64_t* values = nullptr, size_t count = 0);

 private:
  struct DeviceState;

  Engine(Plan plan, const EngineOptions& options, std::unique_ptr<Backend> backend, KvCache kv,
         ForwardMetaBuffers meta);
  static StatusOr<std::unique_ptr<Engine>> LoadOnThisRank(Plan plan, const EngineOptions& options);
  Status BindWeights();
  // Device backends: uploads the weights, allocates the KV cache and the
  // ForwardMeta buffers on the device, and points the bindings at them.
  Status InitDevice();
  // Device backends: copies this step's ForwardMeta and tokens to the device.
  Status UploadStepInputs();
  Status CaptureAll();
  Status CheckBatch(const std::vector<SequenceStep>& batch) const;
  // Reserves the step's KV blocks and fills ForwardMeta (and the device's copy).
  Status PrepareStep(const std::vector<SequenceStep>& batch, const SpecKey& key);
  // Runs `program` over the prepared buffers.
  Status RunStep(const KeyProgram& program);
  // NotFound naming the key a batch needs and this rank's keys of its phase.
  Status MissingKey(const SpecKey& key, const std::vector<SequenceStep>& batch) const;
  int ProgramIndex(const SpecKey& key) const;
  // The key this rank's batch runs with; on several ranks after the step agreement.
  StatusOr<SpecKey> AgreeOnKey(const std::vector<SequenceStep>& batch, const Status& checked);

  Plan plan_;
  EngineOptions options_;
  std::unique_ptr<Backend> backend_;
  std::optional<Checkpoint> checkpoint_;
  WeightArgs weight_args_;
  std::vector<TensorArg> weights_;  // by weight-table index
  uint64_t weight_bytes_ = 0;
  std::byte* arena_ = nullptr;
  uint64_t arena_bytes_ = 0;
  KvCache kv_;
  ForwardMetaBuffers meta_;
  ExecBindings bindings_;
  std::unique_ptr<DeviceState> device_;                // null for host-memory backends (the CPU)
  std::vector<std::unique_ptr<Replayable>> captured_;  // by program index
  std::map<int64_t, int32_t> cached_tokens_;
  SpecKey last_key_;
  StepObserver* observer_ = nullptr;
  int rank_ = 0;
};

}  // namespace moegraph
