// Safetensors header validation, checkpoint directories and the safetensors writer.
#include "checkpoint/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <set>

#include "support/json.h"
#include "support/strings.h"

namespace moegraph {
namespace {

// A name read from the file, quoted for a message: its bytes may be anything.
std::string Quote(std::string_view s) {
  return "\"" + EscapeBytes(s) + "\"";
}

std::string SupportedDTypes() {
  std::string out;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64, DType::kU8,
                      DType::kFp8E4M3, DType::kI8}) {
    if (!out.empty()) out += ", ";
    out += DTypeSafetensorsName(dtype);
  }
  return out;
}

// numel(shape) * element_bytes, or false on a negative dimension or 64-bit overflow.
bool ByteCount(const std::vector<int64_t>& shape, DType dtype, uint64_t& bytes) {
  uint64_t count = DTypeBytes(dtype);
  for (int64_t dim : shape) {
    if (dim < 0) return false;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) return false;
  }
  bytes = count;
  return true;
}

uint64_t LoadU64Le(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i)
    value = (value << 8) | static_cast<uint64_t>(p[i]);
  return value;
}

void AppendU64Le(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

bool PathExists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// Parses one header entry (everything except the data pointer) into `tensor`.
Status ParseTensorEntry(const std::string& path, const std::string& name, const JsonValue& entry,
                        uint64_t data_size, SafetensorsTensor& tensor) {
  const std::string where = path + ": tensor " + Quote(name) + ": ";
  if (!entry.is_object()) {
    return DataLoss(where + "header entry is " + entry.DescribeKind() +
                    ", expected an object with dtype, shape and data_offsets");
  }
  tensor.name = name;

  const JsonValue* dtype = entry.Find("dtype");
  if (dtype == nullptr || !dtype->is_string()) {
    return DataLoss(where + "expected a string field \"dtype\", found " +
                    (dtype == nullptr ? "none" : dtype->DescribeKind()));
  }
  std::optional<DType> parsed_dtype = DTypeFromSafetensors(dtype->as_string());
  if (!parsed_dtype) {
    return DataLoss(where + "unsupported dtype " + Quote(dtype->as_string()) +
                    " (expected one of " + SupportedDTypes() + ")");
  }
  tensor.dtype = *parsed_dtype;

  const JsonValue* shape = entry.Find("shape");
  if (shape == nullptr || !shape->is_array()) {
    return DataLoss(where + "expected an array field \"shape\" of non-negative integers, found " +
                    (shape == nullptr ? "none" : shape->DescribeKind()));
  }
  tensor.shape.clear();
  for (const JsonValue& dim : shape->as_array()) {
    if (!dim.is_int() || dim.as_int() < 0) {
      return DataLoss(where + "shape " + shape->Dump() +
                      " must be an array of non-negative integers");
    }
    tensor.shape.push_back(dim.as_int());
  }
  if (!ByteCount(tensor.shape, tensor.dtype, tensor.bytes)) {
    return DataLoss(where + "shape " + ShapeString(tensor.shape) + " of " + dtype->as_string() +
                    " has a byte size that overflows 64 bits");
  }

  const JsonValue* offsets = entry.Find("data_offsets");
  if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2 ||
      !offsets->as_array()[0].is_int() || !offsets->as_array()[1].is_int() ||
      offsets->as_array()[0].as_int() < 0 ||
      offsets->as_array()[0].as_int() > offsets->as_array()[1].as_int()) {
    return DataLoss(where + "expected \"data_offsets\" to be [begin, end] with integers " +
                    "0 <= begin <= end, found " +
                    (offsets == nullptr ? std::string("none") : offsets->Dump()));
  }
  uint64_t begin = static_cast<uint64_t>(offsets->as_array()[0].as_int());
  uint64_t end = static_cast<uint64_t>(offsets->as_array()[1].as_int());
  if (end > data_size) {
    return DataLoss(where + "data_offsets end " + std::to_string(end) +
                    " is beyond the end of the data section (" + std::to_string(data_size) +
                    " bytes)");
  }
  if (end - begin != tensor.bytes) {
    return DataLoss(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                    "] span " + std::to_string(end - begin) + " bytes, but dtype " +
                    dtype->as_string() + " and shape " + ShapeString(tensor.shape) + " need " +
                    std::to_string(tensor.bytes));
  }
  tensor.file_offset = begin;  // relative to the data section until the caller rebases it
  return Status::Ok();
}

}  // namespace

StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  MG_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  SafetensorsFile file;
  file.file_ = std::make_unique<MappedFile>(std::move(mapped));
  const std::byte* base = file.file_->data();
  const uint64_t file_size = file.file_->size();

  if (file_size < 8) {
    return DataLoss(path + ": file is " + std::to_string(file_size) +
                    " bytes, too short for the 8-byte header length that starts a safetensors "
                    "file");
  }
  const uint64_t header_bytes = LoadU64Le(base);
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return DataLoss(path + ": header length " + std::to_string(header_bytes) +
                    " exceeds the limit of " + std::to_string(kMaxSafetensorsHeaderBytes) +
                    " bytes (100 MiB)");
  }
  if (header_bytes > file_size - 8) {
    return DataLoss(path + ": header length " + std::to_string(header_bytes) +
                    " runs past the end of the file (" + std::to_string(file_size) + " bytes)");
  }
  std::string_view header_text(reinterpret_cast<const char*>(base + 8), header_bytes);
  StatusOr<JsonValue> header = ParseJson(header_text, "header");
  if (!header.ok()) {
    return DataLoss(path + ": header is not valid JSON: " + header.status().message());
  }
  if (!header->is_object()) {
    return DataLoss(path + ": header is " + header->DescribeKind() + ", expected a JSON object");
  }

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_size = file_size - data_start;
  for (const auto& [name, entry] : header->as_object()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return DataLoss(path + ": \"__metadata__\" is " + entry.DescribeKind() +
                        ", expected an object of string values");
      }
      for (const auto& [key, value] : entry.as_object()) {
        if (!value.is_string()) {
          return DataLoss(path + ": \"__metadata__\" value for key " + Quote(key) + " is " +
                          value.DescribeKind() + ", expected a string");
        }
        file.metadata_.emplace(key, value.as_string());
      }
      continue;
    }
    SafetensorsTensor tensor;
    MG_RETURN_IF_ERROR(ParseTensorEntry(path, name, entry, data_size, tensor));
    file.tensors_.push_back(std::move(tensor));
  }

  // The byte ranges must tile the data section: sorted by offset, each starts where the last
  // ended, and the last ends at the end of the file.
  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return std::pair(a.file_offset, a.bytes) < std::pair(b.file_offset, b.bytes);
            });
  uint64_t covered = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& tensor : file.tensors_) {
    if (tensor.file_offset < covered) {
      return DataLoss(path + ": tensor " + Quote(tensor.name) + " (data bytes [" +
                      std::to_string(tensor.file_offset) + ", " +
                      std::to_string(tensor.file_offset + tensor.bytes) + ")) overlaps tensor " +
                      Quote(previous->name) + " (ending at " + std::to_string(covered) +
                      "); tensors must not share bytes");
    }
    if (tensor.file_offset > covered) {
      return DataLoss(path + ": data bytes [" + std::to_string(covered) + ", " +
                      std::to_string(tensor.file_offset) +
                      ") belong to no tensor (a hole before tensor " + Quote(tensor.name) +
                      "); the data section must be fully indexed");
    }
    covered = tensor.file_offset + tensor.bytes;
    previous = &tensor;
  }
  if (covered != data_size) {
    return DataLoss(path + ": data bytes [" + std::to_string(covered) + ", " +
                    std::to_string(data_size) +
                    ") at the end of the file belong to no tensor; the data section must be "
                    "fully indexed");
  }

  for (size_t i = 0; i < file.tensors_.size(); ++i) {
    SafetensorsTensor& tensor = file.tensors_[i];
    tensor.file_offset += data_start;
    tensor.data = base + tensor.file_offset;
    file.index_.emplace(tensor.name, i);
  }
  return file;
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const std::string& SafetensorsFile::path() const {
  static const std::string kNone;
  return file_ ? file_->path() : kNone;
}

