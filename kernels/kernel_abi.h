// The contract between lowered programs and kernels: every kernel is a plain
// function `void(const KernelArgs&)` over raw tensors, the step's ForwardMeta
// (dynamic half) and the KV cache. The runtime binds KernelArgs once at
// capture; replay only calls the function pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <new>

#include "ir/dtype.h"
#include "ir/kv_layer.h"
#include "ir/op_params.h"
#include "ir/quant.h"

namespace moegraph {

class Communicator;

constexpr int kMaxRank = 4;

// One tensor operand or result. Activations live in the arena; weights are
// memory-mapped from the checkpoint. A stacked expert weight [E, N, K] has
// `expert_data[e]` pointing at expert e's contiguous [N, K] slice (experts
// need not be adjacent in memory: per-expert checkpoint tensors). A quantized weight
// (quant.quantized(): dtype is its storage format, ir/quant.h) also carries its scales:
// `scales` [ceil(N / block_rows), ceil(K / block_cols)] of QuantScaleDType, row-major, for a
// plain weight, `expert_scales[e]` for expert e of a stacked one.
struct TensorArg {
  void* data = nullptr;
  const void* const* expert_data = nullptr;
  DType dtype = DType::kF32;
  int rank = 0;
  int64_t shape[kMaxRank] = {0, 0, 0, 0};
  WeightQuant quant;
  const void* scales = nullptr;
  const void* const* expert_scales = nullptr;

  int64_t dim(int i) const { return shape[i < 0 ? rank + i : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i)
      n *= shape[i];
    return n;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // Pointer to expert e's slice of a stacked weight.
  const void* expert(int64_t e) const { return expert_data[e]; }
  // Expert e's scales of a stacked quantized weight.
  const void* expert_scale(int64_t e) const { return expert_scales[e]; }
};

// The dynamic half of ForwardMeta as kernels see it. The arrays have the
// key's static capacity (token_capacity rows, seq_capacity sequences); only
// the first num_tokens / num_seqs entries are real. Padding entries hold -1
// in batch_id_per_token and slot_mapping, 0 elsewhere.
struct ForwardMetaView {
  int32_t num_tokens = 0;  // real, unpadded tokens in this step
  int32_t num_seqs = 0;    // real sequences in this step
  int32_t token_capacity = 0;
  int32_t seq_capacity = 0;
  int32_t max_blocks_per_seq = 0;
  const int32_t* seq_lens_this_time = nullptr;  // [seq_capacity] tokens of s in this step
  const int32_t* seq_lens_encoder = nullptr;    // [seq_capacity] prompt tokens of s in this step
  const int32_t* seq_lens_decoder = nullptr;    // [seq_capacity] tokens of s cached before it
  const int32_t* cu_seqlens_q = nullptr;        // [seq_capacity + 1] prefix sums of this_time
  const int32_t* batch_id_per_token = nullptr;  // [token_capacity] sequence of each token
  const int32_t* positions = nullptr;           // [token_capacity] position in its sequence
  const int32_t* block_tables = nullptr;        // [seq_capacity, max_blocks_per_seq]
  const int32_t* slot_mapping = nullptr;        // [token_capacity] block * block_size + offset
  const int32_t* kv_rings = nullptr;            // [seq_capacity] ring of s in sliding layers, -1
};

// ForwardMeta's dynamic arrays, listed once: the view member, the capacity
// its length follows and the value padding entries hold. The host buffers,
// their padding resets and the device staging all walk this table.
enum class MetaArrayExtent : uint8_t {
  kTokens,       // [token_capacity]
  kSeqs,         // [seq_capacity]
  kSeqsPlusOne,  // [seq_capacity + 1]
  kBlockTable,   // [seq_capacity, max_blocks_per_seq]
};

using MetaArrayMember = const int32_t* ForwardMetaView::*;

struct MetaArray {
  const char* name;
  MetaArrayMember member;
  MetaArrayExtent extent;
  int32_t padding;
};

inline constexpr MetaArray kMetaArrays[] = {
    {"seq_lens_this_time", &ForwardMetaView::seq_lens_this_time, MetaArrayExtent::kSeqs, 0},
    {"seq_lens_encoder", &ForwardMetaView::seq_lens_encoder, MetaArrayExtent::kSeqs, 0},
    {"seq_lens_decoder", &ForwardMetaView::seq_lens_decoder, MetaArrayExtent::kSeqs, 0},
    {"cu_seqlens_q", &ForwardMetaView::cu_seqlens_q, MetaArrayExtent::kSeqsPlusOne, 0},
    {"batch_id_per_token", &ForwardMetaView::batch_id_per_token, MetaArrayExtent::kTokens, -1},
    {"positions", &ForwardMetaView::positions, MetaArrayExtent::kTokens, 0},
    {"block_tables", &ForwardMetaView::block_tables, MetaArrayExtent::kBlockTable, -1},
    {"slot_mapping", &ForwardMetaView::slot_mapping, MetaArrayExtent::kTokens, -1},
    {"kv_rings", &ForwardMetaView::kv_rings, MetaArrayExtent::kSeqs, -1},
};

// The arrays are ForwardMetaView's trailing members: one added there without
// a line above fails to build.
static_assert(sizeof(ForwardMetaView) == offsetof(ForwardMetaView, seq_lens_this_time) +
                                             std::size(kMetaArrays) * sizeof(const int32_t*),
              "every ForwardMetaView array must be listed in kMetaArrays");

// Entries of an array of `extent` for the given capacities.
inline uint64_t MetaArrayLength(MetaArrayExtent extent, uint64_t tokens, uint64_t seqs,
                                uint64_t blocks_per_seq) {
  switch (extent) {
    case MetaArrayExtent::kTokens:
      return tokens;
    case MetaArrayExtent::kSeqs:
      return seqs;
    case MetaArrayExtent::kSeqsPlusOne:
      return seqs + 1;
    case MetaArrayExtent::kBlockTable:
      return seqs * blocks_per_seq;
  }
  return 0;
}

// One layer of the paged KV cache. For kind kKeyValue, keys at k and values
// at v are each [num_blocks, block_size, num_kv_heads, head_dim] elements of
// `dtype` (f32, f16 or bf16 bits): cache slot s = block * block_size + offset
// starts at element s * slot_stride. Kernels convert to f32 as they read and
// round to `dtype` (to nearest even) as they write.
struct KvLayerView {
  void* k = nullptr;
  void* v = nullptr;
  KvLayerKind kind = KvLayerKind::kKeyValue;
  DType dtype = DType::kF32;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int64_t slot_stride = 0;  // elements from one slot's row to the next
  // 0: paged by the block tables, as above. > 0: a sliding-window layer kept in
  // per-sequence rings of ring_blocks blocks: k and v are [num_rings, ring_blocks,
  // block_size, ...] and logical block b of the sequence with ring r lives at row block
  // r * ring_blocks + b % ring_blocks (KvBlockMap).
  int32_t ring_blocks = 0;
};

// The paged KV cache: per-layer geometry and storage, one block bookkeeping
// (block ids index every layer alike).
struct KvCacheView {
  const KvLayerView* layers = nullptr;  // [num_layers]
  int32_t num_layers = 0;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t num_rings = 0;  // rings of the sliding layers with ring_blocks > 0

