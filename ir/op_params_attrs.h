// Params structs (ir/op_params.h) to and from IR attributes: typed builders
// write an op's attributes from its struct, and the registry test holds every
// struct to its op's attribute specs.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "ir/op_params.h"
#include "ir/types.h"
#include "support/status.h"

namespace moegraph {

// P's fields as attributes: every field but those with a default that hold
// it (an optional field without one, `row_offset`, is written); floats as
// double (exact: the struct keeps double).
template <OpParamsStruct P>
AttrMap ParamsToAttrs(const P& p) {
  AttrMap attrs;
  for (const ParamField<P>& field : P::Fields()) {
    if (field.int_member) {
      if (field.has_default && p.*field.int_member == field.int_default) continue;
      attrs[field.name] = p.*field.int_member;
    } else {
      if (field.has_default && p.*field.float_member == field.float_default) continue;
      attrs[field.name] = p.*field.float_member;
    }
  }
  return attrs;
}

// P from an op's attributes, checked as the verifier checks them: a required
// field present, each of the right kind and an integer within its range. An
// absent optional field reads as its default, or 0 when it has none. Attributes that are not P's
// fields are ignored. Errors name the op and the field.
template <OpParamsStruct P>
StatusOr<P> ParamsFromAttrs(const AttrMap& attrs, std::string_view op_name) {
  P p{};
  const std::string where = "'" + std::string(op_name) + "' (" + P::kName + ")";
  for (const ParamField<P>& field : P::Fields()) {
    auto it = attrs.find(field.name);
    if (it == attrs.end()) {
      if (field.required) {
        return InvalidArgument(where + ": missing attribute '" + field.name + "'");
      }
      if (field.int_member) {
        p.*field.int_member = field.int_default;
      } else {
        p.*field.float_member = field.float_default;
      }
      continue;
    }
    if (field.int_member) {
      const int64_t* v = std::get_if<int64_t>(&it->second);
      if (!v) {
        return InvalidArgument(where + ": attribute '" + field.name + "' must be an integer, got " +
                               AttributeToString(it->second));
      }
      if (*v < field.min || *v > field.max) {
        return InvalidArgument(where + ": attribute '" + field.name + "' = " + std::to_string(*v) +
                               " is outside [" + std::to_string(field.min) + ", " +
                               std::to_string(field.max) + "]");
      }
      p.*field.int_member = *v;
    } else {
      const double* v = std::get_if<double>(&it->second);
      if (!v) {
        return InvalidArgument(where + ": attribute '" + field.name + "' must be a float, got " +
                               AttributeToString(it->second));
      }
      p.*field.float_member = *v;
    }
  }
  return p;
}

}  // namespace moegraph