StatusOr<Checkpoint> Checkpoint::Open(const std::string& dir) {
  Checkpoint checkpoint;
  checkpoint.dir_ = dir;
  const std::string index_path = JoinPath(dir, kSafetensorsIndexFile);
  const std::string single_path = JoinPath(dir, kSafetensorsSingleFile);

  if (PathExists(index_path)) {
    MG_ASSIGN_OR_RETURN(std::string index_text, ReadFileToString(index_path));
    MG_ASSIGN_OR_RETURN(JsonValue index, ParseJson(index_text, index_path));
    const JsonValue* weight_map = index.Find("weight_map");
    if (weight_map == nullptr || !weight_map->is_object()) {
      return DataLoss(index_path + ": expected an object field \"weight_map\" mapping tensor " +
                      "names to shard file names, found " +
                      (weight_map == nullptr ? "none" : weight_map->DescribeKind()));
    }
    std::map<std::string, size_t, std::less<>> shard_ids;  // shard file name -> shards_ index
    for (const auto& [name, shard_value] : weight_map->as_object()) {
      const std::string& shard = shard_value.as_string();
      if (!shard_value.is_string() || shard.empty() || shard.find('/') != std::string::npos ||
          shard.find("..") != std::string::npos || shard.find('\0') != std::string::npos) {
        return DataLoss(index_path + ": weight_map maps tensor " + Quote(name) + " to " +
                        EscapeBytes(shard_value.Dump()) +
                        ", expected the plain name of a file in the directory (no '/' or '..')");
      }
      auto it = shard_ids.find(shard);
      if (it == shard_ids.end()) {
        StatusOr<SafetensorsFile> opened = SafetensorsFile::Open(JoinPath(dir, shard));
        if (!opened.ok()) {
          return opened.status().WithContext(index_path + ": shard " + Quote(shard) +
                                             " (of tensor " + Quote(name) + ")");
        }
        checkpoint.shards_.push_back(std::move(opened).value());
        it = shard_ids.emplace(shard, checkpoint.shards_.size() - 1).first;
      }
      const SafetensorsTensor* tensor = checkpoint.shards_[it->second].Find(name);
      if (tensor == nullptr) {
        return DataLoss(index_path + ": weight_map puts tensor " + Quote(name) + " in shard " +
                        Quote(shard) + ", which has no such tensor");
      }
      checkpoint.entries_.emplace(name, Entry{it->second, tensor});
    }
    return checkpoint;
  }

  if (PathExists(single_path)) {
    MG_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(single_path));
    checkpoint.shards_.push_back(std::move(file));
    for (const SafetensorsTensor& tensor : checkpoint.shards_[0].tensors()) {
      checkpoint.entries_.emplace(tensor.name, Entry{0, &tensor});
    }
    return checkpoint;
  }

  return NotFound(dir + ": not a safetensors checkpoint directory: expected " +
                  kSafetensorsIndexFile + " or " + kSafetensorsSingleFile + " in it");
}

Status Checkpoint::AddFile(const std::string& path) {
  MG_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
  for (const SafetensorsTensor& tensor : file.tensors()) {
    if (entries_.count(tensor.name) != 0) {
      return InvalidArgument(path + ": tensor " + Quote(tensor.name) + " is also in checkpoint " +
                             dir_ + "; expected names of its own");
    }
  }
  shards_.push_back(std::move(file));
  const size_t shard = shards_.size() - 1;
  for (const SafetensorsTensor& tensor : shards_[shard].tensors())
    entries_.emplace(tensor.name, Entry{shard, &tensor});
  return Status::Ok();
}

StatusOr<const SafetensorsTensor*> Checkpoint::Get(std::string_view name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return NotFound("tensor " + Quote(name) + " not found in checkpoint " + dir_);
  }
  return it->second.tensor;
}

