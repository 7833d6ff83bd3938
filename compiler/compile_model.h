// The compile driver: a Hugging Face model directory in, a Plan out
// (frontend -> generic graph -> per-key pipeline -> weight manifest).
#pragma once

#include <functional>
#include <string>

#include "compiler/pipeline.h"
#include "frontends/hf_model.h"
#include "plan/plan.h"

namespace moegraph {

struct CompileModelOptions {
  KeySetOptions keys;
  PipelineOptions pipeline;
  std::string command_line;  // recorded in the plan
  // Record each checkpoint file's full content hash (one read of the
  // checkpoint at compile time) so a load can detect changed values.
  bool hash_checkpoint = true;
};

// Compiles `model` into a plan. `progress` is called after each key.
StatusOr<Plan> CompileModel(const HfModel& model, const CompileModelOptions& options,
                            const std::function<void(const CompileProgress&)>& progress = {});

}  // namespace moegraph
