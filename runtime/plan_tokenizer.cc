// Reading a plan's tokenizer files back from the model directory.
#include "runtime/plan_tokenizer.h"

#include <filesystem>

#include "support/hash.h"
#include "support/mapped_file.h"
#include "tokenizer/generation_config.h"

namespace moegraph {
namespace {

// The text of `name` in `dir` when the plan records it (nullopt when it does not), after checking
// it is the file compile-model saw.
StatusOr<std::optional<std::string>> ReadRecordedFile(const Plan& plan, const std::string& dir,
                                                      std::string_view name) {
  for (const PlanTokenizerFile& recorded : plan.tokenizer_files) {
    if (recorded.file != name) continue;
    const std::string path = (std::filesystem::path(dir) / recorded.file).string();
    if (!std::filesystem::exists(path)) {
      return NotFound(path +
                      ": the plan was compiled with this tokenizer file, but it is gone; "
                      "restore it or recompile the plan");
    }
    MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    const uint64_t hash = HashBytes(text);
    if (hash != recorded.full_hash) {
      return FailedPrecondition(path + " changed since the plan was compiled (XXH64 " +
                                FormatHash(hash) + ", the plan recorded " +
                                FormatHash(recorded.full_hash) + "); recompile the plan");
    }
    return std::optional<std::string>(std::move(text));
  }
  return std::optional<std::string>();
}

}  // namespace

StatusOr<PlanTokenizer> LoadPlanTokenizer(const Plan& plan, const std::string& model_dir,
                                          bool load_tokenizer) {
  const std::string dir = model_dir.empty() ? plan.model_dir : model_dir;
  PlanTokenizer out;
  tokenizer::GenerationConfig generation;
  MG_ASSIGN_OR_RETURN(std::optional<std::string> generation_json,
                      ReadRecordedFile(plan, dir, "generation_config.json"));
  if (generation_json) {
    MG_ASSIGN_OR_RETURN(generation, tokenizer::ParseGenerationConfig(
                                        *generation_json, dir + "/generation_config.json"));
    out.eos_token_ids = generation.eos_token_ids;
  }
  if (!load_tokenizer) return out;

  MG_ASSIGN_OR_RETURN(std::optional<std::string> tokenizer_json,
                      ReadRecordedFile(plan, dir, "tokenizer.json"));
  if (!tokenizer_json) return out;
  const std::string tokenizer_path = dir + "/tokenizer.json";
  StatusOr<tokenizer::Tokenizer> tok =
      tokenizer::Tokenizer::FromJson(*tokenizer_json, tokenizer_path);
  if (!tok.ok()) return tok.status().WithContext(tokenizer_path);
  auto shared = std::make_shared<const tokenizer::Tokenizer>(std::move(*tok));

  MG_ASSIGN_OR_RETURN(std::optional<std::string> config_json,
                      ReadRecordedFile(plan, dir, "tokenizer_config.json"));
  if (config_json) {
    const std::string config_path = dir + "/tokenizer_config.json";
    MG_ASSIGN_OR_RETURN(tokenizer::TokenizerConfig config,
                        tokenizer::ParseTokenizerConfig(*config_json, config_path));
    if (config.add_bos_token.value_or(false)) {
      if (config.bos_token) {
        const std::optional<int32_t> id = shared->TokenToId(*config.bos_token);
        if (!id) {
          return InvalidArgument(config_path + ": bos_token '" + *config.bos_token +
                                 "' is not a token of tokenizer.json");
        }
        out.bos_token_id = *id;
      } else if (generation.bos_token_id) {
        out.bos_token_id = *generation.bos_token_id;
      } else {
        return InvalidArgument(config_path +
                               ": add_bos_token is true but neither bos_token nor "
                               "generation_config.json's bos_token_id names the token");
      }
    }
  }
  out.tokenizer = std::move(shared);
  return out;
}

StatusOr<std::vector<int32_t>> EncodePrompt(const PlanTokenizer& tokenizer, std::string_view text,
                                            std::string_view what) {
  if (!tokenizer.tokenizer) {
    return FailedPrecondition(std::string(what) +
                              ": the plan has no tokenizer (the model directory had no "
                              "tokenizer.json when it was compiled); give token ids instead");
  }
  StatusOr<std::vector<int32_t>> ids =
      tokenizer.tokenizer->Encode(text, /*add_special_tokens=*/true);
  if (!ids.ok()) return ids.status().WithContext(std::string(what));
  if (tokenizer.bos_token_id && (ids->empty() || ids->front() != *tokenizer.bos_token_id)) {
    ids->insert(ids->begin(), *tokenizer.bos_token_id);
  }
  if (ids->empty()) return InvalidArgument(std::string(what) + " is empty: it encodes to no ids");
  return ids;
}

}  // namespace moegraph
