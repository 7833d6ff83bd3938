// UTF-8 and Unicode helpers for the tokenizer: validation, code points, properties, NFC/NFKC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "support/status.h"

namespace moegraph::tokenizer {

// OK when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF);
// otherwise InvalidArgument "<what>: invalid UTF-8 at byte offset N".
Status ValidateUtf8(std::string_view text, std::string_view what);

// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for a stray byte).
inline size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at `text[pos]` of valid UTF-8 and advances `pos`.
char32_t NextCodePoint(std::string_view text, size_t& pos);
void AppendUtf8(std::string& out, char32_t cp);

// Rust's `String::from_utf8_lossy`: each maximal invalid subpart becomes U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Unicode properties as Rust's `char` and `regex` define them.
bool IsWhitespace(char32_t cp);     // White_Space
bool IsNumeric(char32_t cp);        // general category Nd, Nl or No
bool IsWordCharacter(char32_t cp);  // regex `\w`: Alphabetic, M, Nd, Pc, Join_Control

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// Normalizes valid UTF-8 `text` in place.
Status Normalize(NormalForm form, std::string& text);
// Rust's per-character `char::to_lowercase` (no final-sigma context) over valid UTF-8.
void Lowercase(std::string& text);

// GPT-2's byte-level alphabet: the code point each byte 0-255 is written as, and back.
char32_t ByteToChar(uint8_t byte);
// -1 when `cp` is not in the alphabet.
int CharToByte(char32_t cp);

}  // namespace moegraph::tokenizer
