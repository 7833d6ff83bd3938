// Synthetic steps for benchmarks: a batch that selects a given key, left in
// the engine's static buffers so the key can be replayed again and again.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/engine.h"

namespace moegraph {

// Runs one step of a synthetic batch that selects `key` (decode keys first
// get a one-token prompt per sequence). Returns the real token count, or 0
// when no batch selects the key; `seq_ids` receives the sequences to release.
StatusOr<int32_t> PrepareSyntheticStep(Engine& engine, const SpecKey& key,
                                       std::vector<int64_t>& seq_ids);

// The median of `values` (the upper one of an even count).
double Median(std::vector<double> values);

}  // namespace moegraph
