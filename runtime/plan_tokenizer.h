// The text side of a plan: the tokenizer and the token settings compile-model recorded
// (Plan::tokenizer_files), read again from the model directory and checked against their hashes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plan/plan.h"
#include "support/status.h"
#include "tokenizer/tokenizer.h"

namespace moegraph {

struct PlanTokenizer {
  // From tokenizer.json; null when the plan records none (or it was not asked for).
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  // generation_config.json `eos_token_id` (one or a list); empty when absent.
  std::vector<int32_t> eos_token_ids;
  // Put before a prompt by EncodePrompt: set when tokenizer_config.json has add_bos_token true
  // (the id of its bos_token, else generation_config.json's bos_token_id).
  std::optional<int32_t> bos_token_id;
};

// Reads the plan's tokenizer files from `model_dir` (the plan's model_dir when empty).
// generation_config.json is always read when recorded; tokenizer.json and tokenizer_config.json
// only with `load_tokenizer`. A recorded file that is missing is NotFound; one whose XXH64
// differs from the plan's is FailedPrecondition ("changed since the plan was compiled;
// recompile the plan"); both name the file.
StatusOr<PlanTokenizer> LoadPlanTokenizer(const Plan& plan, const std::string& model_dir,
                                          bool load_tokenizer);

// The ids of a raw prompt (no chat template): tokenizer.json's post-processor runs
// (add_special_tokens), then bos_token_id is put first unless the prompt already starts with
// it. FailedPrecondition when there is no tokenizer; InvalidArgument for invalid UTF-8 or a
// prompt of no ids. `what` names the prompt in errors ("--prompt #2").
StatusOr<std::vector<int32_t>> EncodePrompt(const PlanTokenizer& tokenizer, std::string_view text,
                                            std::string_view what);

}  // namespace moegraph
