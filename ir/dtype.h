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
};

// IR spelling: "f32", "f16", "bf16", "i32", "i64", "u8", "fp8e4m3".
const char* DTypeName(DType dtype);
std::optional<DType> ParseDType(std::string_view name);
// Safetensors spelling: "F32", "F16", "BF16", "I32", "I64", "U8", "F8_E4M3".
const char* DTypeSafetensorsName(DType dtype);
std::optional<DType> DTypeFromSafetensors(std::string_view name);
size_t DTypeBytes(DType dtype);
bool IsFloat(DType dtype);

}  // namespace moegraph
