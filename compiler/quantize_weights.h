// compile-model --weights int8: a 16/32-bit checkpoint's matmul weights quantized once at
// compile time into a packed weights file beside the plan, and the generic graph's weight
// ops pointed at it (QuantScheme::kInt8Block, ir/quant.h). The plan then replays like any
// other; the runtime maps the packed file next to the checkpoint (Checkpoint::AddFile).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/safetensors.h"
#include "ir/graph.h"
#include "support/status.h"

namespace moegraph {

// The weights a plan reads: the checkpoint's own, or int8 blocks compile-model writes.
enum class WeightFormat { kCheckpoint, kInt8 };

// "checkpoint", "int8".
std::optional<WeightFormat> ParseWeightFormat(std::string_view name);

// The int8 blocks compile-model writes: 1 x 32 values per f32 scale (llama.cpp's Q8_0 block).
inline constexpr int32_t kInt8BlockCols = 32;
// Segments of a packed weights file start at multiples of this (a page).
inline constexpr uint64_t kPackedWeightsAlignment = 4096;

// Where compile-model writes the packed weights of plan `plan_path`: beside it, its stem
// plus ".int8.safetensors" ("out/a3b.plan" -> "out/a3b.int8.safetensors").
std::string PackedWeightsPath(const std::string& plan_path);

// Quantizes `rows` rows of `cols` f32 values (row-major) to symmetric int8 blocks of 1 x
// block_cols: each block's scale is s = max |w| / 127 (0 for an all-zero block) and each
// value's code round-half-away(w / s) in [-127, 127], so |w - code * s| <= s / 2. `q` takes
// rows * cols codes, `scales` rows * ceil(cols / block_cols). A non-finite value is
// InvalidArgument naming its row and column (a checkpoint holding one is broken).
Status QuantizeInt8Rows(const float* w, int64_t rows, int64_t cols, int64_t block_cols, int8_t* q,
                        float* scales);

// What QuantizeWeights did.
struct QuantizeReport {
  int64_t weights = 0;            // weight ops quantized
  uint64_t source_bytes = 0;      // their bytes in the checkpoint
  uint64_t packed_bytes = 0;      // their codes and scales in the packed file
  std::vector<std::string> kept;  // weight names left as they were, with the reason
};

// Rewrites every weight op of `graph` whose value only matmuls read as an [..., N, K] weight
// (linear and linear_silu_mul weights, mlp gate/up/down, moe expert weights in out-major
// layout) and that is f32/bf16/f16 and not already quantized: its values (from `checkpoint`)
// become int8 blocks of 1 x kInt8BlockCols with f32 scales in the safetensors file `path`
// (written atomically, tensors 4 KiB-aligned, "int8." + the weight's name with "{e}"
// dropped, one [experts, N, K] tensor per stacked weight), and the op reads them from
// there. Weights any other op reads (an embedding tied to the LM head, routers, norms,
// biases, [in, out] expert weights) stay as they are and are listed in `kept`. `progress`
// (or empty) is called after each weight with (done, total).
StatusOr<QuantizeReport> QuantizeWeights(
    Graph& graph, const Checkpoint& checkpoint, const std::string& path,
    const std::function<void(size_t done, size_t total)>& progress = {});

}  // namespace moegraph
