// MappedFile over POSIX mmap; whole-file read and write helpers over POSIX file descriptors.
#include "support/mapped_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>

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
  // A FIFO, socket or device: opened without blocking, refused before any read.
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path + ": not a regular file");
  return static_cast<size_t>(st.st_size);
}

// Opens `path` for reading without blocking: opening a FIFO with O_RDONLY
// waits for a writer, forever if none comes. O_NONBLOCK makes that open
// return at once; the caller's fstat then refuses anything but a regular
// file, for which O_NONBLOCK means nothing (it is cleared anyway).
int OpenForReading(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  }
  return fd;
}

// ---- SIGBUS reporting ----------------------------------------------------------
//
// Process-wide by nature (a signal disposition is), so this is the one global
// mutable state here: a fixed table of live mappings the handler can scan
// without locks or allocation. Slots go free -> busy -> live; the handler
// reads only live ones.

constexpr size_t kMaxRegisteredMappings = 1024;
constexpr size_t kMaxRegisteredPath = 512;

struct MappingSlot {
  std::atomic<int> state{0};  // 0 free, 1 being written or cleared, 2 live
  // Atomic (relaxed; `state` orders them): a thread unregistering its own mapping reads every
  // slot's begin while other threads register and clear theirs.
  std::atomic<uintptr_t> begin{0};
  std::atomic<size_t> size{0};
  char path[kMaxRegisteredPath] = {};
};

MappingSlot g_mappings[kMaxRegisteredMappings];
struct sigaction g_previous_sigbus;
std::atomic<bool> g_sigbus_reporting{false};  // a thread is reporting a fault
std::once_flag g_sigbus_installed;

void WriteAll(const char* text, size_t length) {
  while (length > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, length);
    if (n <= 0) return;
    text += n;
    length -= static_cast<size_t>(n);
  }
}
void WriteText(const char* text) {
  WriteAll(text, std::strlen(text));
}
void WriteNumber(uint64_t value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[sizeof(digits) - 1 - n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  WriteAll(digits + sizeof(digits) - n, n);
}

// Async-signal-safe: no locks, no allocation, only write(2) and _exit(2).
void OnSigbus(int signal, siginfo_t* info, void* context) {
  const auto address = reinterpret_cast<uintptr_t>(info != nullptr ? info->si_addr : nullptr);
  for (const MappingSlot& slot : g_mappings) {
    if (slot.state.load(std::memory_order_acquire) != 2) continue;
    const uintptr_t begin = slot.begin.load(std::memory_order_relaxed);
    const size_t size = slot.size.load(std::memory_order_relaxed);
    if (address < begin || address - begin >= size) continue;
    // Kernel threads fault on the same truncated file together: the first one
    // reports and exits, the others wait for that (one message, not a mix).
    if (g_sigbus_reporting.exchange(true)) {
      for (;;)
        ::pause();
    }
    WriteText("moegraph: fatal: reading ");
    WriteText(slot.path);
    WriteText(" at byte ");
    WriteNumber(address - begin);
    WriteText(" of its ");
    WriteNumber(size);
    WriteText(
        "-byte mapping failed (SIGBUS): the file was truncated or replaced while mapped (the "
        "engine reads weights from the file in place); restore the file and restart. Exiting.\n");
    ::_exit(kMappedFileFaultExitCode);
  }
  // Not ours: what was there before.
  if (g_previous_sigbus.sa_flags & SA_SIGINFO) {
    if (g_previous_sigbus.sa_sigaction != nullptr) {
      g_previous_sigbus.sa_sigaction(signal, info, context);
      return;
    }
  } else if (g_previous_sigbus.sa_handler != SIG_DFL && g_previous_sigbus.sa_handler != SIG_IGN) {
    g_previous_sigbus.sa_handler(signal);
    return;
  }
  // Default: die of the signal when the faulting access runs again.
  ::signal(SIGBUS, SIG_DFL);
}

void InstallSigbusHandler() {
  struct sigaction action = {};
  action.sa_sigaction = OnSigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGBUS, &action, &g_previous_sigbus);
}

void RegisterMapping(const std::byte* data, size_t size, const std::string& path) {
  std::call_once(g_sigbus_installed, InstallSigbusHandler);
  for (MappingSlot& slot : g_mappings) {
    int expected = 0;
    if (!slot.state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
    slot.begin.store(reinterpret_cast<uintptr_t>(data), std::memory_order_relaxed);
    slot.size.store(size, std::memory_order_relaxed);
    const size_t length = std::min(path.size(), kMaxRegisteredPath - 1);
    std::memcpy(slot.path, path.data(), length);
    slot.path[length] = '\0';
    slot.state.store(2, std::memory_order_release);
    return;
  }
  // A full table only loses the message: the fault still ends the process.
}

void UnregisterMapping(const std::byte* data) {
  for (MappingSlot& slot : g_mappings) {
    int expected = 2;
    if (slot.begin.load(std::memory_order_relaxed) != reinterpret_cast<uintptr_t>(data)) continue;
    if (!slot.state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
    slot.begin.store(0, std::memory_order_relaxed);
    slot.size.store(0, std::memory_order_relaxed);
    slot.state.store(0, std::memory_order_release);
    return;
  }
}

}  // namespace

StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  FileDescriptor fd(OpenForReading(path));
  if (fd.get() < 0) return ErrnoStatus(errno, path, "cannot open");
  MG_ASSIGN_OR_RETURN(size_t size, RegularFileSize(fd.get(), path));
  if (size == 0) return MappedFile(path, nullptr, 0);  // mmap of length 0 is an error
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (address == MAP_FAILED) return ErrnoStatus(errno, path, "cannot mmap");
  RegisterMapping(static_cast<const std::byte*>(address), size, path);
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
  if (data_ != nullptr) {
    UnregisterMapping(data_);
    ::munmap(const_cast<std::byte*>(data_), size_);
  }
  data_ = nullptr;
  size_ = 0;
}

StatusOr<std::string> ReadFileToString(const std::string& path) {
  FileDescriptor fd(OpenForReading(path));
  if (fd.get() < 0) return ErrnoStatus(errno, path, "cannot open");
  MG_ASSIGN_OR_RETURN(size_t size_hint, RegularFileSize(fd.get(), path));
  std::string contents;
  try {
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
  } catch (const std::bad_alloc&) {
    return ResourceExhausted(path + ": cannot allocate " + std::to_string(size_hint) +
                             " bytes to read the file into memory");
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