const std::string& Checkpoint::FileOf(std::string_view name) const {
  static const std::string kNone;
  auto it = entries_.find(name);
  return it == entries_.end() ? kNone : shards_[it->second.shard].path();
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, entry] : entries_)
    names.push_back(name);
  return names;
}

Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::vector<std::pair<std::string, std::string>>& metadata,
                        uint64_t alignment) {
  if (alignment < 8 || (alignment & (alignment - 1)) != 0) {
    return InvalidArgument(path + ": alignment " + std::to_string(alignment) +
                           " must be a power of two >= 8");
  }
  JsonValue::Object header;
  if (!metadata.empty()) {
    JsonValue metadata_json = JsonValue::MakeObject();
    for (const auto& [key, value] : metadata) {
      if (metadata_json.Find(key) != nullptr) {
        return InvalidArgument(path + ": duplicate metadata key " + Quote(key));
      }
      metadata_json.Set(key, JsonValue::String(value));
    }
    header.emplace_back("__metadata__", std::move(metadata_json));
  }
  std::set<std::string_view> names;
  uint64_t offset = 0;
  std::vector<uint64_t> pads;  // pads[i]: bytes of padding before tensors[i]
  auto add_entry = [&](const std::string& name, DType dtype, const std::vector<int64_t>& dims,
                       uint64_t bytes) {
    JsonValue shape = JsonValue::MakeArray();
    for (int64_t dim : dims)
      shape.Append(JsonValue::Int(dim));
    JsonValue entry = JsonValue::MakeObject();
    entry.Set("dtype", JsonValue::String(DTypeSafetensorsName(dtype)));
    entry.Set("shape", std::move(shape));
    entry.Set("data_offsets",
              JsonValue::MakeArray({JsonValue::Int(static_cast<int64_t>(offset)),
                                    JsonValue::Int(static_cast<int64_t>(offset + bytes))}));
    header.emplace_back(name, std::move(entry));
    offset += bytes;
  };
  for (const TensorToWrite& tensor : tensors) {
    const std::string where = path + ": tensor " + Quote(tensor.name) + ": ";
    if (tensor.name.empty() || tensor.name == "__metadata__") {
      return InvalidArgument(where + "name must be non-empty and not \"__metadata__\"");
    }
    if (!names.insert(tensor.name).second) return InvalidArgument(where + "duplicate name");
    uint64_t bytes = 0;
    if (!ByteCount(tensor.shape, tensor.dtype, bytes)) {
      return InvalidArgument(where + "shape " + ShapeString(tensor.shape) +
                             " must be non-negative and its byte size must fit in 64 bits");
    }
    if (bytes != tensor.bytes.size()) {
      return InvalidArgument(where + "has " + std::to_string(tensor.bytes.size()) +
                             " bytes, but dtype " + DTypeSafetensorsName(tensor.dtype) +
                             " and shape " + ShapeString(tensor.shape) + " need " +
                             std::to_string(bytes));
    }
    if (tensor.name.rfind(kSafetensorsPadPrefix, 0) == 0 && alignment > 8) {
      return InvalidArgument(where + "names starting " + kSafetensorsPadPrefix +
                             " are the alignment padding's");
    }
    const uint64_t pad = (alignment - offset % alignment) % alignment;
    pads.push_back(alignment > 8 ? pad : 0);
    if (pads.back() > 0) {
      add_entry(kSafetensorsPadPrefix + std::to_string(pads.size() - 1), DType::kU8,
                {static_cast<int64_t>(pad)}, pad);
    }
    add_entry(tensor.name, tensor.dtype, tensor.shape, bytes);  // names unique: checked above
  }
  std::string header_text = JsonValue::MakeObject(std::move(header)).Dump();
  // The data section starts at 8 + header size: a multiple of the alignment.
  header_text.append((alignment - (8 + header_text.size()) % alignment) % alignment, ' ');

  std::string out;
  out.reserve(8 + header_text.size() + offset);
  AppendU64Le(out, header_text.size());
  out += header_text;
  for (size_t i = 0; i < tensors.size(); ++i) {
    out.append(pads[i], '\0');
    out += tensors[i].bytes;
  }
  return WriteFileAtomically(path, out);
}

}  // namespace moegraph
