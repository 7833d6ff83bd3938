// Reading and writing safetensors files, and Hugging Face checkpoint directories of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ir/dtype.h"
#include "support/mapped_file.h"
#include "support/status.h"

namespace moegraph {

// One tensor of a safetensors file. `data` points into the file's mapping (row-major,
// little-endian, no alignment guarantee) and lives as long as the SafetensorsFile.
struct SafetensorsTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const std::byte* data;
  uint64_t file_offset;  // absolute byte offset of `data` in the file
  uint64_t bytes;        // numel * DTypeBytes(dtype)
};

// The largest header accepted; the reference implementation's limit too.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// A memory-mapped safetensors file whose header has been fully validated: every tensor's byte
// range matches its dtype and shape, lies inside the data section, and the ranges tile the data
// section exactly (no overlaps, no holes), as the format requires.
class SafetensorsFile {
 public:
  // DataLoss naming the file (and tensor) for any malformed header; NotFound if missing.
  static StatusOr<SafetensorsFile> Open(const std::string& path);

  SafetensorsFile() = default;  // no file, no tensors
  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

  // nullptr if the file has no tensor called `name`.
  const SafetensorsTensor* Find(std::string_view name) const;
  // In file order (ascending offset).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // The header's "__metadata__" string map (empty if absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const;

 private:
  // Heap-allocated so the mapping, and so every tensor's data pointer, survives moves.
  std::unique_ptr<MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

inline constexpr const char* kSafetensorsIndexFile = "model.safetensors.index.json";
inline constexpr const char* kSafetensorsSingleFile = "model.safetensors";

// A Hugging Face model directory: either one model.safetensors, or shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file name). With an index,
// the index is authoritative: exactly the tensors it names are visible, each from its shard.
class Checkpoint {
 public:
  // NotFound if `dir` has neither file (or a shard is missing); DataLoss for a malformed index
  // or shard.
  static StatusOr<Checkpoint> Open(const std::string& dir);

  Checkpoint() = default;  // no tensors, until assigned the result of Open
  Checkpoint(Checkpoint&&) noexcept = default;
  Checkpoint& operator=(Checkpoint&&) noexcept = default;

  // Adds the tensors of safetensors file `path` (compile-model's packed weights file, beside
  // the plan) to those of the directory. InvalidArgument naming both when a tensor name is
  // already present; what SafetensorsFile::Open returns for a missing or malformed file.
  Status AddFile(const std::string& path);

  // NotFound naming the tensor and the directory.
  StatusOr<const SafetensorsTensor*> Get(std::string_view name) const;
  // Path of the file holding `name` (for plans that reference weights by file and offset);
  // an empty string if there is no such tensor.
  const std::string& FileOf(std::string_view name) const;
  // Sorted.
  std::vector<std::string> TensorNames() const;
  const std::string& dir() const { return dir_; }

 private:
  struct Entry {
    size_t shard;
    const SafetensorsTensor* tensor;
  };

  std::string dir_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// A tensor to serialize: `bytes` holds numel * DTypeBytes(dtype) bytes, row-major, little-endian.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Writes a safetensors file with the tensors' data in the given order and the header padded
// with spaces to a multiple of 8 bytes (so the data section is 8-byte aligned), atomically.
// With `alignment` (a power of two above 8) the data section starts at a multiple of it in
// the file and so does every tensor: each gap is a U8 tensor named kSafetensorsPadPrefix +
// its index, so the file stays a plain safetensors file whose ranges tile the data section.
// InvalidArgument for an empty, duplicate or reserved name, a negative dimension, or a byte
// count that does not match dtype and shape.
Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::vector<std::pair<std::string, std::string>>& metadata = {},
                        uint64_t alignment = 8);

// The name prefix of WriteSafetensors' alignment padding tensors.
inline constexpr const char* kSafetensorsPadPrefix = "__moegraph_pad_";

}  // namespace moegraph
