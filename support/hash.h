// A fast non-cryptographic 64-bit content hash (XXH64, written here from the
// published algorithm) for detecting changed files: plan checksums and
// checkpoint fingerprints. It detects accidents and edits, not an attacker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moegraph {

// Streaming XXH64: Update() any number of times, then Digest(). The result
// equals the reference XXH64 of the concatenated bytes with the same seed.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void Update(const void* data, size_t bytes);
  uint64_t Digest() const;

 private:
  uint64_t seed_;
  uint64_t lanes_[4];
  unsigned char buffer_[32];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

// XXH64 of `bytes` with `seed`.
uint64_t HashBytes(const void* data, size_t bytes, uint64_t seed = 0);
inline uint64_t HashBytes(std::string_view bytes, uint64_t seed = 0) {
  return HashBytes(bytes.data(), bytes.size(), seed);
}

// "0x" and 16 lowercase hex digits.
std::string FormatHash(uint64_t hash);

}  // namespace moegraph
