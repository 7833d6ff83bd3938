// Paged KV cache bookkeeping.
#include "runtime/kv_cache.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>

#include "support/memory.h"

namespace moegraph {

KvCacheConfig KvCacheConfig::Uniform(int32_t num_layers, int32_t num_kv_heads, int32_t head_dim,
                                     DType dtype) {
  KvCacheConfig config;
  config.layers.assign(static_cast<size_t>(std::max(num_layers, 0)),
                       PlanKvLayer{KvLayerKind::kKeyValue, num_kv_heads, head_dim, 0, dtype});
  return config;
}

int32_t KvCacheConfig::RingBlocks(const PlanKvLayer& layer) const {
  if (num_rings <= 0 || max_step_tokens <= 0 || block_size <= 0 || layer.window <= 0 ||
      layer.kind != KvLayerKind::kKeyValue) {
    return 0;
  }
  const int64_t slots = static_cast<int64_t>(layer.window) + max_step_tokens - 1;
  return static_cast<int32_t>(std::min<int64_t>((slots + block_size - 1) / block_size, INT32_MAX));
}

namespace {

std::string DescribeLayer(size_t index, const PlanKvLayer& layer) {
  return "KV cache layer " + std::to_string(index) + " (kind " +
         std::to_string(static_cast<int>(layer.kind)) + ", " + std::to_string(layer.num_kv_heads) +
         " KV heads of " + std::to_string(layer.head_dim) + ", " + DTypeName(layer.dtype) + ")";
}

Status CheckLayer(size_t index, const PlanKvLayer& layer) {
  if (!IsKvCacheDType(layer.dtype)) {
    return InvalidArgument(DescribeLayer(index, layer) + ": dtype must be f32, f16 or bf16");
  }
  if (!KvLayerRowElements(layer)) {
    return InvalidArgument(DescribeLayer(index, layer) +
                           ": expected a known kind with positive dims");
  }
  if (!KvLayerBytesPerToken(layer)) {
    return ResourceExhausted(DescribeLayer(index, layer) +
                             ": its bytes per token overflow 64 bits");
  }
  return Status::Ok();
}

uint64_t AlignUp(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

}  // namespace

StatusOr<uint64_t> KvCache::BlockBytes(const std::vector<PlanKvLayer>& layers, int32_t block_size,
                                       int32_t max_step_tokens) {
  if (block_size <= 0) return InvalidArgument("KV block size must be > 0");
  uint64_t per_token = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    MG_RETURN_IF_ERROR(CheckLayer(l, layers[l]));
    if (max_step_tokens > 0 && layers[l].window > 0 && layers[l].kind == KvLayerKind::kKeyValue) {
      continue;  // in a ring
    }
    if (__builtin_add_overflow(per_token, static_cast<uint64_t>(*KvLayerBytesPerToken(layers[l])),
                               &per_token)) {
      return ResourceExhausted("the KV cache's bytes per token over " +
                               std::to_string(layers.size()) + " layers overflow 64 bits");
    }
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(per_token, static_cast<uint64_t>(block_size), &bytes)) {
    return ResourceExhausted("a KV cache block of " + std::to_string(block_size) + " tokens of " +
                             std::to_string(per_token) + " bytes overflows 64 bits");
  }
  return bytes;
}

StatusOr<uint64_t> KvCache::RingBytes(const KvCacheConfig& config) {
  uint64_t bytes = 0;
  for (size_t l = 0; l < config.layers.size(); ++l) {
    MG_RETURN_IF_ERROR(CheckLayer(l, config.layers[l]));
    const int32_t ring_blocks = config.RingBlocks(config.layers[l]);
    uint64_t layer_bytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(*KvLayerBytesPerToken(config.layers[l])),
                               static_cast<uint64_t>(ring_blocks) * config.block_size,
                               &layer_bytes) ||
        __builtin_add_overflow(bytes, layer_bytes, &bytes)) {
      return ResourceExhausted("the KV cache's ring bytes per sequence overflow 64 bits");
    }
  }
  return bytes;
}

