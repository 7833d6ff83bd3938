// The token settings of a Hugging Face model folder: generation_config.json (bos/eos ids) and
// tokenizer_config.json (add_bos_token, bos_token, eos_token).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/status.h"

namespace moegraph::tokenizer {

struct GenerationConfig {
  // `eos_token_id`: an int or a list of ints (empty when absent or null).
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> bos_token_id;
};

struct TokenizerConfig {
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  // `bos_token` / `eos_token`: a string or an AddedToken object ({"content": ...}).
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};

// Errors (InvalidArgument, naming the file and the field) on wrong types; NotFound when the file
// does not exist. `source_name` names the text in errors.
StatusOr<GenerationConfig> ParseGenerationConfig(std::string_view json,
                                                 std::string_view source_name);
StatusOr<GenerationConfig> ReadGenerationConfig(const std::string& path);
StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view json, std::string_view source_name);
StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::string& path);

}  // namespace moegraph::tokenizer
