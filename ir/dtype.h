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
  // Signed 4-bit integers in [-8, 7], two per byte (the even element in the low nibble), each
  // stored as its value + 8: the storage of an "int4_block" quantized weight (ir/quant.h).
  kI4,
};

// IR spelling: "f32", "f16", "bf16", "i32", "i64", "u8", "fp8e4m3", "mxfp4", "i8", "i4".
const char* DTypeName(DType dtype);
std::optional<DType> ParseDType(std::string_view name);
// Safetensors spelling: "F32", "F16", "BF16", "I32", "I64", "U8", "F8_E4M3", "I8"; "U8" for mxfp4
// and i4, which files store as bytes (`*_blocks`, compile-model's int4 codes).
// DTypeFromSafetensors never yields kMxfp4 or kI4.
const char* DTypeSafetensorsName(DType dtype);
std::optional<DType> DTypeFromSafetensors(std::string_view name);
// Bytes per element; 0 for kMxfp4 and kI4 (half a byte: use DTypeStorageBytes).
size_t DTypeBytes(DType dtype);
int DTypeBits(DType dtype);
// Bytes `numel` elements take, rounded up to whole bytes.
int64_t DTypeStorageBytes(DType dtype, int64_t numel);
bool IsFloat(DType dtype);
// A quantized weight's storage format (fp8e4m3, mxfp4, i8, i4): a weight of this dtype needs
// scales.
bool IsQuantStorage(DType dtype);
// Two elements a byte (mxfp4, i4): a row of K elements is K / 2 bytes (K even).
bool IsNibbleStorage(DType dtype);

}  // namespace moegraph