StatusOr<KvCache> KvCache::Create(const KvCacheConfig& config) {
  if (config.layers.empty() || config.layers.size() > static_cast<size_t>(INT32_MAX) ||
      config.block_size <= 0 || config.num_blocks <= 0) {
    return InvalidArgument("KV cache: layers (" + std::to_string(config.layers.size()) +
                           "), block_size (" + std::to_string(config.block_size) +
                           ") and num_blocks (" + std::to_string(config.num_blocks) +
                           ") must all be > 0");
  }
  const auto num_slots = static_cast<uint64_t>(config.num_blocks) * config.block_size;
  std::vector<uint64_t> offsets;
  offsets.reserve(config.layers.size() * 2);
  uint64_t bytes = 0, ring_bytes = 0;
  bool has_rings = false;
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const PlanKvLayer& layer = config.layers[l];
    MG_RETURN_IF_ERROR(CheckLayer(l, layer));
    uint64_t array_bytes = 0;
    const uint64_t row_bytes =
        static_cast<uint64_t>(*KvLayerRowElements(layer)) * DTypeBytes(layer.dtype);
    // A ring layer's arrays are [num_rings, ring_blocks, block_size] rows.
    const int32_t ring_blocks = config.RingBlocks(layer);
    has_rings = has_rings || ring_blocks > 0;
    uint64_t rows = num_slots;
    bool overflow = ring_blocks > 0 &&
                    (__builtin_mul_overflow(static_cast<uint64_t>(config.num_rings),
                                            static_cast<uint64_t>(ring_blocks), &rows) ||
                     __builtin_mul_overflow(rows, static_cast<uint64_t>(config.block_size), &rows));
    overflow = overflow || __builtin_mul_overflow(rows, row_bytes, &array_bytes);
    if (ring_blocks > 0 && !overflow) {
      overflow = __builtin_add_overflow(ring_bytes, array_bytes * KvLayerNumArrays(layer.kind),
                                        &ring_bytes);
    }
    for (int a = 0; a < 2 && !overflow; ++a) {
      bytes = AlignUp(bytes, kArrayAlignment);
      offsets.push_back(bytes);
      // Kinds with one array keep an empty second one, so offsets stay [l * 2 + a].
      const uint64_t this_array = a < KvLayerNumArrays(layer.kind) ? array_bytes : 0;
      overflow = bytes > INT64_MAX - kArrayAlignment ||
                 __builtin_add_overflow(bytes, this_array, &bytes) || bytes > INT64_MAX;
    }
    if (overflow) {
      return ResourceExhausted("KV cache of " + std::to_string(config.num_blocks) + " blocks of " +
                               std::to_string(config.block_size) +
                               " tokens: " + DescribeLayer(l, layer) + " makes the size overflow");
    }
  }
  if (config.allocate_storage && ExceedsPhysicalMemory(bytes)) {
    return ResourceExhausted("cannot allocate the KV cache (" + std::to_string(bytes) +
                             " bytes for " + std::to_string(config.num_blocks) +
                             " blocks): more than this machine's " +
                             std::to_string(PhysicalMemoryBytes()) + " bytes of memory");
  }
  KvCache cache;
  cache.config_ = config;
  cache.offsets_ = std::move(offsets);
  cache.bytes_ = bytes;
  cache.ring_bytes_ = ring_bytes;
  cache.has_rings_ = has_rings;
  if (config.allocate_storage) {
    cache.storage_.reset(static_cast<std::byte*>(std::calloc(bytes > 0 ? bytes : 1, 1)));
  }
  if (config.allocate_storage && cache.storage_ == nullptr) {
    return ResourceExhausted("cannot allocate the KV cache (" + std::to_string(bytes) +
                             " bytes for " + std::to_string(config.num_blocks) + " blocks)");
  }
  cache.free_blocks_.reserve(config.num_blocks);
  cache.layer_views_ = cache.LayerViewsAt(cache.storage_.get());
  cache.view_ = KvCacheView{cache.layer_views_.data(), static_cast<int32_t>(config.layers.size()),
                            config.num_blocks, config.block_size, has_rings ? config.num_rings : 0};
  for (int32_t b = config.num_blocks - 1; b >= 0; --b)
    cache.free_blocks_.push_back(b);
  if (has_rings) {
    cache.free_rings_.reserve(static_cast<size_t>(config.num_rings));
    for (int32_t r = config.num_rings - 1; r >= 0; --r)
      cache.free_rings_.push_back(r);
  }
  return cache;
}

