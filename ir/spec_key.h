// The specialization key: the static half of ForwardMeta. One compiled
// program exists per key (DESIGN §3).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "support/status.h"

namespace moegraph {

enum class MoePhase : uint8_t { kPrefill, kDecode };
const char* MoePhaseName(MoePhase phase);

struct SpecKey {
  MoePhase phase = MoePhase::kPrefill;
  int32_t moe_num_chunk = 1;
  int32_t max_moe_num_chunk = 1;  // >= moe_num_chunk; chunks past it run empty
  int32_t token_bucket = 0;       // padded token count (T)
  int32_t seq_bucket = 0;         // padded sequence count (B)

  bool operator==(const SpecKey& other) const = default;
  // "phase=decode,chunks=1,max_chunks=1,tokens=8,seqs=8".
  std::string ToString() const;
};

// Parses the ToString form. Omitted fields keep `defaults`' values (graph-dump's
// --key); max_chunks defaults to at least chunks.
StatusOr<SpecKey> ParseSpecKey(std::string_view text, const SpecKey& defaults = {});

// The rules that decide which keys a plan holds.
struct KeySetOptions {
  bool prefill = true;
  bool decode = true;
  int32_t chunk_size = 256;  // MoE chunk capacity in rows
  int32_t max_chunks = 8;    // the largest moe_num_chunk compiled
  // Expert-parallel ranks (DESIGN §9). Above 1 the ranks agree before each step on the
  // largest chunk count of any rank, and each runs that many chunks (those past its own count
  // on no rows) so that their collectives line up: the key set then holds, for every own
  // count n, every agreed count m from n to the most its phase's largest bucket needs.
  int32_t expert_parallel = 1;
  std::vector<int32_t> decode_buckets = {1, 2, 4, 8, 16, 32, 64};
  std::vector<int32_t> prefill_buckets = {16, 32, 64, 128, 256, 512, 1024, 2048};
  int32_t max_prefill_seqs = 16;  // B of prefill keys: min(T, this)

  bool operator==(const KeySetOptions& other) const = default;
};

// Every key a step can need under `options`, largest token bucket first.
// For each phase and bucket T (the previous bucket below it P), the chunk
// counts ceil(n / chunk_size) for n in (P, T] (and, with expert_parallel > 1,
// each with every agreed maximum above it). A bucket needing more than
// max_chunks chunks is an error (its largest steps would have no key).
StatusOr<std::vector<SpecKey>> EnumerateKeys(const KeySetOptions& options);

// The key a step of `num_tokens` tokens in `num_seqs` sequences needs: the
// phase, the chunk rule, and the smallest bucket that fits. `agreed_max_chunks`
// is the ranks' agreed chunk count (expert parallelism; 0 on one rank): the
// key's max_moe_num_chunk is the larger of it and the step's own count.
SpecKey KeyForStep(MoePhase phase, int32_t num_tokens, int32_t num_seqs,
                   const KeySetOptions& options, int32_t agreed_max_chunks = 0);

}  // namespace moegraph
