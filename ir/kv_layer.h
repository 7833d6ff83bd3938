// What one attention layer keeps in the paged KV cache for each token: the
// plan records one entry per layer (Plan::kv_layers, derived from the graph's
// attention ops), and the runtime sizes and pages the cache from these alone.
#pragma once

#include <cstdint>
#include <optional>

#include "ir/dtype.h"

namespace moegraph {

// Append-only, same values as fb::KvLayerKind (runtime/plan.fbs).
enum class KvLayerKind : uint8_t {
  // A key and a value of head_dim elements per KV head (MHA/GQA/MQA).
  kKeyValue = 0,
  // Multi-head latent attention (DeepSeek-V2/V3): one array of one row per
  // token, the normalised latent (kv_lora_rank) then the roped key
  // (qk_rope_head_dim); num_kv_heads is 1 and head_dim the row's length.
  kLatent = 1,
};
inline constexpr KvLayerKind kLastKvLayerKind = KvLayerKind::kLatent;

struct PlanKvLayer {
  KvLayerKind kind = KvLayerKind::kKeyValue;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  // 0: the layer attends to every earlier position; > 0: to the last `window`
  // positions only (sliding-window layers: the attention ops' window).
  int32_t window = 0;
  DType dtype = DType::kF32;  // storage: kF32, kF16 or kBF16
  bool operator==(const PlanKvLayer& other) const = default;
};

// The dtypes a KV cache may be stored in.
inline bool IsKvCacheDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

// Elements of each of the layer's per-token arrays (the key row and the value
// row for kKeyValue); nullopt for an unknown kind, non-positive dims or int64
// overflow.
inline std::optional<int64_t> KvLayerRowElements(const PlanKvLayer& layer) {
  switch (layer.kind) {
    case KvLayerKind::kKeyValue: {
      if (layer.num_kv_heads <= 0 || layer.head_dim <= 0) return std::nullopt;
      return static_cast<int64_t>(layer.num_kv_heads) * layer.head_dim;
    }
    case KvLayerKind::kLatent: {
      if (layer.num_kv_heads != 1 || layer.head_dim <= 0) return std::nullopt;
      return layer.head_dim;
    }
  }
  return std::nullopt;
}

// How many per-token arrays the layer keeps (2 for kKeyValue: keys and values;
// 1 for kLatent).
inline int KvLayerNumArrays(KvLayerKind kind) {
  switch (kind) {
    case KvLayerKind::kKeyValue:
      return 2;
    case KvLayerKind::kLatent:
      return 1;
  }
  return 0;
}

// Bytes the layer stores per cached token; nullopt as KvLayerRowElements, or
// for a dtype the cache cannot hold.
inline std::optional<int64_t> KvLayerBytesPerToken(const PlanKvLayer& layer) {
  const std::optional<int64_t> row = KvLayerRowElements(layer);
  if (!row || !IsKvCacheDType(layer.dtype)) return std::nullopt;
  int64_t bytes = 0;
  if (__builtin_mul_overflow(*row,
                             static_cast<int64_t>(KvLayerNumArrays(layer.kind)) *
                                 static_cast<int64_t>(DTypeBytes(layer.dtype)),
                             &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

}  // namespace moegraph