  // Layer `l`, or null when out of range.
  const KvLayerView* layer(int64_t l) const {
    return layers != nullptr && l >= 0 && l < num_layers ? layers + l : nullptr;
  }
};

#if defined(__CUDACC__)
#define MG_KV_FN __host__ __device__ inline
#else
#define MG_KV_FN inline
#endif

// Where one sequence's logical KV block b (positions [b * block_size, (b + 1) *
// block_size)) lives in one layer: its block-table entry, or for a ring layer
// block b mod ring_blocks of its ring. Kernels index it like the table.
struct KvBlockMap {
  const int32_t* table = nullptr;  // the sequence's block_tables row
  int64_t ring_base = 0;           // ring * ring_blocks
  int32_t ring_blocks = 0;         // 0: paged by table

  MG_KV_FN int64_t operator[](int64_t b) const {
    return ring_blocks > 0 ? ring_base + b % ring_blocks : static_cast<int64_t>(table[b]);
  }
};

// Row blocks a layer's arrays hold: num_blocks, or num_rings * ring_blocks.
MG_KV_FN int64_t KvLayerRowBlocks(const KvCacheView& kv, const KvLayerView& layer) {
  return layer.ring_blocks > 0 ? static_cast<int64_t>(kv.num_rings) * layer.ring_blocks
                               : static_cast<int64_t>(kv.num_blocks);
}

// Sequence `seq`'s blocks in `layer`, with its ring (0 when the ring is missing
// or out of range; KvRingValid says which).
MG_KV_FN KvBlockMap KvBlocksOf(const ForwardMetaView& meta, const KvCacheView& kv,
                               const KvLayerView& layer, int32_t seq) {
  KvBlockMap map;
  map.table = meta.block_tables + static_cast<int64_t>(seq) * meta.max_blocks_per_seq;
  map.ring_blocks = layer.ring_blocks;
  if (layer.ring_blocks > 0) {
    const int32_t ring = meta.kv_rings != nullptr ? meta.kv_rings[seq] : -1;
    map.ring_base =
        ring >= 0 && ring < kv.num_rings ? static_cast<int64_t>(ring) * layer.ring_blocks : 0;
  }
  return map;
}

// False for a ring layer when sequence `seq` has no valid ring.
MG_KV_FN bool KvRingValid(const ForwardMetaView& meta, const KvCacheView& kv,
                          const KvLayerView& layer, int32_t seq) {
  if (layer.ring_blocks <= 0) return true;
  const int32_t ring = meta.kv_rings != nullptr ? meta.kv_rings[seq] : -1;
  return ring >= 0 && ring < kv.num_rings;
}

// The slot (row index in the layer's arrays) token t writes, or -1: slot_mapping for
// a paged layer, the ring slot of its position for a ring layer.
MG_KV_FN int64_t KvWriteSlot(const ForwardMetaView& meta, const KvCacheView& kv,
                             const KvLayerView& layer, int64_t t) {
  if (layer.ring_blocks <= 0) {
    const int64_t slot = meta.slot_mapping[t];
    return slot < static_cast<int64_t>(kv.num_blocks) * kv.block_size ? slot : -1;
  }
  const int32_t seq = meta.batch_id_per_token[t];
  const int32_t position = meta.positions[t];
  if (seq < 0 || seq >= meta.num_seqs || position < 0 || !KvRingValid(meta, kv, layer, seq)) {
    return -1;
  }
  const KvBlockMap map = KvBlocksOf(meta, kv, layer, seq);
  return map[position / kv.block_size] * kv.block_size + position % kv.block_size;
}

// A plan step's parameter arrays are at most this long (the wire format).
constexpr int kMaxKernelInts = 16;
constexpr int kMaxKernelFloats = 8;
// A decoded params struct fits in this many bytes.
constexpr size_t kMaxKernelParamBytes = 128;

// Everything one kernel call needs.
struct KernelArgs {
  // The step's ForwardMeta, for ops that declare NeedsForwardMeta; null for
  // every other op, whose kernels therefore treat all rows as real (their rows
  // need not be tokens: unfused MoE runs silu_mul over (token, expert) pairs).
  const ForwardMetaView* meta = nullptr;
  const KvCacheView* kv = nullptr;
  const TensorArg* in = nullptr;
  int num_in = 0;
  const TensorArg* out = nullptr;
  int num_out = 0;
  int num_threads = 1;
  // This rank's end of the group, set by the runtime for collective ops
  // (ep_dispatch, ep_combine); null for every other op.
  Communicator* comm = nullptr;
  // The op's parameters, decoded once when the step is bound: a struct of
  // ir/op_params.h, identified by `params_info`. Kernels read it with
  // Params<P>(args); BindStep, the interpreter and tests write it with
  // SetParams. Null / empty for an op without parameters.
  const ParamsInfo* params_info = nullptr;
  alignas(std::max_align_t) std::byte params[kMaxKernelParamBytes] = {};
};

using KernelFn = void (*)(const KernelArgs&);

// Reports a kernel called against its shape or dtype contract and aborts.
// Load-time re-verification of every step (runtime/program_check) rejects
// such a step in a plan, so reaching this is a bug in moegraph, not bad input:
// it is never answered with a quiet zero tensor.
[[noreturn]] void KernelContractViolation(const char* kernel, const char* what);

#define MG_KERNEL_CONTRACT(cond, kernel, what)                      \
  do {                                                              \
    if (!(cond)) ::moegraph::KernelContractViolation(kernel, what); \
  } while (0)

// The op's parameters as P. Calling a kernel with another op's parameters
// (or none) is a contract violation, not a misread.
template <OpParamsStruct P>
const P& Params(const KernelArgs& args) {
  static_assert(sizeof(P) <= kMaxKernelParamBytes && alignof(P) <= alignof(std::max_align_t));
  MG_KERNEL_CONTRACT(args.params_info == &kParamsInfo<P>, P::kName,
                     "the kernel was called without these parameters");
  return *std::launder(reinterpret_cast<const P*>(args.params));
}

template <OpParamsStruct P>
void SetParams(KernelArgs& args, const P& params) {
  static_assert(sizeof(P) <= kMaxKernelParamBytes && alignof(P) <= alignof(std::max_align_t));
  ::new (static_cast<void*>(args.params)) P(params);
  args.params_info = &kParamsInfo<P>;
}

// Decodes a step's wire arrays (info.num_ints / info.num_floats entries) into
// args. The caller has checked the lengths and that the struct fits.
inline void SetParamsFromWire(KernelArgs& args, const ParamsInfo& info, const int64_t* ints,
                              const float* floats) {
  info.decode(ints, floats, args.params);
  args.params_info = &info;
}

}  // namespace moegraph