void KvCache::FreeStorage::operator()(std::byte* p) const {
  std::free(p);
}

std::vector<KvLayerView> KvCache::LayerViewsAt(std::byte* base) const {
  std::vector<KvLayerView> views(config_.layers.size());
  for (size_t l = 0; l < views.size(); ++l) {
    const PlanKvLayer& layer = config_.layers[l];
    KvLayerView& v = views[l];
    v.k = base != nullptr ? base + offsets_[2 * l] : nullptr;
    v.v = base != nullptr ? base + offsets_[2 * l + 1] : nullptr;
    v.kind = layer.kind;
    v.dtype = layer.dtype;
    v.num_kv_heads = layer.num_kv_heads;
    v.head_dim = layer.head_dim;
    v.slot_stride = *KvLayerRowElements(layer);
    v.ring_blocks = config_.RingBlocks(layer);
  }
  return views;
}

std::string KvCache::DTypeSummary() const {
  std::string out;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const PlanKvLayer& layer : config_.layers) {
      if (layer.dtype != dtype) continue;
      out += (out.empty() ? "" : "+") + std::string(DTypeName(dtype));
      break;
    }
  }
  return out;
}

int32_t KvCache::RingOf(int64_t seq_id) const {
  auto it = rings_.find(seq_id);
  return it == rings_.end() ? -1 : it->second;
}

uint64_t KvCache::LayerBytesHeld(int32_t layer, int64_t tokens) const {
  if (layer < 0 || static_cast<size_t>(layer) >= config_.layers.size()) return 0;
  const PlanKvLayer& l = config_.layers[static_cast<size_t>(layer)];
  const int32_t ring_blocks = layer_views_[static_cast<size_t>(layer)].ring_blocks;
  const int64_t blocks = ring_blocks > 0 ? ring_blocks : BlocksFor(tokens);
  return static_cast<uint64_t>(blocks) * static_cast<uint64_t>(config_.block_size) *
         static_cast<uint64_t>(*KvLayerBytesPerToken(l));
}

Status KvCache::Reserve(int64_t seq_id, int64_t total_tokens) {
  if (has_rings_ && rings_.count(seq_id) == 0 && free_rings_.empty()) {
    return ResourceExhausted("KV cache: sequence " + std::to_string(seq_id) +
                             " needs a sliding-window ring, but all " +
                             std::to_string(config_.num_rings) + " rings are held");
  }
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
  if (has_rings_ && rings_.count(seq_id) == 0) {
    rings_[seq_id] = free_rings_.back();
    free_rings_.pop_back();
  }
  return Status::Ok();
}

void KvCache::FreeRing(int64_t seq_id) {
  auto it = rings_.find(seq_id);
  if (it == rings_.end()) return;
  free_rings_.push_back(it->second);
  rings_.erase(it);
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
  if (table.empty()) {
    tables_.erase(it);
    FreeRing(seq_id);
  }
}

void KvCache::Release(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  for (auto b = it->second.rbegin(); b != it->second.rend(); ++b)
    free_blocks_.push_back(*b);
  tables_.erase(it);
  FreeRing(seq_id);
}

const std::vector<int32_t>& KvCache::BlockTable(int64_t seq_id) const {
  static const std::vector<int32_t> kEmpty;
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? kEmpty : it->second;
}

}  // namespace moegraph
