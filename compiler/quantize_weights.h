// compile-model --weights int8|int4: a 16/32-bit checkpoint's matmul weights quantized once
// at compile time into a packed weights file beside the plan, and the generic graph's weight
// ops pointed at it (QuantScheme::kInt8Block / kInt4Block, ir/quant.h). The plan then
// replays like any other; the runtime maps the packed file next to the checkpoint
// (Checkpoint::AddFile).
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

// The weights a plan reads: the checkpoint's own, or int8 / int4 blocks compile-model writes.
enum class WeightFormat { kCheckpoint, kInt8, kInt4 };

// "checkpoint", "int8", "int4".
std::optional<WeightFormat> ParseWeightFormat(std::string_view name);
const char* WeightFormatName(WeightFormat format);

// The columns one f32 scale covers by default: 32 (llama.cpp's Q8_0 / Q4_0 block: 9 / 5 bits
// per weight with an f32 scale); 64 makes them 8.5 / 4.5.
inline constexpr int32_t kDefaultQuantBlockCols = 32;
// Segments of a packed weights file start at multiples of this (a page).
inline constexpr uint64_t kPackedWeightsAlignment = 4096;

// Where compile-model writes the packed weights of plan `plan_path`: beside it, its stem
// plus ".int8.safetensors" / ".int4.safetensors" ("out/a3b.plan" -> "out/a3b.int8.safetensors").
std::string PackedWeightsPath(const std::string& plan_path, WeightFormat format);

// Quantizes `rows` rows of `cols` f32 values (row-major) to symmetric int8 blocks of 1 x
// block_cols: each block's scale is s = max |w| / 127 (0 for an all-zero block) and each
// value's code round-half-away(w / s) in [-127, 127], so |w - code * s| <= s / 2. `q` takes
// rows * cols codes, `scales` rows * ceil(cols / block_cols). A non-finite value is
// InvalidArgument naming its row and column (a checkpoint holding one is broken).
// `first_row`: the index of row 0 in the matrix, for messages.
Status QuantizeInt8Rows(const float* w, int64_t rows, int64_t cols, int64_t block_cols, int8_t* q,
                        float* scales, int64_t first_row = 0);

// Quantizes `rows` rows of `cols` f32 values (cols even) to int4 blocks of 1 x block_cols, as
// llama.cpp's Q4_0 does: each block's scale is d = m / -8 for its value m of largest
// magnitude (0 for an all-zero block), each value's code clamp(round-half-away(w / d), -8, 7),
// so m is exactly -8 d and every value is within |d| / 2 but those clamped to 7 (w / d > 7.5),
// within |d|. Codes are stored two a byte as code + 8, element 2j in the low nibble of byte j
// (DType::kI4): `q` takes rows * cols / 2 bytes, `scales` rows * ceil(cols / block_cols). A
// non-finite value is InvalidArgument naming its row and column.
Status QuantizeInt4Rows(const float* w, int64_t rows, int64_t cols, int64_t block_cols, uint8_t* q,
                        float* scales, int64_t first_row = 0);

// What QuantizeWeights writes.
struct QuantizeOptions {
  WeightFormat format = WeightFormat::kInt8;    // kInt8 or kInt4
  int32_t block_cols = kDefaultQuantBlockCols;  // 32 or 64 (int8: a multiple of 8)
};

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
// become int8 (I8 codes) or int4 (U8 bytes of two codes) blocks of 1 x options.block_cols
// with f32 scales in the safetensors file `path` (written atomically, tensors 4 KiB-aligned,
// "int8." / "int4." + the weight's name with "{e}" dropped, one [experts, N, K] tensor per
// stacked weight, scales as that name + ".scale"), and the op reads them from there. Weights
// any other op reads (an embedding tied to the LM head, routers, norms, biases, [in, out]
// expert weights), and for int4 those whose K is not a multiple of 32, stay as they are and
// are listed in `kept`. `progress` (or empty) is called after each weight with (done, total).
StatusOr<QuantizeReport> QuantizeWeights(
    Graph& graph, const Checkpoint& checkpoint, const std::string& path,
    const QuantizeOptions& options,
    const std::function<void(size_t done, size_t total)>& progress = {});

}  // namespace moegraph
