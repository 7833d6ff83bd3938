// Fuzz target: untrusted plan bytes -> DeserializePlan (FlatBuffers
// verifier + ValidatePlan); a plan that loads must serialize back to itself.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "fuzz/fuzz_common.h"
#include "fuzz/fuzz_targets.h"
#include "plan/plan_file.h"

namespace moegraph::fuzz {

Outcome FuzzPlan(const uint8_t* data, size_t size) {
  if (size > kMaxPlanBytes) return Outcome::kSkipped;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  StatusOr<Plan> plan = DeserializePlan(bytes, "fuzz.plan");
  if (!plan.ok()) return Outcome::kRejected;
  // Serializing is a fixed point. Compared as bytes, not with Plan::operator==:
  // a NaN among a step's floats is still the same plan.
  const std::string bytes_out = SerializePlan(*plan);
  StatusOr<Plan> again = DeserializePlan(bytes_out, "reserialized.plan");
  if (!again.ok() || SerializePlan(*again) != bytes_out) {
    std::fprintf(stderr, "a plan that loads does not round-trip: %s\n",
                 again.ok() ? "different bytes" : again.status().ToString().c_str());
    std::abort();
  }
  return Outcome::kAccepted;
}

}  // namespace moegraph::fuzz
