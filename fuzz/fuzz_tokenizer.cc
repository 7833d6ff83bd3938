// libFuzzer target for the tokenizer. The first byte chooses what the rest is:
//   0 mod 4: a tokenizer.json to load (and, when it loads, to encode and decode a probe with);
//   1 mod 4: text to encode with one of the test tokenizers (second byte picks which), then
//            decode, stream-decode and, for the lossless o200k one, check decode(encode(x)) == x
//            (unless its lstrip/rstrip tokens occur);
//   2 mod 4: token ids (little-endian uint16) to decode and stream-decode;
//   3 mod 4: a generation_config.json / tokenizer_config.json to parse.
// The test tokenizers come from MOEGRAPH_FUZZ_TOKENIZER_DIR (default: the source tree's
// tests/data/tokenizer). Errors are fine; crashes, sanitizer reports and broken invariants are
// not.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/generation_config.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

#ifndef MOEGRAPH_FUZZ_TOKENIZER_DIR
#define MOEGRAPH_FUZZ_TOKENIZER_DIR "tests/data/tokenizer"
#endif

namespace {

using moegraph::tokenizer::IncrementalDecoder;
using moegraph::tokenizer::Tokenizer;

constexpr const char* kNames[] = {"qwen2", "gpt2", "llama", "metaspace", "o200k"};
constexpr size_t kNumTokenizers = sizeof(kNames) / sizeof(kNames[0]);
constexpr size_t kLossless = 4;  // o200k: no normalizer, byte-level

// Loaded once per process (a fuzzing harness has to keep them somewhere).
const std::vector<std::unique_ptr<Tokenizer>>& TestTokenizers() {
  static const auto* tokenizers = [] {
    auto* list = new std::vector<std::unique_ptr<Tokenizer>>();
    const char* env = std::getenv("MOEGRAPH_FUZZ_TOKENIZER_DIR");
    const std::string dir = env != nullptr ? env : MOEGRAPH_FUZZ_TOKENIZER_DIR;
    for (const char* name : kNames) {
      auto t = Tokenizer::FromFile(dir + "/" + name + "/tokenizer.json");
      if (!t.ok()) __builtin_trap();  // the harness is misconfigured
      list->push_back(std::make_unique<Tokenizer>(std::move(t).value()));
    }
    return list;
  }();
  return *tokenizers;
}

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

void DecodeAll(const Tokenizer& t, const std::vector<int32_t>& ids) {
  for (const bool skip : {false, true}) {
    auto full = t.Decode(ids, skip);
    IncrementalDecoder stream(t, skip);
    std::string streamed;
    bool ok = true;
    for (const int32_t id : ids) {
      auto piece = stream.Push(id);
      if (!piece.ok()) {
        ok = false;
        break;
      }
      Check(moegraph::tokenizer::ValidateUtf8(*piece, "piece").ok());
      streamed += *piece;
    }
    if (!ok) {
      Check(!full.ok());  // only bad ids make a stream fail, and then Decode fails too
      continue;
    }
    Check(full.ok());
    Check(moegraph::tokenizer::ValidateUtf8(*full, "decode").ok());
    auto rest = stream.Flush();
    Check(rest.ok());
    Check(moegraph::tokenizer::ValidateUtf8(*rest, "flush").ok());
    streamed += *rest;
    // Streaming equals decoding unless a byte-fallback run is invalid (U+FFFD in the
    // decode): then the stream may differ, as HF's DecodeStream does (see the
    // IncrementalDecoderTest cases).
    Check(stream.num_restarts() > 0 || full->find("\xEF\xBF\xBD") != std::string::npos ||
          streamed == *full);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  switch (data[0] % 4) {
    case 0: {
      auto t = Tokenizer::FromJson(rest, "fuzz.json");
      if (!t.ok()) return 0;
      auto ids = t->Encode("Hello world, 123 \xE4\xBD\xA0\xE5\xA5\xBD!", true);
      if (ids.ok()) DecodeAll(*t, *ids);
      return 0;
    }
    case 1: {
      const size_t which = data[1] % kNumTokenizers;
      const Tokenizer& t = *TestTokenizers()[which];
      const bool special = (data[1] / kNumTokenizers) % 2 == 1;
      auto ids = t.Encode(rest, special);
      if (!moegraph::tokenizer::ValidateUtf8(rest, "input").ok()) {
        Check(!ids.ok());
        return 0;
      }
      Check(ids.ok());
      for (const int32_t id : *ids)
        Check(id >= 0 && id < t.vocab_size());
      DecodeAll(t, *ids);
      // o200k round-trips, except where its lstrip/rstrip tokens swallowed spaces.
      if (which == kLossless && !special && rest.find("<|message|>") == std::string_view::npos &&
          rest.find("<|end|>") == std::string_view::npos) {
        auto text = t.Decode(*ids, false);
        Check(text.ok() && *text == rest);
      }
      return 0;
    }
    case 2: {
      const Tokenizer& t = *TestTokenizers()[data[1] % kNumTokenizers];
      std::vector<int32_t> ids;
      for (size_t i = 0; i + 1 < rest.size(); i += 2) {
        ids.push_back(static_cast<int32_t>(static_cast<uint8_t>(rest[i]) |
                                           (static_cast<uint8_t>(rest[i + 1]) << 8)) %
                      (t.vocab_size() + 2));
      }
      DecodeAll(t, ids);
      return 0;
    }
    default: {
      if (data[1] % 2 == 0) {
        (void)moegraph::tokenizer::ParseGenerationConfig(rest, "generation_config.json");
      } else {
        (void)moegraph::tokenizer::ParseTokenizerConfig(rest, "tokenizer_config.json");
      }
      return 0;
    }
  }
}
