// Fuzz target: an untrusted safetensors file (SafetensorsFile::Open) or
// model.safetensors.index.json (Checkpoint::Open over two valid shards); the
// first byte says which (SafetensorsInput).
#include <cstdlib>
#include <string>

#include "checkpoint/safetensors.h"
#include "fuzz/fuzz_common.h"
#include "fuzz/fuzz_targets.h"

namespace moegraph::fuzz {

Outcome FuzzSafetensors(const uint8_t* data, size_t size) {
  if (size < 1 || size > kMaxSafetensorsBytes) return Outcome::kSkipped;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (static_cast<SafetensorsInput>(data[0] & 1) == SafetensorsInput::kFile) {
    const std::string path = ScratchDir() + "/input.safetensors";
    WriteFileOrDie(path, rest);
    StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    if (!file.ok()) return Outcome::kRejected;
    // Every accepted tensor's bytes lie inside the mapping: touch the first and last.
    volatile uint8_t sink = 0;
    for (const SafetensorsTensor& t : file->tensors()) {
      if (t.bytes == 0) continue;
      sink = sink + static_cast<uint8_t>(t.data[0]) + static_cast<uint8_t>(t.data[t.bytes - 1]);
    }
    (void)sink;
    return Outcome::kAccepted;
  }
  const std::string& dir = ShardedCheckpointDir();
  WriteFileOrDie(dir + "/" + kSafetensorsIndexFile, rest);
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  if (!checkpoint.ok()) return Outcome::kRejected;
  for (const std::string& name : checkpoint->TensorNames()) {
    StatusOr<const SafetensorsTensor*> tensor = checkpoint->Get(name);
    if (!tensor.ok() || checkpoint->FileOf(name).empty()) std::abort();
  }
  return Outcome::kAccepted;
}

}  // namespace moegraph::fuzz
