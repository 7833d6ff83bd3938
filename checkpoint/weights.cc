// Weight resolution and binding.
#include "checkpoint/weights.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "ir/op_registry.h"
#include "ir/quant.h"
#include "support/hash.h"
#include "support/strings.h"

namespace moegraph {
namespace {

// The scale slices of quantized weight `w` (its data slices resolved): one [ceil(N / br),
// ceil(K / bc)] matrix per slice, from a tensor per expert ({e} in the scale name), a plain
// tensor, or the [E, SR, SC] scales of a fused expert tensor (rows from row_offset / br).
Status ResolveScales(ResolvedWeight& w, bool per_expert_names, bool slice, int64_t first_expert,
                     int64_t experts, int64_t row_offset, const Checkpoint& checkpoint) {
  const DType scale_dtype = QuantScaleDType(w.quant.scheme);
  const int64_t n = w.shape[w.shape.size() - 2], k = w.shape.back();
  const int64_t scale_rows = w.quant.ScaleRows(n), scale_cols = w.quant.ScaleCols(k);
  const std::vector<int64_t> matrix = {scale_rows, scale_cols};
  const uint64_t slice_bytes =
      static_cast<uint64_t>(scale_rows * scale_cols) * DTypeBytes(scale_dtype);
  for (int64_t e = first_expert; e < first_expert + experts; ++e) {
    const std::string name = per_expert_names ? ExpandExpertName(w.scale_name, e) : w.scale_name;
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, checkpoint.Get(name));
    const std::string where = checkpoint.FileOf(name) + ": scale tensor '" + name + "' of '" +
                              (per_expert_names ? ExpandExpertName(w.name, e) : w.name) + "'";
    if (t->dtype != scale_dtype) {
      return InvalidArgument(where + " is " + DTypeSafetensorsName(t->dtype) + " but " +
                             QuantSchemeName(w.quant.scheme) + " scales are " +
                             DTypeSafetensorsName(scale_dtype));
    }
    uint64_t offset_in_tensor = 0;
    if (per_expert_names || !w.stacked) {
      std::vector<int64_t> squeezed = t->shape;
      while (squeezed.size() > 2 && squeezed.front() == 1)
        squeezed.erase(squeezed.begin());
      if (squeezed != matrix) {
        return InvalidArgument(
            where + " has shape " + ShapeString(t->shape) + ", expected " + ShapeString(matrix) +
            " (blocks of " + std::to_string(w.quant.block_rows) + " x " +
            std::to_string(w.quant.block_cols) + " over " + ShapeString({n, k}) + ")");
      }
    } else {
      if (row_offset % w.quant.block_rows != 0) {
        return Unimplemented(where + ": rows from " + std::to_string(row_offset) +
                             " do not start on a scale block (block_rows " +
                             std::to_string(w.quant.block_rows) + ")");
      }
      const int64_t first_row = row_offset / w.quant.block_rows;
      if (t->shape.size() != 3 || t->shape[0] < first_expert + experts ||
          (!slice && t->shape[0] != experts) || t->shape[2] != scale_cols ||
          t->shape[1] < first_row + scale_rows) {
        return InvalidArgument(where + " has shape " + ShapeString(t->shape) + ", expected [" +
                               (slice ? ">= " : "") + std::to_string(first_expert + experts) +
                               ", >= " + std::to_string(first_row + scale_rows) + ", " +
                               std::to_string(scale_cols) + "]");
      }
      const uint64_t row_bytes = static_cast<uint64_t>(scale_cols) * DTypeBytes(scale_dtype);
      offset_in_tensor = row_bytes * static_cast<uint64_t>(t->shape[1] * e + first_row);
    }
    if (offset_in_tensor + slice_bytes > t->bytes) {
      return InvalidArgument(where + " is too small for the graph's weight");
    }
    w.scale_slices.push_back(WeightSlice{checkpoint.FileOf(name), t->file_offset + offset_in_tensor,
                                         slice_bytes, t->data + offset_in_tensor});
  }
  return Status::Ok();
}

// The shape tensor `t` has as a weight of `dtype`: its own, except for mxfp4, which
// checkpoints store as U8 [..., K / 32, 16] (GPT-OSS's `*_blocks`: 16 bytes of two codes each
// per block of 32), and i4, which compile-model's packed file stores as U8 [..., K / 2].
std::vector<int64_t> LogicalShape(const SafetensorsTensor& t, DType dtype) {
  std::vector<int64_t> shape = t.shape;
  if (dtype == DType::kMxfp4 && t.dtype == DType::kU8 && shape.size() >= 2 && shape.back() == 16) {
    shape.pop_back();
    shape.back() *= 32;
  } else if (dtype == DType::kI4 && t.dtype == DType::kU8 && !shape.empty()) {
    shape.back() *= 2;
  }
  return shape;
}

}  // namespace

