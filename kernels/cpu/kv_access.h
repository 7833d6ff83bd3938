// Reading and writing rows of the paged KV cache in its storage dtype (f32,
// f16 or bf16): kernels compute in f32, convert as they read and round to
// nearest even as they write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ir/dtype.h"
#include "kernels/kernel_abi.h"
#include "support/half.h"

namespace moegraph::kv_access {

// Element `index` of a cache array of `dtype` at `base`, as f32.
inline float Load(DType dtype, const void* base, int64_t index) {
  switch (dtype) {
    case DType::kF16:
      return F16ToF32(static_cast<const uint16_t*>(base)[index]);
    case DType::kBF16:
      return Bf16ToF32(static_cast<const uint16_t*>(base)[index]);
    default:
      return static_cast<const float*>(base)[index];
  }
}

// dst[0, n) = elements [offset, offset + n) of a cache array, as f32.
inline void LoadRow(DType dtype, const void* base, int64_t offset, float* dst, int64_t n) {
  if (dtype == DType::kF32) {
    std::memcpy(dst, static_cast<const float*>(base) + offset, static_cast<size_t>(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; ++i)
    dst[i] = Load(dtype, base, offset + i);
}

// Elements [offset, offset + n) of a cache array = src[0, n), rounded to `dtype`.
inline void StoreRow(DType dtype, void* base, int64_t offset, const float* src, int64_t n) {
  switch (dtype) {
    case DType::kF16: {
      uint16_t* dst = static_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i)
        dst[i] = F32ToF16(src[i]);
      return;
    }
    case DType::kBF16: {
      uint16_t* dst = static_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i)
        dst[i] = F32ToBf16(src[i]);
      return;
    }
    default:
      std::memcpy(static_cast<float*>(base) + offset, src, static_cast<size_t>(n) * 4);
      return;
  }
}

// Whether layer `layer` of `kv` is a key/value layer of this geometry with
// storage a kernel can read.
inline bool IsKeyValueLayer(const KvCacheView* kv, int64_t layer, int64_t num_kv_heads,
                            int64_t head_dim) {
  const KvLayerView* l = kv != nullptr ? kv->layer(layer) : nullptr;
  return l != nullptr && l->k != nullptr && l->v != nullptr && l->kind == KvLayerKind::kKeyValue &&
         IsKvCacheDType(l->dtype) && l->num_kv_heads == num_kv_heads && l->head_dim == head_dim &&
         l->slot_stride == num_kv_heads * head_dim && kv->block_size > 0;
}

// Whether layer `layer` of `kv` is a latent layer (MLA) with rows of `row`
// elements (kv_lora_rank + qk_rope_head_dim) and storage a kernel can read.
inline bool IsLatentLayer(const KvCacheView* kv, int64_t layer, int64_t row) {
  const KvLayerView* l = kv != nullptr ? kv->layer(layer) : nullptr;
  return l != nullptr && l->k != nullptr && l->kind == KvLayerKind::kLatent &&
         IsKvCacheDType(l->dtype) && l->num_kv_heads == 1 && l->head_dim == row &&
         l->slot_stride == row && kv->block_size > 0;
}

}  // namespace moegraph::kv_access
