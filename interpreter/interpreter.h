// The eager interpreter: runs a graph (generic or specialized) op by op with
// each op's reference CPU kernel. It is the correctness baseline every
// compiled path is checked against.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/weights.h"
#include "ir/graph.h"
#include "kernels/kernel_abi.h"
#include "runtime/forward_meta.h"
#include "runtime/kv_cache.h"
#include "support/status.h"

namespace moegraph {

struct HostTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  int64_t numel() const;
};

// Concrete dims of `type` with `symbols` (e.g. {"T": 7, "B": 2}) substituted.
StatusOr<std::vector<int64_t>> ConcreteShape(const Type& type,
                                             const std::map<std::string, int64_t>& symbols);

// Runs `graph`. `inputs` are the data inputs after %meta, in order; their
// shapes must match the graph's input types under `symbols`.
StatusOr<std::vector<HostTensor>> InterpretGraph(const Graph& graph,
                                                 const std::map<std::string, int64_t>& symbols,
                                                 const WeightArgs& weights,
                                                 const std::vector<TensorArg>& inputs,
                                                 const ForwardMetaView& meta, const KvCacheView& kv,
                                                 int num_threads);

// A model graph run eagerly step after step, with its own paged KV cache:
// the generic graph with T = the step's tokens and B = its sequences.
class EagerRunner {
 public:
  EagerRunner(const Graph& graph, const WeightArgs& weights, KvCache kv_cache, int32_t max_tokens,
              int32_t max_seqs, int num_threads);

  // Runs one step; returns the last-token logits of each sequence [B, vocab].
  // Reserves KV blocks for each sequence as needed.
  StatusOr<HostTensor> Step(const std::vector<SequenceStep>& batch);
  void Release(int64_t seq_id) { kv_.Release(seq_id); }
  const KvCache& kv_cache() const { return kv_; }

 private:
  const Graph& graph_;
  const WeightArgs& weights_;
  KvCache kv_;
  ForwardMetaBuffers meta_;
  int num_threads_;
};

}  // namespace moegraph