StatusOr<ResolvedWeight> ResolveWeight(const Op& op, const Type& type,
                                       const Checkpoint& checkpoint) {
  ResolvedWeight w;
  w.name = op.StringAttr("name");
  w.dtype = type.dtype;
  for (const Dim& d : type.dims) {
    if (!d.is_static()) return InvalidArgument("weight '" + w.name + "' has a symbolic shape");
    w.shape.push_back(d.size);
  }
  w.stacked = op.HasAttr("experts");
  const int64_t experts = w.stacked ? op.IntAttr("experts") : 1;
  // One slice's logical shape: the type minus the expert dim.
  std::vector<int64_t> slice_shape(w.shape.begin() + (w.stacked ? 1 : 0), w.shape.end());
  int64_t slice_numel = 1;
  for (int64_t d : slice_shape)
    slice_numel *= d;
  const uint64_t slice_bytes = static_cast<uint64_t>(DTypeStorageBytes(w.dtype, slice_numel));
  const int64_t row_offset = op.IntAttr("row_offset", 0);
  // An expert-parallel rank's slice of the experts: checkpoint experts [first, first + experts).
  const int64_t first_expert = op.IntAttr("first_expert", 0);
  // An expert-parallel rank's slice (first_expert given, 0 included) takes part of a fused
  // tensor's experts; otherwise the graph takes them all.
  const bool slice = op.HasAttr("first_expert");
  const bool per_expert_names = w.name.find("{e}") != std::string::npos;

  for (int64_t e = first_expert; e < first_expert + experts; ++e) {
    const std::string name = per_expert_names ? ExpandExpertName(w.name, e) : w.name;
    MG_ASSIGN_OR_RETURN(const SafetensorsTensor* t, checkpoint.Get(name));
    const std::string where = checkpoint.FileOf(name) + ": tensor '" + name + "'";
    const bool packed = IsNibbleStorage(w.dtype) && t->dtype == DType::kU8;
    if (t->dtype != w.dtype && !packed) {
      return InvalidArgument(where + " is " + DTypeSafetensorsName(t->dtype) +
                             " but the graph expects " + DTypeName(w.dtype) +
                             (IsNibbleStorage(w.dtype) ? " (stored as U8)" : ""));
    }
    const std::vector<int64_t> shape = LogicalShape(*t, w.dtype);
    // The tensor as stored: the slice itself, or [E, rows, cols] holding all
    // experts, of which this weight takes rows [row_offset, row_offset + N).
    uint64_t offset_in_tensor = 0;
    if (!w.stacked && slice) {
      // An expert-parallel rank's rows [first_expert, first_expert + rows) of a plain
      // [E, ...] tensor (expert biases).
      const bool fits = !slice_shape.empty() && shape.size() == slice_shape.size() &&
                        shape[0] >= first_expert + slice_shape[0] &&
                        std::equal(shape.begin() + 1, shape.end(), slice_shape.begin() + 1) &&
                        !IsQuantStorage(w.dtype);
      if (!fits) {
        return InvalidArgument(where + " (" + ShapeString(t->shape) + ") cannot hold rows [" +
                               std::to_string(first_expert) + ", " +
                               std::to_string(first_expert + slice_shape[0]) + ") of " +
                               ShapeString(slice_shape) + " as the graph expects");
      }
      offset_in_tensor = static_cast<uint64_t>(DTypeStorageBytes(
          w.dtype, first_expert * (slice_numel / std::max<int64_t>(slice_shape[0], 1))));
    } else if (per_expert_names || !w.stacked) {
      std::vector<int64_t> squeezed = shape;
      while (squeezed.size() > slice_shape.size() && squeezed.front() == 1)
        squeezed.erase(squeezed.begin());
      if (squeezed != slice_shape) {
        return InvalidArgument(
            where + " has shape " + ShapeString(t->shape) +
            (packed ? " (" + ShapeString(shape) + " " + DTypeName(w.dtype) + " codes)" : "") +
            " but the graph expects " + ShapeString(slice_shape));
      }
    } else {
      // A fused checkpoint tensor [E, R, K] with R >= row_offset + N.
      if (shape.size() != slice_shape.size() + 1 || shape[0] < first_expert + experts ||
          (!slice && shape[0] != experts) || shape.back() != slice_shape.back() ||
          slice_shape.size() != 2 || shape[1] < row_offset + slice_shape[0]) {
        return InvalidArgument(
            where + " (" + ShapeString(t->shape) + ") cannot hold rows [" +
            std::to_string(row_offset) + ", " + std::to_string(row_offset + slice_shape[0]) +
            ") of " + ShapeString(slice_shape) + " of each of its experts as the graph expects");
      }
      const uint64_t expert_bytes =
          static_cast<uint64_t>(DTypeStorageBytes(w.dtype, shape[1] * shape[2]));
      offset_in_tensor = expert_bytes * e +
                         static_cast<uint64_t>(DTypeStorageBytes(w.dtype, row_offset * shape[2]));
    }
    if (offset_in_tensor + slice_bytes > t->bytes) {
      return InvalidArgument(where + " is too small for the graph's weight");
    }
    w.slices.push_back(WeightSlice{checkpoint.FileOf(name), t->file_offset + offset_in_tensor,
                                   slice_bytes, t->data + offset_in_tensor});
  }
  MG_ASSIGN_OR_RETURN(w.quant, WeightQuantOf(op));
  if (w.quant.quantized()) {
    w.scale_name = op.StringAttr("scale");
    MG_RETURN_IF_ERROR(
        ResolveScales(w, per_expert_names, slice, first_expert, experts, row_offset, checkpoint));
  }
  return w;
}

