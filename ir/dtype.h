// Element types of IR tensors, checkpoints and kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace moegraph {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kI32,
  kI64,
  kU8,
  kFp8E4M3,
  // OCP MXFP4 elements (FP4 e2m1, two per byte, the even element in the low nibble): the
  // storage of an "mxfp4" quantized weight (ir/quant.h). Its shape is the logical one.
  kMxfp4,
  // Signed 8-bit integers: the storage of an "int8_block" quantized weight (ir/quant.h).
  kI8,
};

// IR spelling: "f32", "f16", "bf16", "i32", "i64", "u8", "fp8e4m3", "mxfp4", "i8".
const char* DTypeName(DType dtype);
std::optional<DType> ParseDType(std::string_view name);
// Safetensors spelling: "F32", "F16", "BF16", "I32", "I64", "U8", "F8_E4M3", "I8"; "U8" for mxfp4,
// which checkpoints store as bytes (`*_blocks`). DTypeFromSafetensors never yields kMxfp4.
const char* DTypeSafetensorsName(DType dtype);
std::optional<DType> DTypeFromSafetensors(std::string_view name);
// Bytes per element; 0 for kMxfp4 (half a byte: use DTypeStorageBytes).
size_t DTypeBytes(DType dtype);
int DTypeBits(DType dtype);
// Bytes `numel` elements take, rounded up to whole bytes.
int64_t DTypeStorageBytes(DType dtype, int64_t numel);
bool IsFloat(DType dtype);
// A quantized weight's storage format (fp8e4m3, mxfp4, i8): a weight of this dtype needs scales.
bool IsQuantStorage(DType dtype);

}  // namespace moegraph
