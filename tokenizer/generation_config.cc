// Readers for generation_config.json and tokenizer_config.json.
#include "tokenizer/generation_config.h"

#include "support/json.h"
#include "support/mapped_file.h"

namespace moegraph::tokenizer {
namespace {

StatusOr<int32_t> TokenId(const JsonValue& value, std::string_view source,
                          const std::string& field) {
  if (!value.is_int() || value.as_int() < 0 || value.as_int() > INT32_MAX) {
    return InvalidArgument(std::string(source) + ": " + field +
                           " must be a non-negative integer token id, got " + value.DescribeKind() +
                           (value.is_int() ? " " + std::to_string(value.as_int()) : ""));
  }
  return static_cast<int32_t>(value.as_int());
}

StatusOr<std::optional<std::string>> TokenString(const JsonValue& doc, std::string_view key,
                                                 std::string_view source) {
  const JsonValue* value = doc.Find(key);
  if (value == nullptr || value->is_null()) return std::optional<std::string>();
  if (value->is_string()) return std::optional<std::string>(value->as_string());
  if (value->is_object()) {
    const JsonValue* content = value->Find("content");
    if (content == nullptr || !content->is_string()) {
      return InvalidArgument(std::string(source) + ": " + std::string(key) +
                             " is an object without a string 'content' (an AddedToken needs one)");
    }
    return std::optional<std::string>(content->as_string());
  }
  return InvalidArgument(std::string(source) + ": " + std::string(key) +
                         " must be a string or an AddedToken object, got " + value->DescribeKind());
}

StatusOr<std::optional<bool>> OptionalBool(const JsonValue& doc, std::string_view key,
                                           std::string_view source) {
  const JsonValue* value = doc.Find(key);
  if (value == nullptr || value->is_null()) return std::optional<bool>();
  if (!value->is_bool()) {
    return InvalidArgument(std::string(source) + ": " + std::string(key) + " must be a bool, got " +
                           value->DescribeKind());
  }
  return std::optional<bool>(value->as_bool());
}

}  // namespace

StatusOr<GenerationConfig> ParseGenerationConfig(std::string_view json, std::string_view source) {
  MG_ASSIGN_OR_RETURN(JsonValue doc, ParseJson(json, source));
  if (!doc.is_object()) {
    return InvalidArgument(std::string(source) + ": must be a JSON object, got " +
                           doc.DescribeKind());
  }
  GenerationConfig config;
  if (const JsonValue* eos = doc.Find("eos_token_id"); eos != nullptr && !eos->is_null()) {
    if (eos->is_array()) {
      for (size_t i = 0; i < eos->size(); ++i) {
        MG_ASSIGN_OR_RETURN(int32_t id, TokenId(eos->as_array()[i], source,
                                                "eos_token_id[" + std::to_string(i) + "]"));
        config.eos_token_ids.push_back(id);
      }
    } else if (eos->is_int()) {
      MG_ASSIGN_OR_RETURN(int32_t id, TokenId(*eos, source, "eos_token_id"));
      config.eos_token_ids.push_back(id);
    } else {
      return InvalidArgument(std::string(source) +
                             ": eos_token_id must be an integer or a list of integers, got " +
                             eos->DescribeKind());
    }
  }
  if (const JsonValue* bos = doc.Find("bos_token_id"); bos != nullptr && !bos->is_null()) {
    MG_ASSIGN_OR_RETURN(int32_t id, TokenId(*bos, source, "bos_token_id"));
    config.bos_token_id = id;
  }
  return config;
}

StatusOr<GenerationConfig> ReadGenerationConfig(const std::string& path) {
  MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseGenerationConfig(text, path);
}

StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view json, std::string_view source) {
  MG_ASSIGN_OR_RETURN(JsonValue doc, ParseJson(json, source));
  if (!doc.is_object()) {
    return InvalidArgument(std::string(source) + ": must be a JSON object, got " +
                           doc.DescribeKind());
  }
  TokenizerConfig config;
  MG_ASSIGN_OR_RETURN(config.add_bos_token, OptionalBool(doc, "add_bos_token", source));
  MG_ASSIGN_OR_RETURN(config.add_eos_token, OptionalBool(doc, "add_eos_token", source));
  MG_ASSIGN_OR_RETURN(config.bos_token, TokenString(doc, "bos_token", source));
  MG_ASSIGN_OR_RETURN(config.eos_token, TokenString(doc, "eos_token", source));
  return config;
}

StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::string& path) {
  MG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseTokenizerConfig(text, path);
}

}  // namespace moegraph::tokenizer