void WeightArgs::Bind(ValueId id, const ResolvedWeight& weight) {
  TensorArg arg;
  arg.dtype = weight.dtype;
  arg.rank = static_cast<int>(weight.shape.size());
  for (int i = 0; i < arg.rank && i < kMaxRank; ++i)
    arg.shape[i] = weight.shape[i];
  if (weight.stacked) {
    auto pointers = std::make_unique<std::vector<const void*>>();
    for (const WeightSlice& s : weight.slices)
      pointers->push_back(s.data);
    arg.expert_data = pointers->data();
    arg.data = const_cast<std::byte*>(weight.slices[0].data);
    expert_pointers_.push_back(std::move(pointers));
  } else {
    arg.data = const_cast<std::byte*>(weight.slices[0].data);
  }
  arg.quant = weight.quant;
  if (weight.quant.quantized() && !weight.scale_slices.empty()) {
    arg.scales = weight.scale_slices[0].data;
    if (weight.stacked) {
      auto pointers = std::make_unique<std::vector<const void*>>();
      for (const WeightSlice& s : weight.scale_slices)
        pointers->push_back(s.data);
      arg.expert_scales = pointers->data();
      expert_pointers_.push_back(std::move(pointers));
    }
  }
  args_[id] = arg;
}

const TensorArg* WeightArgs::Find(ValueId id) const {
  auto it = args_.find(id);
  return it == args_.end() ? nullptr : &it->second;
}

