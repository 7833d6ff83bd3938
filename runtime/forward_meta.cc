// ForwardMeta construction from a batch.
#include "runtime/forward_meta.h"

#include <algorithm>
#include <new>

#include "support/memory.h"

namespace moegraph {

MoePhase PhaseOf(const std::vector<SequenceStep>& batch) {
  if (batch.empty()) return MoePhase::kPrefill;
  for (const SequenceStep& s : batch) {
    if (s.tokens.size() != 1 || s.num_cached == 0) return MoePhase::kPrefill;
  }
  return MoePhase::kDecode;
}

int64_t MoeNumChunks(int64_t num_tokens, int64_t chunk_size) {
  if (chunk_size <= 0 || num_tokens <= chunk_size) return 1;
  return (num_tokens + chunk_size - 1) / chunk_size;
}

StatusOr<ForwardMetaBuffers> ForwardMetaBuffers::Create(int32_t max_tokens, int32_t max_seqs,
                                                        int32_t max_blocks_per_seq) {
  if (max_tokens < 0 || max_seqs < 0 || max_blocks_per_seq < 0) {
    return InvalidArgument("ForwardMeta capacities must be >= 0, got " +
                           std::to_string(max_tokens) + " tokens, " + std::to_string(max_seqs) +
                           " sequences, " + std::to_string(max_blocks_per_seq) +
                           " blocks per sequence");
  }
  // The token ids and every ForwardMeta array (the block tables dominate).
  uint64_t table_entries = 0, entries = static_cast<uint64_t>(max_tokens), bytes = 0;
  bool overflow = __builtin_mul_overflow(static_cast<uint64_t>(max_seqs),
                                         static_cast<uint64_t>(max_blocks_per_seq), &table_entries);
  for (const MetaArray& a : kMetaArrays) {
    overflow = overflow ||
               __builtin_add_overflow(entries,
                                      MetaArrayLength(a.extent, static_cast<uint64_t>(max_tokens),
                                                      static_cast<uint64_t>(max_seqs),
                                                      static_cast<uint64_t>(max_blocks_per_seq)),
                                      &entries);
  }
  if (overflow || __builtin_mul_overflow(entries, sizeof(int32_t), &bytes)) {
    return ResourceExhausted("ForwardMeta buffers for " + std::to_string(max_tokens) +
                             " tokens and " + std::to_string(max_seqs) + " sequences of " +
                             std::to_string(max_blocks_per_seq) +
                             " KV blocks each: the size overflows");
  }
  if (ExceedsPhysicalMemory(bytes)) {
    return ResourceExhausted("cannot allocate the ForwardMeta buffers (" + std::to_string(bytes) +
                             " bytes): more than this machine's " +
                             std::to_string(PhysicalMemoryBytes()) + " bytes of memory");
  }
  try {
    return ForwardMetaBuffers(max_tokens, max_seqs, max_blocks_per_seq);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("cannot allocate the ForwardMeta buffers (" + std::to_string(bytes) +
                             " bytes: " + std::to_string(max_tokens) + " tokens, " +
                             std::to_string(max_seqs) + " sequences, block tables of " +
                             std::to_string(table_entries) + " entries)");
  }
}

ForwardMetaBuffers::ForwardMetaBuffers(int32_t max_tokens, int32_t max_seqs,
                                       int32_t max_blocks_per_seq)
    : max_tokens_(max_tokens), max_seqs_(max_seqs), max_blocks_per_seq_(max_blocks_per_seq) {
  tokens_.assign(max_tokens, 0);
  for (size_t i = 0; i < std::size(kMetaArrays); ++i) {
    const MetaArray& a = kMetaArrays[i];
    arrays_[i].assign(MetaArrayLength(a.extent, max_tokens, max_seqs, max_blocks_per_seq),
                      a.padding);
    view_.*a.member = arrays_[i].data();
  }
  written_table_entries_.assign(max_seqs, 0);
  view_.max_blocks_per_seq = max_blocks_per_seq;
}

Status ForwardMetaBuffers::Fill(const std::vector<SequenceStep>& batch, int32_t token_capacity,
                                int32_t seq_capacity, const KvCache& kv) {
  int64_t num_tokens = 0;
  for (const SequenceStep& s : batch)
    num_tokens += static_cast<int64_t>(s.tokens.size());
  if (token_capacity > max_tokens_ || seq_capacity > max_seqs_) {
    return Internal("ForwardMeta capacities exceed the static buffers");
  }
  if (num_tokens > token_capacity || static_cast<int64_t>(batch.size()) > seq_capacity) {
    return InvalidArgument("batch of " + std::to_string(num_tokens) + " tokens in " +
                           std::to_string(batch.size()) + " sequences does not fit a bucket of " +
                           std::to_string(token_capacity) + " tokens / " +
                           std::to_string(seq_capacity) + " sequences");
  }
  // Check every sequence before writing anything.
  for (const SequenceStep& step : batch) {
    const std::vector<int32_t>& table = kv.BlockTable(step.seq_id);
    const int64_t total = step.num_cached + static_cast<int64_t>(step.tokens.size());
    if (kv.BlocksFor(total) > static_cast<int64_t>(table.size())) {
      return FailedPrecondition("sequence " + std::to_string(step.seq_id) +
                                " has no KV blocks reserved for " + std::to_string(total) +
                                " tokens");
    }
    if (kv.has_rings() && (kv.RingOf(step.seq_id) < 0 || static_cast<int64_t>(step.tokens.size()) >
                                                             kv.config().max_step_tokens)) {
      // More tokens than the rings were sized for would overwrite keys still in a window.
      return FailedPrecondition("sequence " + std::to_string(step.seq_id) + " feeds " +
                                std::to_string(step.tokens.size()) +
                                " tokens; the sliding-window rings need a ring reserved and "
                                "at most " +
                                std::to_string(kv.config().max_step_tokens) + " tokens per step");
    }
    if (static_cast<int64_t>(table.size()) > max_blocks_per_seq_) {
      return InvalidArgument("sequence " + std::to_string(step.seq_id) + " needs " +
                             std::to_string(table.size()) + " KV blocks; at most " +
                             std::to_string(max_blocks_per_seq_) + " per sequence");
    }
  }

  // The arrays are this object's own buffers, named through the view.
  auto mut = [](const int32_t* p) { return const_cast<int32_t*>(p); };
  int32_t* const seq_lens_this_time = mut(view_.seq_lens_this_time);
  int32_t* const seq_lens_encoder = mut(view_.seq_lens_encoder);
  int32_t* const seq_lens_decoder = mut(view_.seq_lens_decoder);
  int32_t* const cu_seqlens_q = mut(view_.cu_seqlens_q);
  int32_t* const batch_id_per_token = mut(view_.batch_id_per_token);
  int32_t* const positions = mut(view_.positions);
  int32_t* const block_tables = mut(view_.block_tables);
  int32_t* const slot_mapping = mut(view_.slot_mapping);
  int32_t* const kv_rings = mut(view_.kv_rings);

  const int32_t block_size = kv.config().block_size;
  const auto num_seqs = static_cast<int32_t>(batch.size());
  int32_t t = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    const SequenceStep& step = batch[s];
    const std::vector<int32_t>& table = kv.BlockTable(step.seq_id);
    int32_t* row = block_tables + static_cast<size_t>(s) * max_blocks_per_seq_;
    std::copy(table.begin(), table.end(), row);
    const auto table_size = static_cast<int32_t>(table.size());
    if (written_table_entries_[s] > table_size) {
      std::fill(row + table_size, row + written_table_entries_[s], -1);
    }
    written_table_entries_[s] = table_size;
    seq_lens_this_time[s] = static_cast<int32_t>(step.tokens.size());
    seq_lens_encoder[s] = step.num_cached == 0 ? static_cast<int32_t>(step.tokens.size()) : 0;
    seq_lens_decoder[s] = step.num_cached;
    kv_rings[s] = kv.RingOf(step.seq_id);
    for (size_t i = 0; i < step.tokens.size(); ++i, ++t) {
      const int32_t pos = step.num_cached + static_cast<int32_t>(i);
      tokens_[t] = step.tokens[i];
      batch_id_per_token[t] = s;
      positions[t] = pos;
      slot_mapping[t] = table[pos / block_size] * block_size + pos % block_size;
    }
    cu_seqlens_q[s + 1] = t;
  }
  cu_seqlens_q[0] = 0;
  // Padding: reset what the previous fill wrote past this batch.
  for (int32_t s = num_seqs; s < written_seqs_; ++s) {
    int32_t* row = block_tables + static_cast<size_t>(s) * max_blocks_per_seq_;
    std::fill(row, row + written_table_entries_[s], -1);
    written_table_entries_[s] = 0;
  }
  for (const MetaArray& a : kMetaArrays) {
    int32_t* const array = mut(view_.*a.member);
    if (a.extent == MetaArrayExtent::kSeqs) {
      std::fill(array + num_seqs, array + std::max(num_seqs, written_seqs_), a.padding);
    } else if (a.extent == MetaArrayExtent::kTokens) {
      std::fill(array + t, array + std::max(t, written_tokens_), a.padding);
    }
  }
  std::fill(tokens_.begin() + t, tokens_.begin() + std::max(t, written_tokens_), 0);
  // Padded sequences end where the last real one does, up to the capacity.
  for (int32_t s = num_seqs + 1; s <= seq_capacity; ++s)
    cu_seqlens_q[s] = t;
  for (int32_t s = seq_capacity + 1; s < written_cu_seqlens_; ++s)
    cu_seqlens_q[s] = 0;
  written_tokens_ = t;
  written_seqs_ = num_seqs;
  written_cu_seqlens_ = std::max(num_seqs, seq_capacity) + 1;
  view_.num_tokens = t;
  view_.num_seqs = static_cast<int32_t>(batch.size());
  view_.token_capacity = token_capacity;
  view_.seq_capacity = seq_capacity;
  return Status::Ok();
}

}  // namespace moegraph
