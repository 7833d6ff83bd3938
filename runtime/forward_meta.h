// ForwardMeta on the host: the phase and chunk rules, and the static buffers
// that hold a step's dynamic fields (one allocation, reused every step, so a
// captured program can keep pointers to them).
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "ir/spec_key.h"
#include "kernels/kernel_abi.h"
#include "runtime/kv_cache.h"
#include "support/status.h"

namespace moegraph {

// One sequence's share of a step.
struct SequenceStep {
  int64_t seq_id = 0;
  std::vector<int32_t> tokens;  // the tokens this step feeds
  int32_t num_cached = 0;       // tokens of this sequence already in the KV cache
};

// DESIGN §3: decode only if every sequence feeds exactly one token after a
// prompt; otherwise prefill.
MoePhase PhaseOf(const std::vector<SequenceStep>& batch);
// DESIGN §3: ceil(num_tokens / chunk_size) when num_tokens > chunk_size, else 1.
int64_t MoeNumChunks(int64_t num_tokens, int64_t chunk_size);

class ForwardMetaBuffers {
 public:
  // Capacities from an untrusted plan: InvalidArgument for a negative one,
  // ResourceExhausted (naming the array) when the buffers cannot be allocated.
  static StatusOr<ForwardMetaBuffers> Create(int32_t max_tokens, int32_t max_seqs,
                                             int32_t max_blocks_per_seq);
  // Small trusted capacities; throws std::bad_alloc like any container.
  ForwardMetaBuffers(int32_t max_tokens, int32_t max_seqs, int32_t max_blocks_per_seq);
  // Moves keep the arrays (and so view()'s pointers) where they are.
  ForwardMetaBuffers(ForwardMetaBuffers&&) noexcept = default;
  ForwardMetaBuffers& operator=(ForwardMetaBuffers&&) noexcept = default;

  // Writes the batch's fields, padded to the given capacities (which must fit
  // the buffers). The KV blocks of every sequence must already be reserved.
  // The work is proportional to this batch and the previous one, not to the
  // buffers' capacities: only what the previous fill wrote is reset to the
  // padding values, so the buffers always read as a fresh fill of this batch.
  Status Fill(const std::vector<SequenceStep>& batch, int32_t token_capacity, int32_t seq_capacity,
              const KvCache& kv);

  const ForwardMetaView& view() const { return view_; }
  // Token ids, [max_tokens], padded with 0.
  const int32_t* tokens() const { return tokens_.data(); }
  int32_t max_tokens() const { return max_tokens_; }
  int32_t max_seqs() const { return max_seqs_; }

 private:
  int32_t max_tokens_, max_seqs_, max_blocks_per_seq_;
  // What the last fill wrote beyond the padding values: leading token entries,
  // leading sequence entries, cu_seqlens_q entries, and per block-table row.
  int32_t written_tokens_ = 0, written_seqs_ = 0, written_cu_seqlens_ = 0;
  std::vector<int32_t> written_table_entries_;  // [max_seqs]
  std::vector<int32_t> tokens_;
  // One buffer per kMetaArrays entry; view_'s pointers point into them.
  std::vector<int32_t> arrays_[std::size(kMetaArrays)];
  ForwardMetaView view_;
};

}  // namespace moegraph