namespace {

// Sampled pages: the first and last 64 KiB (the safetensors header, the last
// tensors) and 62 pages of 4 KiB spread evenly between.
constexpr uint64_t kEdgeBytes = 64 << 10;
constexpr uint64_t kPageBytes = 4 << 10;
constexpr int kSpreadPages = 62;
constexpr size_t kFullReadBytes = 4 << 20;

class ReadOnlyFile {
 public:
  ~ReadOnlyFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Open(const std::string& path) {
    path_ = path;
    // O_NONBLOCK: a FIFO must not hang the open; fstat refuses it next.
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) return Errno("cannot open");
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Errno("cannot stat");
    if (!S_ISREG(st.st_mode)) return InvalidArgument(path + ": not a regular file");
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    size_ = static_cast<uint64_t>(st.st_size);
    mtime_ns_ = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    return Status::Ok();
  }
  // Hashes [offset, offset + bytes) into `hash`.
  Status HashRange(uint64_t offset, uint64_t bytes, Xxh64& hash, std::vector<char>& buffer) {
    while (bytes > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(bytes, buffer.size()));
      const ssize_t n = ::pread(fd_, buffer.data(), want, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("cannot read");
      if (n == 0) return DataLoss(path_ + ": shorter than its size while being read");
      hash.Update(buffer.data(), static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
      bytes -= static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }
  uint64_t size() const { return size_; }
  int64_t mtime_ns() const { return mtime_ns_; }

 private:
  Status Errno(const char* what) const {
    return FailedPrecondition(path_ + ": " + what + ": " + std::strerror(errno));
  }
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  int64_t mtime_ns_ = 0;
};

StatusOr<uint64_t> SampledHash(ReadOnlyFile& file) {
  std::vector<char> buffer(kEdgeBytes);
  Xxh64 hash;
  const uint64_t size = file.size();
  hash.Update(&size, sizeof(size));
  MG_RETURN_IF_ERROR(file.HashRange(0, std::min(size, kEdgeBytes), hash, buffer));
  if (size > 2 * kEdgeBytes) {
    for (int i = 1; i <= kSpreadPages; ++i) {
      const uint64_t at = size / (kSpreadPages + 1) * i;
      MG_RETURN_IF_ERROR(file.HashRange(at, std::min(kPageBytes, size - at), hash, buffer));
    }
  }
  if (size > kEdgeBytes) {
    const uint64_t tail = std::max(size - kEdgeBytes, kEdgeBytes);
    MG_RETURN_IF_ERROR(file.HashRange(tail, size - tail, hash, buffer));
  }
  return hash.Digest();
}

StatusOr<uint64_t> FullHash(ReadOnlyFile& file) {
  std::vector<char> buffer(kFullReadBytes);
  Xxh64 hash;
  MG_RETURN_IF_ERROR(file.HashRange(0, file.size(), hash, buffer));
  const uint64_t digest = hash.Digest();
  return digest == 0 ? 1 : digest;  // 0 means "not recorded"
}

}  // namespace

StatusOr<PlanCheckpointFile> FingerprintCheckpointFile(const std::string& dir,
                                                       const std::string& file, bool full_hash) {
  ReadOnlyFile f;
  MG_RETURN_IF_ERROR(f.Open(dir + "/" + file));
  PlanCheckpointFile out;
  out.file = file;
  out.bytes = f.size();
  out.mtime_ns = f.mtime_ns();
  MG_ASSIGN_OR_RETURN(out.sampled_hash, SampledHash(f));
  if (full_hash) {
    MG_ASSIGN_OR_RETURN(out.full_hash, FullHash(f));
  }
  return out;
}

Status CheckCheckpointFiles(const std::vector<PlanCheckpointFile>& recorded, const std::string& dir,
                            CheckpointCheck check) {
  for (const PlanCheckpointFile& want : recorded) {
    const std::string path = dir + "/" + want.file;
    const std::string changed = path + " changed since the plan was compiled: ";
    const std::string fix = "; recompile the plan against this checkpoint";
    ReadOnlyFile f;
    MG_RETURN_IF_ERROR(f.Open(path));
    if (f.size() != want.bytes) {
      return DataLoss(changed + "it is " + std::to_string(f.size()) + " bytes, the plan expects " +
                      std::to_string(want.bytes) + fix);
    }
    MG_ASSIGN_OR_RETURN(const uint64_t sampled, SampledHash(f));
    if (sampled != want.sampled_hash) {
      return DataLoss(changed + "the hash of its sampled pages is " + FormatHash(sampled) +
                      ", the plan recorded " + FormatHash(want.sampled_hash) + fix);
    }
    const bool full = check == CheckpointCheck::kFull ||
                      (check == CheckpointCheck::kAuto && f.mtime_ns() != want.mtime_ns);
    if (full && want.full_hash != 0) {
      MG_ASSIGN_OR_RETURN(const uint64_t hash, FullHash(f));
      if (hash != want.full_hash) {
        return DataLoss(changed + "the same size, but its content hash (XXH64) is " +
                        FormatHash(hash) + ", the plan recorded " + FormatHash(want.full_hash) +
                        fix);
      }
    }
  }
  return Status::Ok();
}

StatusOr<WeightArgs> WeightArgs::FromCheckpoint(const Graph& graph, const Checkpoint& checkpoint) {
  WeightArgs args;
  for (const Op& op : graph.ops()) {
    if (!op.def || !op.def->Has(kWeight)) continue;
    MG_ASSIGN_OR_RETURN(ResolvedWeight w, ResolveWeight(op, graph.type(op.results[0]), checkpoint));
    if (w.shape.size() > static_cast<size_t>(kMaxRank)) {
      return InvalidArgument("weight '" + w.name + "' has rank above " + std::to_string(kMaxRank));
    }
    args.Bind(op.results[0], w);
  }
  return args;
}

}  // namespace moegraph
