// Fuzz target: untrusted IR text -> ParseGraph -> Verify -> one key's
// pipeline (RunPipeline, verifying after every pass). The first byte picks the
// key (IrKey); the rest is the text.
#include <string_view>

#include "compiler/pipeline.h"
#include "fuzz/fuzz_common.h"
#include "fuzz/fuzz_targets.h"
#include "ir/parser.h"
#include "ir/verifier.h"

namespace moegraph::fuzz {

Outcome FuzzIr(const uint8_t* data, size_t size) {
  if (size < 1 || size > kMaxIrBytes) return Outcome::kSkipped;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  StatusOr<Graph> graph = ParseGraph(text, "fuzz.mgir");
  if (!graph.ok()) return Outcome::kRejected;
  if (!Verify(*graph).ok()) return Outcome::kRejected;
  PipelineOptions options;
  options.chunk_size = 16;
  WeightTable weights;
  KeyProgram program;
  StatusOr<Graph> lowered = RunPipeline(*graph, IrKey(data[0]), options, weights, &program);
  return lowered.ok() ? Outcome::kAccepted : Outcome::kRejected;
}

}  // namespace moegraph::fuzz
