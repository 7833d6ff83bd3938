// Reading and writing plan files: a Plan (ir/plan.h) as the FlatBuffer of
// runtime/plan.fbs. The format and its changelog are in runtime/PLAN_FORMAT.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ir/plan.h"
#include "support/status.h"

namespace moegraph {

// Versions this build can read.
inline constexpr uint32_t kSupportedPlanVersions[] = {1};

// The plan as flatbuffer bytes. Deterministic: the same Plan gives the same
// bytes, and DeserializePlan(SerializePlan(p), ...) == p. Does not validate.
std::string SerializePlan(const Plan& plan);

// Parses untrusted bytes: the file identifier, the FlatBuffers verifier, the
// format version, required fields, then ValidatePlan. Errors (DataLoss, or
// FailedPrecondition for an unsupported version) start with `source_name`.
StatusOr<Plan> DeserializePlan(std::string_view bytes, std::string_view source_name);

// Validates `plan`, then writes it to `path` atomically (the old file or the
// new one, never a torn write).
Status WritePlanFile(const Plan& plan, const std::string& path);

// Reads and deserializes the plan file at `path`; errors name the path.
StatusOr<Plan> ReadPlanFile(const std::string& path);

// The semantic checks that make a plan safe to run: a supported version, enums
// in range, weight sizes that match dtype × shape and their slices, every
// argument inside its weight table or arena, kernel ABI limits, logits shape,
// unique and sane keys. DataLoss (FailedPrecondition for the version) whose
// message starts with `source_name` and names the program (by key), step and
// weight at fault.
Status ValidatePlan(const Plan& plan, std::string_view source_name);

}  // namespace moegraph
