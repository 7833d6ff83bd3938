// Reading and writing plan files: a Plan (plan/plan.h) as the FlatBuffer of
// plan/plan.fbs. The format and its changelog are in plan/PLAN_FORMAT.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "plan/plan.h"
#include "support/status.h"

namespace moegraph {

// Versions this build can read. Version 1 had no checksum.
inline constexpr uint32_t kSupportedPlanVersions[] = {2};

// Bytes of the checksum footer after the flatbuffer (PLAN_FORMAT.md).
inline constexpr size_t kPlanFooterBytes = 16;

// The plan file's bytes: the flatbuffer, then its checksum footer.
// Deterministic: the same Plan gives the same bytes, and
// DeserializePlan(SerializePlan(p), ...) == p. Does not validate.
std::string SerializePlan(const Plan& plan);

// Appends the checksum footer to a finished plan flatbuffer (SerializePlan
// does this; tests that build flatbuffers by hand use it).
std::string AppendPlanChecksum(std::string flatbuffer);

// Parses untrusted bytes: the file identifier, the checksum footer (a file
// changed after it was written is refused as such), the FlatBuffers verifier,
// the format version, required fields, then ValidatePlan. Errors (DataLoss, or
// FailedPrecondition for an unsupported version) start with `source_name`.
StatusOr<Plan> DeserializePlan(std::string_view bytes, std::string_view source_name);

// Validates `plan`, then writes it to `path` atomically (the old file or the
// new one, never a torn write).
Status WritePlanFile(const Plan& plan, const std::string& path);

// Reads and deserializes the plan file at `path`; errors name the path.
StatusOr<Plan> ReadPlanFile(const std::string& path);

// The semantic checks that make a plan safe to run: a supported version, enums
// in range, weight sizes that match dtype × shape and their slices, every
// argument inside its weight table or arena and aligned for its dtype, finite
// float parameters, kernel ABI limits, arena dataflow (every arena input is
// the live output of an earlier step; outputs alias no input), non-empty
// programs whose logits slot is written, logits shape, unique and sane keys. DataLoss
// (FailedPrecondition for the version) whose message starts with `source_name` and names the
// program (by key), step and weight at fault.
Status ValidatePlan(const Plan& plan, std::string_view source_name);

}  // namespace moegraph
