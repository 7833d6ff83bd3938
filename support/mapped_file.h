// Read-only memory-mapped files, and whole-file read and atomic write helpers.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "support/status.h"

namespace moegraph {

// The exit status of a process that faulted (SIGBUS) reading a MappedFile
// whose file was truncated while mapped: 128 + SIGBUS, as a shell reports a
// SIGBUS death, but after a message naming the file.
inline constexpr int kMappedFileFaultExitCode = 135;

// A file mapped read-only into memory for the lifetime of the object. Move-only; moving keeps
// the mapping (and so every pointer into it) where it is. An empty file is not mapped: data()
// is nullptr and size() is 0.
class MappedFile {
 public:
  // NotFound if `path` does not exist; InvalidArgument if it is not a regular file (checked
  // before anything could block: a FIFO is refused, not waited on).
  //
  // A mapped file that shrinks on disk makes reads of the lost pages raise SIGBUS. Every
  // mapping is registered with a process-wide SIGBUS handler (installed on the first Open;
  // a fault outside every mapping goes to the handler that was there before): it writes
  // "<path> ... was truncated or replaced while mapped" to stderr and exits with
  // kMappedFileFaultExitCode, instead of a bare "Bus error".
  static StatusOr<MappedFile> Open(const std::string& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  void Unmap();

  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// The whole contents of `path`, which must be a regular file (InvalidArgument otherwise,
// checked before anything could block).
StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `bytes` to `path + ".tmp"`, flushes it to disk, then renames it over `path`, so a
// reader sees either the old file or the complete new one, never a torn write. On failure the
// temporary file is removed and `path` is untouched.
Status WriteFileAtomically(const std::string& path, std::string_view bytes);

}  // namespace moegraph
