// Specialization keys: printing, parsing, enumeration and selection.
#include "ir/spec_key.h"

#include <algorithm>
#include <charconv>

#include "support/strings.h"

namespace moegraph {

const char* MoePhaseName(MoePhase phase) {
  return phase == MoePhase::kDecode ? "decode" : "prefill";
}

std::string SpecKey::ToString() const {
  return std::string("phase=") + MoePhaseName(phase) + ",chunks=" + std::to_string(moe_num_chunk) +
         ",max_chunks=" + std::to_string(max_moe_num_chunk) +
         ",tokens=" + std::to_string(token_bucket) + ",seqs=" + std::to_string(seq_bucket);
}

StatusOr<SpecKey> ParseSpecKey(std::string_view text, const SpecKey& defaults) {
  SpecKey key = defaults;
  bool max_given = false;
  for (const std::string& field : SplitString(text, ',')) {
    const size_t eq = field.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument("key field '" + field + "' is not name=value (e.g. " +
                             "phase=decode,chunks=1,tokens=8)");
    }
    const std::string name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "phase") {
      if (value == "decode") {
        key.phase = MoePhase::kDecode;
      } else if (value == "prefill") {
        key.phase = MoePhase::kPrefill;
      } else {
        return InvalidArgument("key field phase='" + value + "': expected prefill or decode");
      }
      continue;
    }
    int32_t number = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
    if (ec != std::errc() || end != value.data() + value.size() || number < 0) {
      return InvalidArgument("key field " + name + "='" + value +
                             "': expected a non-negative integer");
    }
    if (name == "chunks") {
      key.moe_num_chunk = number;
    } else if (name == "max_chunks") {
      key.max_moe_num_chunk = number;
      max_given = true;
    } else if (name == "tokens") {
      key.token_bucket = number;
    } else if (name == "seqs") {
      key.seq_bucket = number;
    } else {
      return InvalidArgument("unknown key field '" + name +
                             "'; expected phase, chunks, max_chunks, tokens, seqs");
    }
  }
  if (!max_given) key.max_moe_num_chunk = std::max(key.max_moe_num_chunk, key.moe_num_chunk);
  return key;
}

namespace {

int32_t ChunksFor(int64_t num_tokens, int32_t chunk_size) {
  if (num_tokens <= chunk_size) return 1;
  return static_cast<int32_t>((num_tokens + chunk_size - 1) / chunk_size);
}

int32_t SeqBucket(MoePhase phase, int32_t token_bucket, const KeySetOptions& options) {
  return phase == MoePhase::kDecode ? token_bucket
                                    : std::min(token_bucket, options.max_prefill_seqs);
}

}  // namespace

StatusOr<std::vector<SpecKey>> EnumerateKeys(const KeySetOptions& options) {
  if (options.chunk_size <= 0) return InvalidArgument("chunk size must be > 0");
  if (options.max_chunks <= 0) return InvalidArgument("max chunks must be > 0");
  if (options.expert_parallel <= 0) return InvalidArgument("expert-parallel ranks must be > 0");
  if (options.max_prefill_seqs <= 0) return InvalidArgument("max prefill seqs must be > 0");
  if (!options.prefill && !options.decode) return InvalidArgument("no phase selected");
  std::vector<SpecKey> keys;
  for (MoePhase phase : {MoePhase::kPrefill, MoePhase::kDecode}) {
    if ((phase == MoePhase::kPrefill && !options.prefill) ||
        (phase == MoePhase::kDecode && !options.decode)) {
      continue;
    }
    std::vector<int32_t> buckets =
        phase == MoePhase::kDecode ? options.decode_buckets : options.prefill_buckets;
    if (buckets.empty()) {
      return InvalidArgument(std::string("no token buckets given for ") + MoePhaseName(phase));
    }
    std::sort(buckets.begin(), buckets.end());
    if (buckets.front() <= 0) return InvalidArgument("token buckets must be > 0");
    if (std::adjacent_find(buckets.begin(), buckets.end()) != buckets.end()) {
      return InvalidArgument(std::string("duplicate token bucket for ") + MoePhaseName(phase));
    }
    // Expert parallelism: the ranks agree on the step's largest chunk count, which may be any
    // count this phase's buckets can need, from the rank's own up.
    const int32_t phase_max_chunks = ChunksFor(buckets.back(), options.chunk_size);
    int32_t previous = 0;
    for (int32_t bucket : buckets) {
      const int32_t lo = ChunksFor(previous + 1, options.chunk_size);
      const int32_t hi = ChunksFor(bucket, options.chunk_size);
      // A bucket whose steps would need more chunks than the key set has
      // would leave those token counts without a key: refuse it up front.
      if (hi > options.max_chunks) {
        return InvalidArgument(
            std::string(MoePhaseName(phase)) + " token bucket " + std::to_string(bucket) +
            " needs up to " + std::to_string(hi) + " MoE chunks of " +
            std::to_string(options.chunk_size) + " rows, but max chunks is " +
            std::to_string(options.max_chunks) + ": raise max chunks to " + std::to_string(hi) +
            ", raise the chunk size, or use buckets of at most " +
            std::to_string(static_cast<int64_t>(options.max_chunks) * options.chunk_size) +
            " tokens");
      }
      for (int32_t n = lo; n <= hi; ++n) {
        const int32_t max_agreed = options.expert_parallel > 1 ? phase_max_chunks : n;
        for (int32_t m = n; m <= max_agreed; ++m) {
          SpecKey key;
          key.phase = phase;
          key.moe_num_chunk = n;
          key.max_moe_num_chunk = m;
          key.token_bucket = bucket;
          key.seq_bucket = SeqBucket(phase, bucket, options);
          keys.push_back(key);
        }
      }
      previous = bucket;
    }
  }
  std::stable_sort(keys.begin(), keys.end(), [](const SpecKey& a, const SpecKey& b) {
    return a.token_bucket > b.token_bucket;
  });
  return keys;
}

SpecKey KeyForStep(MoePhase phase, int32_t num_tokens, int32_t num_seqs,
                   const KeySetOptions& options, int32_t agreed_max_chunks) {
  SpecKey key;
  key.phase = phase;
  key.moe_num_chunk = ChunksFor(num_tokens, options.chunk_size);
  key.max_moe_num_chunk = std::max(key.moe_num_chunk, agreed_max_chunks);
  std::vector<int32_t> buckets =
      phase == MoePhase::kDecode ? options.decode_buckets : options.prefill_buckets;
  std::sort(buckets.begin(), buckets.end());
  const int32_t needed = std::max(num_tokens, phase == MoePhase::kDecode ? num_seqs : 0);
  key.token_bucket = needed;  // not a bucket: no key of the plan will match
  for (int32_t bucket : buckets) {
    if (bucket >= needed && SeqBucket(phase, bucket, options) >= num_seqs) {
      key.token_bucket = bucket;
      break;
    }
  }
  key.seq_bucket = SeqBucket(phase, key.token_bucket, options);
  if (key.seq_bucket < num_seqs) key.seq_bucket = num_seqs;
  return key;
}

}  // namespace moegraph
