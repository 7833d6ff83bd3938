// DType names and sizes.
#include "ir/dtype.h"

#include <array>

namespace moegraph {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* ir_name;
  const char* safetensors_name;
  int bits;
  bool is_float;
};

constexpr std::array<DTypeInfo, 10> kDTypes = {{
    {DType::kF32, "f32", "F32", 32, true},
    {DType::kF16, "f16", "F16", 16, true},
    {DType::kBF16, "bf16", "BF16", 16, true},
    {DType::kI32, "i32", "I32", 32, false},
    {DType::kI64, "i64", "I64", 64, false},
    {DType::kU8, "u8", "U8", 8, false},
    {DType::kFp8E4M3, "fp8e4m3", "F8_E4M3", 8, true},
    {DType::kMxfp4, "mxfp4", "U8", 4, true},
    {DType::kI8, "i8", "I8", 8, false},
    {DType::kI4, "i4", "U8", 4, false},
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
  return static_cast<size_t>(Info(dtype).bits / 8);
}
int DTypeBits(DType dtype) {
  return Info(dtype).bits;
}
int64_t DTypeStorageBytes(DType dtype, int64_t numel) {
  return (numel * Info(dtype).bits + 7) / 8;
}
bool IsQuantStorage(DType dtype) {
  return dtype == DType::kFp8E4M3 || dtype == DType::kMxfp4 || dtype == DType::kI8 ||
         dtype == DType::kI4;
}
bool IsNibbleStorage(DType dtype) {
  return dtype == DType::kMxfp4 || dtype == DType::kI4;
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
    if (!IsNibbleStorage(info.dtype) && name == info.safetensors_name) return info.dtype;
  }
  return std::nullopt;
}

}  // namespace moegraph
