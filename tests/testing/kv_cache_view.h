// A KvCacheView over caller-owned key/value arrays whose layers all have one
// geometry and dtype (layer l at element l * LayerElements() of each array),
// for kernel tests that build a cache by hand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ir/dtype.h"
#include "kernels/kernel_abi.h"

namespace moegraph::testing {

struct UniformKvCacheView {
  int32_t num_layers = 0, num_blocks = 0, block_size = 0, num_kv_heads = 0, head_dim = 0;
  DType dtype = DType::kF32;
  KvLayerKind kind = KvLayerKind::kKeyValue;  // kLatent: num_kv_heads 1, rows of head_dim
  std::vector<KvLayerView> layers;
  KvCacheView view;

  // Elements of one layer's keys (or values).
  int64_t LayerElements() const {
    return static_cast<int64_t>(num_blocks) * block_size * num_kv_heads * head_dim;
  }
  // Points the layers at `k` / `v` (each num_layers * LayerElements() elements
  // of dtype) and returns the view.
  const KvCacheView& Bind(void* k, void* v) {
    const size_t layer_bytes = static_cast<size_t>(LayerElements()) * DTypeBytes(dtype);
    layers.assign(static_cast<size_t>(num_layers), KvLayerView{});
    for (int32_t l = 0; l < num_layers; ++l) {
      KvLayerView& layer = layers[static_cast<size_t>(l)];
      layer.k = k != nullptr ? static_cast<std::byte*>(k) + l * layer_bytes : nullptr;
      layer.v = v != nullptr ? static_cast<std::byte*>(v) + l * layer_bytes : nullptr;
      layer.kind = kind;
      layer.dtype = dtype;
      layer.num_kv_heads = num_kv_heads;
      layer.head_dim = head_dim;
      layer.slot_stride = static_cast<int64_t>(num_kv_heads) * head_dim;
    }
    view = KvCacheView{layers.data(), num_layers, num_blocks, block_size};
    return view;
  }
};

}  // namespace moegraph::testing
