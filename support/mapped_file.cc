// MappedFile over POSIX mmap; whole-file read and write helpers over POSIX file descriptors.
#include "support/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace moegraph {
namespace {

// "path: what: strerror", as NotFound for a missing file and FailedPrecondition otherwise.
Status ErrnoStatus(int error, const std::string& path, const std::string& what) {
  std::string message = path + ": " + what + ": " + std::strerror(error);
  if (error == ENOENT || error == ENOTDIR) return NotFound(std::move(message));
  return FailedPrecondition(std::move(message));
}

// Closes the descriptor on every return path.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting the error a deferred write may surface only at close.
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

StatusOr<size_t> RegularFileSize(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, path, "cannot stat");
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path + ": not a regular file");
  return static_cast<size_t>(st.st_size);
}

}  // namespace

StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, path, "cannot open");
  MG_ASSIGN_OR_RETURN(size_t size, RegularFileSize(fd.get(), path));
  if (size == 0) return MappedFile(path, nullptr, 0);  // mmap of length 0 is an error
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (address == MAP_FAILED) return ErrnoStatus(errno, path, "cannot mmap");
  return MappedFile(path, static_cast<const std::byte*>(address), size);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  Unmap();
}

void MappedFile::Unmap() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

StatusOr<std::string> ReadFileToString(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, path, "cannot open");
  MG_ASSIGN_OR_RETURN(size_t size_hint, RegularFileSize(fd.get(), path));
  std::string contents;
  contents.reserve(size_hint);
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, path, "cannot read");
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  return contents;
}

Status WriteFileAtomically(const std::string& path, std::string_view bytes) {
  const std::string tmp_path = path + ".tmp";
  FileDescriptor fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoStatus(errno, tmp_path, "cannot create");
  auto fail = [&](const std::string& what) {
    Status status = ErrnoStatus(errno, tmp_path, what);
    ::unlink(tmp_path.c_str());
    return status;
  };
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("cannot fsync");
  if (fd.Close() != 0) return fail("cannot close");
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) {
    return fail("cannot rename to " + path);
  }
  return Status::Ok();
}

}  // namespace moegraph
