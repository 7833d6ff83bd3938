// Paged KV cache: fixed-size blocks shared by all sequences, a block table
// per sequence. Each layer has its own geometry and storage dtype (the plan's
// kv_layers); the block bookkeeping is shared: block b holds the same token
// positions in every full layer. Sliding-window layers, when the config asks
// for rings, keep each sequence's last positions in a ring of their own
// instead (KvLayerView::ring_blocks). Running out of blocks or rings is an
// error; nothing live is overwritten.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/kv_layer.h"
#include "kernels/kernel_abi.h"
#include "support/status.h"

namespace moegraph {

struct KvCacheConfig {
  std::vector<PlanKvLayer> layers;  // one per model layer, by layer index
  int32_t block_size = 16;
  int32_t num_blocks = 0;
  // False when the data lives elsewhere (a device backend keeps its own copy):
  // only the block bookkeeping is kept and view()'s layers have null k / v.
  bool allocate_storage = true;
  // Rings for sliding-window layers: with both > 0, a layer with window w keeps
  // each sequence in a ring of RingBlocks(w) blocks (num_rings rings, one per
  // live sequence) instead of in the shared blocks; 0: every layer is paged.
  int32_t num_rings = 0;
  int32_t max_step_tokens = 0;  // most tokens one sequence feeds in one step

  // Blocks of the ring of a layer with `window` (0 for a full layer or without
  // rings): ceil((window + max_step_tokens - 1) / block_size), since a step
  // writes all its keys before reading any.
  int32_t RingBlocks(const PlanKvLayer& layer) const;

  // `num_layers` kKeyValue layers of one geometry and dtype.
  static KvCacheConfig Uniform(int32_t num_layers, int32_t num_kv_heads, int32_t head_dim,
                               DType dtype = DType::kF32);
};

class KvCache {
 public:
  // Byte offsets are aligned to this in the storage.
  static constexpr uint64_t kArrayAlignment = 64;

  static StatusOr<KvCache> Create(const KvCacheConfig& config);
  // Bytes one block of `block_size` tokens takes over all `layers` (their
  // per-token bytes summed, times block_size), without alignment padding: what
  // a KV budget divides by. InvalidArgument for a bad entry, ResourceExhausted
  // on overflow.
  // With max_step_tokens > 0 the sliding layers (window > 0) are left out: they
  // live in rings (RingBytes).
  static StatusOr<uint64_t> BlockBytes(const std::vector<PlanKvLayer>& layers, int32_t block_size,
                                       int32_t max_step_tokens = 0);
  // Bytes one sequence's rings take over all sliding layers of `config` (0 without rings).
  static StatusOr<uint64_t> RingBytes(const KvCacheConfig& config);

  // Move-only: view() points into the storage, which moves with the object.
  KvCache(KvCache&&) noexcept = default;
  KvCache& operator=(KvCache&&) noexcept = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Makes room for `seq_id` to hold `total_tokens` tokens, taking blocks (and a
  // ring, the first time) as needed. On ResourceExhausted nothing changed.
  Status Reserve(int64_t seq_id, int64_t total_tokens);
  // Returns the sequence's blocks and ring to the free lists.
  void Release(int64_t seq_id);
  // Gives back the blocks past those `total_tokens` tokens need (undoing a
  // Reserve); a sequence left with none is forgotten (and its ring freed).
  void ShrinkTo(int64_t seq_id, int64_t total_tokens);
  bool Has(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  // Block ids of a sequence, in position order (empty if unknown).
  const std::vector<int32_t>& BlockTable(int64_t seq_id) const;
  // The number of blocks a sequence of `tokens` tokens needs.
  int64_t BlocksFor(int64_t tokens) const {
    return (tokens + config_.block_size - 1) / config_.block_size;
  }

  int32_t num_free_blocks() const { return static_cast<int32_t>(free_blocks_.size()); }
  // Whether some layer keeps its sequences in rings.
  bool has_rings() const { return has_rings_; }
  int32_t num_free_rings() const { return static_cast<int32_t>(free_rings_.size()); }
  // The sequence's ring, or -1 (unknown sequence, or no ring layers).
  int32_t RingOf(int64_t seq_id) const;
  // Bytes of the ring storage (in bytes()).
  uint64_t ring_bytes() const { return ring_bytes_; }
  // Bytes the cache holds for a sequence of `tokens` tokens in layer `l`: its
  // blocks for a paged layer, its whole ring for a ring layer.
  uint64_t LayerBytesHeld(int32_t layer, int64_t tokens) const;
  const KvCacheConfig& config() const { return config_; }
  const KvCacheView& view() const { return view_; }
  // The cache's data size in bytes, wherever the data lives (every layer's
  // arrays in their dtype, with the alignment padding between them).
  uint64_t bytes() const { return bytes_; }
  // Byte offset of layer l's array a (0: keys, 1: values) in the storage.
  uint64_t array_offset(int32_t layer, int array) const {
    return offsets_[static_cast<size_t>(layer) * 2 + static_cast<size_t>(array)];
  }
  // The layer views for storage of bytes() bytes at `base` (a device copy of
  // the cache lays its data out as the host's).
  std::vector<KvLayerView> LayerViewsAt(std::byte* base) const;
  // The storage dtypes, for summaries: "bf16", or "f32+bf16" when layers differ.
  std::string DTypeSummary() const;

 private:
  KvCache() = default;
  void FreeRing(int64_t seq_id);
  KvCacheConfig config_;
  // calloc'd: the zero pages are mapped lazily, so the cache costs resident
  // memory only for the blocks sequences have written.
  struct FreeStorage {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, FreeStorage> storage_;
  std::vector<uint64_t> offsets_;  // [num_layers * 2]: keys, values
  uint64_t bytes_ = 0;
  uint64_t ring_bytes_ = 0;
  bool has_rings_ = false;
  std::vector<KvLayerView> layer_views_;
  KvCacheView view_;
  std::vector<int32_t> free_blocks_;  // a stack; lowest ids handed out first
  std::map<int64_t, std::vector<int32_t>> tables_;
  std::vector<int32_t> free_rings_;  // a stack; lowest ids handed out first
  std::map<int64_t, int32_t> rings_;
};

}  // namespace moegraph
