// DType names and sizes.
#include "ir/dtype.h"

#include <array>

namespace moegraph {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* ir_name;
  const char* safetensors_name;
  size_t bytes;
  bool is_float;
};

constexpr std::array<DTypeInfo, 7> kDTypes = {{
    {DType::kF32, "f32", "F32", 4, true},
    {DType::kF16, "f16", "F16", 2, true},
    {DType::kBF16, "bf16", "BF16", 2, true},
    {DType::kI32, "i32", "I32", 4, false},
    {DType::kI64, "i64", "I64", 8, false},
    {DType::kU8, "u8", "U8", 1, false},
    {DType::kFp8E4M3, "fp8e4m3", "F8_E4M3", 1, true},
}};

const DTypeInfo& Info(DType dtype) {
  return kDTypes[static_cast<size_t>(dtype)];
}

}  // namespace

const char* DTypeName(DType dtype) {
  return Info(dtype).ir_name;
}
const char* DTypeSafetensorsName(DType dtype) {
  return Info(dtype).safetensors_name;
}
size_t DTypeBytes(DType dtype) {
  return Info(dtype).bytes;
}
bool IsFloat(DType dtype) {
  return Info(dtype).is_float;
}

std::optional<DType> ParseDType(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.ir_name) return info.dtype;
  }
  return std::nullopt;
}

std::optional<DType> DTypeFromSafetensors(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.safetensors_name) return info.dtype;
  }
  return std::nullopt;
}

}  // namespace moegraph
