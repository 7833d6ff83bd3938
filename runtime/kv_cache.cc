// Paged KV cache bookkeeping.
#include "runtime/kv_cache.h"

#include <new>
#include <string>

#include "support/memory.h"

namespace moegraph {

StatusOr<KvCache> KvCache::Create(const KvCacheConfig& config) {
  if (config.num_layers <= 0 || config.num_kv_heads <= 0 || config.head_dim <= 0 ||
      config.block_size <= 0 || config.num_blocks <= 0) {
    return InvalidArgument(
        "KV cache: layers, kv heads, head_dim, block_size and num_blocks "
        "must all be > 0");
  }
  int64_t per_layer = 0, total = 0, bytes = 0;
  if (__builtin_mul_overflow(static_cast<int64_t>(config.num_blocks) * config.block_size,
                             static_cast<int64_t>(config.num_kv_heads) * config.head_dim,
                             &per_layer) ||
      __builtin_mul_overflow(per_layer, static_cast<int64_t>(config.num_layers), &total) ||
      __builtin_mul_overflow(total, int64_t{2 * sizeof(float)}, &bytes)) {
    return ResourceExhausted("KV cache of " + std::to_string(config.num_blocks) + " blocks of " +
                             std::to_string(config.block_size) + " tokens, " +
                             std::to_string(config.num_layers) + " layers, " +
                             std::to_string(config.num_kv_heads) + " KV heads of " +
                             std::to_string(config.head_dim) + ": the size overflows");
  }
  if (config.allocate_storage && ExceedsPhysicalMemory(static_cast<uint64_t>(bytes))) {
    return ResourceExhausted("cannot allocate the KV cache (" + std::to_string(bytes) +
                             " bytes for " + std::to_string(config.num_blocks) +
                             " blocks): more than this machine's " +
                             std::to_string(PhysicalMemoryBytes()) + " bytes of memory");
  }
  KvCache cache;
  cache.config_ = config;
  try {
    if (config.allocate_storage) {
      cache.storage_k_.assign(total, 0.0f);
      cache.storage_v_.assign(total, 0.0f);
    }
    cache.free_blocks_.reserve(config.num_blocks);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("cannot allocate the KV cache (" + std::to_string(bytes) +
                             " bytes for " + std::to_string(config.num_blocks) + " blocks)");
  }
  cache.view_ = KvCacheView{config.allocate_storage ? cache.storage_k_.data() : nullptr,
                            config.allocate_storage ? cache.storage_v_.data() : nullptr,
                            config.num_layers,
                            config.num_blocks,
                            config.block_size,
                            config.num_kv_heads,
                            config.head_dim};
  for (int32_t b = config.num_blocks - 1; b >= 0; --b)
    cache.free_blocks_.push_back(b);
  return cache;
}

Status KvCache::Reserve(int64_t seq_id, int64_t total_tokens) {
  std::vector<int32_t>& table = tables_[seq_id];
  const int64_t needed = BlocksFor(total_tokens) - static_cast<int64_t>(table.size());
  if (needed > static_cast<int64_t>(free_blocks_.size())) {
    if (table.empty()) tables_.erase(seq_id);
    return ResourceExhausted(
        "KV cache: sequence " + std::to_string(seq_id) + " needs " + std::to_string(needed) +
        " more blocks of " + std::to_string(config_.block_size) + " tokens for " +
        std::to_string(total_tokens) + " tokens, but only " + std::to_string(free_blocks_.size()) +
        " of " + std::to_string(config_.num_blocks) + " blocks are free");
  }
  for (int64_t i = 0; i < needed; ++i) {
    table.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return Status::Ok();
}

void KvCache::ShrinkTo(int64_t seq_id, int64_t total_tokens) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  std::vector<int32_t>& table = it->second;
  const size_t keep = static_cast<size_t>(std::max<int64_t>(0, BlocksFor(total_tokens)));
  while (table.size() > keep) {
    free_blocks_.push_back(table.back());
    table.pop_back();
  }
  if (table.empty()) tables_.erase(it);
}

void KvCache::Release(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  for (auto b = it->second.rbegin(); b != it->second.rend(); ++b)
    free_blocks_.push_back(*b);
  tables_.erase(it);
}

const std::vector<int32_t>& KvCache::BlockTable(int64_t seq_id) const {
  static const std::vector<int32_t> kEmpty;
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? kEmpty : it->second;
}

}  // namespace moegraph
