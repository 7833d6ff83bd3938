// IR types: tensors with static or symbolic dims, and !forward_meta.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "ir/dtype.h"

namespace moegraph {

// One tensor dimension: a static size, or a symbol bound at specialization
// (`T` tokens in the step's bucket, `B` sequences).
struct Dim {
  int64_t size = 0;
  std::string symbol;  // empty for a static dim

  static Dim Static(int64_t size) { return Dim{size, {}}; }
  static Dim Symbol(std::string name) { return Dim{0, std::move(name)}; }
  bool is_static() const { return symbol.empty(); }
  bool operator==(const Dim& other) const = default;
  std::string ToString() const;
};

enum class TypeKind : uint8_t { kTensor, kForwardMeta };

// `tensor<T x 2048 x bf16>` or `!forward_meta`.
struct Type {
  TypeKind kind = TypeKind::kTensor;
  DType dtype = DType::kF32;
  std::vector<Dim> dims;

  static Type Tensor(DType dtype, std::vector<Dim> dims) {
    return Type{TypeKind::kTensor, dtype, std::move(dims)};
  }
  static Type ForwardMeta() { return Type{TypeKind::kForwardMeta, DType::kF32, {}}; }

  bool is_meta() const { return kind == TypeKind::kForwardMeta; }
  bool is_tensor() const { return kind == TypeKind::kTensor; }
  int rank() const { return static_cast<int>(dims.size()); }
  bool is_static() const;
  // Product of static dims; -1 when a dim is symbolic or the product overflows.
  int64_t StaticNumel() const;
  bool operator==(const Type& other) const = default;
  std::string ToString() const;
};

// Attribute values: integers (booleans are 0/1), floats, strings, int lists.
using Attribute = std::variant<int64_t, double, std::string, std::vector<int64_t>>;
using AttrMap = std::map<std::string, Attribute>;

std::string AttributeToString(const Attribute& attr);

}  // namespace moegraph
