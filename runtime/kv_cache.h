// Paged KV cache: fixed-size blocks shared by all sequences, a block table
// per sequence. Running out of blocks is an error; nothing is overwritten.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "kernels/kernel_abi.h"
#include "support/status.h"

namespace moegraph {

struct KvCacheConfig {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  int32_t num_blocks = 0;
  // False when the data lives elsewhere (a device backend keeps its own copy):
  // only the block bookkeeping is kept and view() has null k / v.
  bool allocate_storage = true;
};

class KvCache {
 public:
  static StatusOr<KvCache> Create(const KvCacheConfig& config);
  // Move-only: view() points into the storage, which moves with the object.
  KvCache(KvCache&&) noexcept = default;
  KvCache& operator=(KvCache&&) noexcept = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Makes room for `seq_id` to hold `total_tokens` tokens, taking blocks as
  // needed. On ResourceExhausted nothing changed.
  Status Reserve(int64_t seq_id, int64_t total_tokens);
  // Returns the sequence's blocks to the free list.
  void Release(int64_t seq_id);
  // Gives back the blocks past those `total_tokens` tokens need (undoing a
  // Reserve); a sequence left with none is forgotten.
  void ShrinkTo(int64_t seq_id, int64_t total_tokens);
  bool Has(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  // Block ids of a sequence, in position order (empty if unknown).
  const std::vector<int32_t>& BlockTable(int64_t seq_id) const;
  // The number of blocks a sequence of `tokens` tokens needs.
  int64_t BlocksFor(int64_t tokens) const {
    return (tokens + config_.block_size - 1) / config_.block_size;
  }

  int32_t num_free_blocks() const { return static_cast<int32_t>(free_blocks_.size()); }
  const KvCacheConfig& config() const { return config_; }
  const KvCacheView& view() const { return view_; }
  // The cache's data size, wherever the data lives.
  uint64_t bytes() const {
    return 2ull * static_cast<uint64_t>(view_.layer_stride()) * config_.num_layers * sizeof(float);
  }

 private:
  KvCache() = default;
  KvCacheConfig config_;
  std::vector<float> storage_k_, storage_v_;
  KvCacheView view_;
  std::vector<int32_t> free_blocks_;  // a stack; lowest ids handed out first
  std::map<int64_t, std::vector<int32_t>> tables_;
};

}  // namespace moegraph
