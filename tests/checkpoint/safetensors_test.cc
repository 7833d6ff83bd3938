// Tests for the safetensors reader and writer and for checkpoint directories.
#include "checkpoint/safetensors.h"
#include "tests/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "support/half.h"
#include "support/mapped_file.h"

namespace moegraph {
namespace {

class SafetensorsTest : public testing::TempDirTest {};

class CheckpointTest : public SafetensorsTest {};

template <typename T>
std::string Bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::string U64Le(uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  return out;
}

// A file whose header is `header` verbatim, followed by `data_bytes` bytes of data.
std::string RawFile(const std::string& header, size_t data_bytes) {
  return U64Le(header.size()) + header + std::string(data_bytes, '\x5A');
}

void WriteRaw(const std::string& path, const std::string& contents) {
  ASSERT_TRUE(WriteFileAtomically(path, contents).ok());
}

TensorToWrite F32Tensor(const std::string& name, std::vector<int64_t> shape,
                        const std::vector<float>& values) {
  return {name, DType::kF32, std::move(shape), Bytes(values)};
}

TEST_F(SafetensorsTest, WritesAndReadsBack) {
  const std::string path = TestDir() + "/model.safetensors";
  std::vector<uint16_t> bf16 = {F32ToBf16(1.0f), F32ToBf16(-2.0f), F32ToBf16(0.5f), F32ToBf16(3.0f),
                                F32ToBf16(7.0f)};
  std::vector<TensorToWrite> tensors = {
      F32Tensor("a.weight", {2, 3}, {1, 2, 3, 4, 5, 6}),
      {"b", DType::kBF16, {5}, Bytes(bf16)},
      {"scalar", DType::kI64, {}, Bytes(std::vector<int64_t>{-42})},
      {"empty", DType::kU8, {0, 3}, ""},
      {"bytes", DType::kU8, {3}, "xyz"},
  };
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}, {"note", "h\u00e9"}}).ok());

  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->path(), path);
  EXPECT_EQ(file->metadata().size(), 2u);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->metadata().at("note"), "h\u00e9");
  ASSERT_EQ(file->tensors().size(), tensors.size());

  StatusOr<std::string> raw = ReadFileToString(path);
  ASSERT_TRUE(raw.ok());
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, raw->data(), 8);
  EXPECT_EQ(header_bytes % 8, 0u);
  EXPECT_EQ(raw->size(), 8 + header_bytes + 24 + 10 + 8 + 0 + 3);

  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsTensor& got = file->tensors()[i];  // file order is the written order
    EXPECT_EQ(got.name, tensors[i].name);
    EXPECT_EQ(got.dtype, tensors[i].dtype);
    EXPECT_EQ(got.shape, tensors[i].shape);
    EXPECT_EQ(got.bytes, tensors[i].bytes.size());
    EXPECT_EQ(got.data, file->tensors()[0].data + (got.file_offset - 8 - header_bytes));
    EXPECT_EQ(raw->substr(got.file_offset, got.bytes), tensors[i].bytes) << got.name;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(got.data), got.bytes), tensors[i].bytes);
    EXPECT_EQ(file->Find(got.name), &got);
  }
  EXPECT_EQ(file->tensors()[0].file_offset, 8 + header_bytes);
  EXPECT_EQ(file->Find("missing"), nullptr);
  float a5;
  std::memcpy(&a5, file->Find("a.weight")->data + 5 * sizeof(float), sizeof(float));
  EXPECT_EQ(a5, 6.0f);
}

// With an alignment, the data section and every tensor start on a multiple of it; the gaps
// are padding tensors, so the ranges still tile the data section and the file reads back.
TEST_F(SafetensorsTest, AlignedTensorsStartOnTheAlignment) {
  const std::string path = TestDir() + "/aligned.safetensors";
  ASSERT_TRUE(WriteSafetensors(path,
                               {F32Tensor("a", {3}, {1, 2, 3}),
                                {"b", DType::kI8, {5}, std::string("\x01\xff\x02\x7f\x80", 5)},
                                F32Tensor("c", {1}, {9})},
                               {}, 4096)
                  .ok());
  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  std::vector<std::string> data;
  for (const SafetensorsTensor& t : file->tensors()) {
    if (t.name.rfind(kSafetensorsPadPrefix, 0) == 0) continue;
    data.push_back(t.name);
    EXPECT_EQ(t.file_offset % 4096, 0u) << t.name;
  }
  EXPECT_EQ(data, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(static_cast<int8_t>(file->Find("b")->data[1]), -1);
  float c;
  std::memcpy(&c, file->Find("c")->data, 4);
  EXPECT_EQ(c, 9.0f);

  for (uint64_t bad : {0ull, 4ull, 24ull}) {
    Status s = WriteSafetensors(path, {F32Tensor("a", {1}, {1})}, {}, bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("alignment " + std::to_string(bad) + " must be a power of two >= 8"),
              std::string::npos)
        << s.message();
  }
  Status reserved = WriteSafetensors(
      path, {F32Tensor(std::string(kSafetensorsPadPrefix) + "0", {1}, {1})}, {}, 4096);
  EXPECT_EQ(reserved.code(), StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsTest, TensorPointersSurviveMoves) {
  const std::string path = TestDir() + "/m.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {F32Tensor("x", {2}, {1, 2})}).ok());
  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  const SafetensorsTensor* tensor = file->Find("x");
  const std::byte* data = tensor->data;
  SafetensorsFile moved = std::move(file).value();
  std::vector<SafetensorsFile> files;
  files.push_back(std::move(moved));
  files.reserve(100);  // reallocates: moves the file again
  EXPECT_EQ(files[0].Find("x"), tensor);
  EXPECT_EQ(files[0].Find("x")->data, data);
  float second;
  std::memcpy(&second, data + 4, 4);
  EXPECT_EQ(second, 2.0f);
}

TEST_F(SafetensorsTest, WriterRejectsBadTensors) {
  const std::string path = TestDir() + "/bad.safetensors";
  struct Case {
    std::vector<TensorToWrite> tensors;
    std::string expected;
  };
  const Case cases[] = {
      {{F32Tensor("t", {3}, {1, 2})},
       "tensor \"t\": has 8 bytes, but dtype F32 and shape [3] need 12"},
      {{F32Tensor("t", {1}, {1}), F32Tensor("t", {1}, {2})}, "tensor \"t\": duplicate name"},
      {{F32Tensor("", {1}, {1})}, "name must be non-empty and not \"__metadata__\""},
      {{F32Tensor("__metadata__", {1}, {1})}, "name must be non-empty and not \"__metadata__\""},
      {{F32Tensor("t", {-1}, {})}, "shape [-1] must be non-negative"},
  };
  for (const Case& c : cases) {
    Status status = WriteSafetensors(path, c.tensors);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.expected;
    EXPECT_NE(status.message().find(path), std::string::npos) << status.message();
    EXPECT_NE(status.message().find(c.expected), std::string::npos) << status.message();
  }
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // nothing written
  Status dup_meta = WriteSafetensors(path, {}, {{"k", "1"}, {"k", "2"}});
  EXPECT_EQ(dup_meta.code(), StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsTest, ZeroTensorsAndZeroSizedTensorsAreValid) {
  const std::string dir = TestDir();
  ASSERT_TRUE(WriteSafetensors(dir + "/none.safetensors", {}).ok());
  StatusOr<SafetensorsFile> none = SafetensorsFile::Open(dir + "/none.safetensors");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->tensors().empty());

  // Zero-sized tensors sharing an offset with their neighbours do not overlap anything.
  const std::string path = dir + "/zeros.safetensors";
  WriteRaw(path, RawFile(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("c":{"dtype":"F32","shape":[2,0],"data_offsets":[4,4]}})",
                         4));
  StatusOr<SafetensorsFile> zeros = SafetensorsFile::Open(path);
  ASSERT_TRUE(zeros.ok()) << zeros.status().ToString();
  EXPECT_EQ(zeros->tensors().size(), 3u);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(TestDir() + "/absent.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kNotFound);
}

struct MalformedCase {
  std::string label;
  std::string contents;
  std::string expected;  // must appear in the message, after "path: "
};

std::string Entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}";
}

TEST_F(SafetensorsTest, MalformedHeadersAreDataLossNamingFileAndProblem) {
  const std::string f32x2 = Entry("F32", "[2]", "[0,8]");
  const MalformedCase cases[] = {
      {"short file", std::string("\x05\0\0\0\0", 5),
       "file is 5 bytes, too short for the 8-byte header length"},
      {"huge header length", U64Le(200ull << 20) + "{}",
       "header length 209715200 exceeds the limit of 104857600 bytes (100 MiB)"},
      {"header past end", U64Le(100) + "{}",
       "header length 100 runs past the end of the file (10 bytes)"},
      {"header not JSON", RawFile(R"({"t": )", 0),
       "header is not valid JSON: header:1:7: expected a JSON value, found end of input"},
      {"header not object", RawFile("[]", 0), "header is an array, expected a JSON object"},
      {"entry not object", RawFile(R"({"t": 3})", 0),
       "tensor \"t\": header entry is an integer, expected an object"},
      {"unknown dtype", RawFile(R"({"t":)" + Entry("F64", "[1]", "[0,8]") + "}", 8),
       "tensor \"t\": unsupported dtype \"F64\" (expected one of F32, F16, BF16, I32, I64, U8, "
       "F8_E4M3, I8)"},
      {"missing dtype", RawFile(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4),
       "tensor \"t\": expected a string field \"dtype\", found none"},
      {"shape not array", RawFile(R"({"t":)" + Entry("F32", "3", "[0,12]") + "}", 12),
       "tensor \"t\": expected an array field \"shape\" of non-negative integers, found an "
       "integer"},
      {"negative dim", RawFile(R"({"t":)" + Entry("F32", "[2,-1]", "[0,0]") + "}", 0),
       "tensor \"t\": shape [2,-1] must be an array of non-negative integers"},
      {"fractional dim", RawFile(R"({"t":)" + Entry("F32", "[1.5]", "[0,4]") + "}", 4),
       "tensor \"t\": shape [1.5] must be an array of non-negative integers"},
      {"numel overflow",
       RawFile(R"({"t":)" + Entry("F32", "[4294967296,4294967296]", "[0,0]") + "}", 0),
       "tensor \"t\": shape [4294967296, 4294967296] of F32 has a byte size that overflows 64 "
       "bits"},
      {"offsets not pair", RawFile(R"({"t":)" + Entry("F32", "[1]", "[4]") + "}", 4),
       "tensor \"t\": expected \"data_offsets\" to be [begin, end] with integers 0 <= begin <= "
       "end, found [4]"},
      {"offsets reversed", RawFile(R"({"t":)" + Entry("F32", "[1]", "[4,0]") + "}", 4),
       "found [4,0]"},
      {"offsets negative", RawFile(R"({"t":)" + Entry("F32", "[1]", "[-4,0]") + "}", 4),
       "found [-4,0]"},
      {"offsets strings", RawFile(R"({"t":)" + Entry("F32", "[1]", R"(["0","4"])") + "}", 4),
       "found [\"0\",\"4\"]"},
      {"end beyond data", RawFile(R"({"t":)" + f32x2 + "}", 4),
       "tensor \"t\": data_offsets end 8 is beyond the end of the data section (4 bytes)"},
      {"size mismatch", RawFile(R"({"t":)" + Entry("F32", "[2]", "[0,4]") + "}", 4),
       "tensor \"t\": data_offsets [0, 4] span 4 bytes, but dtype F32 and shape [2] need 8"},
      {"overlap",
       RawFile(R"({"a":)" + f32x2 + R"(,"b":)" + Entry("F32", "[2]", "[4,12]") + "}", 12),
       "tensor \"b\" (data bytes [4, 12)) overlaps tensor \"a\" (ending at 8)"},
      {"hole",
       RawFile(R"({"a":)" + Entry("F32", "[1]", "[0,4]") + R"(,"b":)" +
                   Entry("F32", "[1]", "[8,12]") + "}",
               12),
       "data bytes [4, 8) belong to no tensor (a hole before tensor \"b\"); the data section "
       "must be fully indexed"},
      {"hole at start", RawFile(R"({"a":)" + Entry("F32", "[1]", "[4,8]") + "}", 8),
       "data bytes [0, 4) belong to no tensor (a hole before tensor \"a\")"},
      {"trailing bytes", RawFile(R"({"a":)" + Entry("F32", "[1]", "[0,4]") + "}", 8),
       "data bytes [4, 8) at the end of the file belong to no tensor"},
      {"duplicate names", RawFile(R"({"a":)" + f32x2 + R"(,"a":)" + f32x2 + "}", 8),
       "header is not valid JSON: header:1:55: duplicate object key \"a\""},
      {"metadata not object", RawFile(R"({"__metadata__":["x"]})", 0),
       "\"__metadata__\" is an array, expected an object of string values"},
      {"metadata value not string", RawFile(R"({"__metadata__":{"format":"pt","n":1}})", 0),
       "\"__metadata__\" value for key \"n\" is an integer, expected a string"},
  };
  const std::string dir = TestDir();
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = dir + "/bad.safetensors";
    WriteRaw(path, c.contents);
    StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(file.status().message().rfind(path + ": ", 0), 0u) << file.status().message();
    EXPECT_NE(file.status().message().find(c.expected), std::string::npos)
        << file.status().message();
  }
}

TEST_F(SafetensorsTest, TruncatedAndCorruptedFilesNeverCrash) {
  // Under ASan this checks that no malformed header reads outside the file.
  const std::string dir = TestDir();
  const std::string good_path = dir + "/good.safetensors";
  ASSERT_TRUE(WriteSafetensors(good_path,
                               {F32Tensor("a", {2, 3}, {1, 2, 3, 4, 5, 6}),
                                {"b", DType::kBF16, {3}, std::string(6, '\1')}},
                               {{"format", "pt"}})
                  .ok());
  const std::string good = *ReadFileToString(good_path);
  const std::string path = dir + "/mutated.safetensors";
  for (size_t length = 0; length < good.size(); ++length) {
    WriteRaw(path, good.substr(0, length));
    StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    EXPECT_FALSE(file.ok()) << "truncated to " << length;
    if (!file.ok()) {
      EXPECT_EQ(file.status().code(), StatusCode::kDataLoss);
    }
  }
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  for (int trial = 0; trial < 500; ++trial) {
    std::string mutated = good;
    for (int flips = 0; flips < 3; ++flips) {
      mutated[next() % mutated.size()] = static_cast<char>(next() & 0xFF);
    }
    WriteRaw(path, mutated);
    StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    if (file.ok()) {  // a flip in the data section, or a harmless one in the header
      for (const SafetensorsTensor& tensor : file->tensors()) {
        EXPECT_LE(tensor.file_offset + tensor.bytes, mutated.size());
      }
    }
  }
}

// A directory with two shards and an index; shard 2 also holds "stray", which the index omits.
std::string WriteShardedCheckpoint(const std::string& dir, const std::string& weight_map) {
  EXPECT_TRUE(
      WriteSafetensors(dir + "/model-00001-of-00002.safetensors",
                       {F32Tensor("embed", {2, 2}, {1, 2, 3, 4}), F32Tensor("layer.0", {1}, {5})})
          .ok());
  EXPECT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors",
                               {F32Tensor("layer.1", {2}, {6, 7}), F32Tensor("stray", {1}, {0})})
                  .ok());
  const std::string index = dir + "/model.safetensors.index.json";
  EXPECT_TRUE(WriteFileAtomically(
                  index, R"({"metadata": {"total_size": 32}, "weight_map": )" + weight_map + "}")
                  .ok());
  return index;
}

const char* kGoodWeightMap = R"({"layer.1": "model-00002-of-00002.safetensors",
    "embed": "model-00001-of-00002.safetensors", "layer.0": "model-00001-of-00002.safetensors"})";

TEST_F(CheckpointTest, SingleFile) {
  const std::string dir = TestDir();
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors",
                               {F32Tensor("z", {1}, {1}), F32Tensor("a", {2}, {2, 3})})
                  .ok());
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  EXPECT_EQ(checkpoint->dir(), dir);
  EXPECT_EQ(checkpoint->TensorNames(), (std::vector<std::string>{"a", "z"}));
  StatusOr<const SafetensorsTensor*> a = checkpoint->Get("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->shape, std::vector<int64_t>{2});
  EXPECT_EQ(checkpoint->FileOf("a"), dir + "/model.safetensors");
  EXPECT_EQ(checkpoint->FileOf("nope"), "");

  StatusOr<const SafetensorsTensor*> missing = checkpoint->Get("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "tensor \"nope\" not found in checkpoint " + dir);

  // Moving the checkpoint keeps tensor pointers valid.
  const SafetensorsTensor* before = *a;
  Checkpoint moved = std::move(checkpoint).value();
  EXPECT_EQ(*moved.Get("a"), before);
  float value;
  std::memcpy(&value, before->data + 4, 4);
  EXPECT_EQ(value, 3.0f);
}

// compile-model's packed weights: a file beside the plan added to the checkpoint's tensors.
TEST_F(CheckpointTest, AddFileAddsItsTensorsAndRefusesAClash) {
  const std::string dir = TestDir("model"), plan = TestDir("plan");
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", {F32Tensor("a", {2}, {2, 3})}).ok());
  ASSERT_TRUE(WriteSafetensors(plan + "/p.int8.safetensors", {F32Tensor("int8.a", {1}, {4})}).ok());
  ASSERT_TRUE(WriteSafetensors(plan + "/clash.safetensors", {F32Tensor("a", {1}, {5})}).ok());
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  ASSERT_TRUE(checkpoint->AddFile(plan + "/p.int8.safetensors").ok());
  EXPECT_EQ(checkpoint->TensorNames(), (std::vector<std::string>{"a", "int8.a"}));
  EXPECT_EQ(checkpoint->FileOf("int8.a"), plan + "/p.int8.safetensors");
  EXPECT_EQ(checkpoint->FileOf("a"), dir + "/model.safetensors");

  Status clash = checkpoint->AddFile(plan + "/clash.safetensors");
  EXPECT_EQ(clash.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(clash.message(), plan + "/clash.safetensors: tensor \"a\" is also in checkpoint " +
                                 dir + "; expected names of its own");
  EXPECT_EQ(checkpoint->FileOf("a"), dir + "/model.safetensors");  // nothing of it was added
  Status missing = checkpoint->AddFile(plan + "/none.safetensors");
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_NE(missing.message().find(plan + "/none.safetensors"), std::string::npos)
      << missing.message();
}

TEST_F(CheckpointTest, ShardedIndex) {
  const std::string dir = TestDir();
  WriteShardedCheckpoint(dir, kGoodWeightMap);
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir + "/");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  EXPECT_EQ(checkpoint->TensorNames(), (std::vector<std::string>{"embed", "layer.0", "layer.1"}));
  EXPECT_EQ(checkpoint->FileOf("embed"), dir + "/model-00001-of-00002.safetensors");
  EXPECT_EQ(checkpoint->FileOf("layer.1"), dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(checkpoint->Get("stray").status().code(), StatusCode::kNotFound);  // not indexed
  const SafetensorsTensor* layer1 = *checkpoint->Get("layer.1");
  float values[2];
  std::memcpy(values, layer1->data, 8);
  EXPECT_EQ(values[0], 6.0f);
  EXPECT_EQ(values[1], 7.0f);
  // file_offset addresses the same bytes in the shard file.
  StatusOr<std::string> shard = ReadFileToString(checkpoint->FileOf("layer.1"));
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ(std::memcmp(shard->data() + layer1->file_offset, layer1->data, 8), 0);
}

TEST_F(CheckpointTest, BadIndexes) {
  struct Case {
    std::string label;
    std::string weight_map;
    StatusCode code;
    std::string expected;
  };
  const Case cases[] = {
      {"missing shard", R"({"embed": "model-00003-of-00002.safetensors"})", StatusCode::kNotFound,
       "model.safetensors.index.json: shard \"model-00003-of-00002.safetensors\" (of tensor "
       "\"embed\")"},
      {"tensor not in shard", R"({"layer.1": "model-00001-of-00002.safetensors"})",
       StatusCode::kDataLoss,
       "weight_map puts tensor \"layer.1\" in shard \"model-00001-of-00002.safetensors\", which "
       "has no such tensor"},
      {"slash in shard", R"({"embed": "sub/model.safetensors"})", StatusCode::kDataLoss,
       "weight_map maps tensor \"embed\" to \"sub/model.safetensors\", expected the plain name "
       "of a file in the directory (no '/' or '..')"},
      {"dotdot in shard", R"({"embed": "..model-00001-of-00002.safetensors"})",
       StatusCode::kDataLoss, "maps tensor \"embed\" to \"..model-00001-of-00002.safetensors\""},
      {"empty shard", R"({"embed": ""})", StatusCode::kDataLoss, "to \"\", expected the plain"},
      {"shard not string", R"({"embed": 1})", StatusCode::kDataLoss, "to 1, expected the plain"},
      {"weight_map not object", R"(["embed"])", StatusCode::kDataLoss,
       "expected an object field \"weight_map\" mapping tensor names to shard file names, found "
       "an array"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string dir = TestDir(std::to_string(&c - cases));
    const std::string index = WriteShardedCheckpoint(dir, c.weight_map);
    StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
    ASSERT_FALSE(checkpoint.ok());
    EXPECT_EQ(checkpoint.status().code(), c.code) << checkpoint.status().ToString();
    EXPECT_NE(checkpoint.status().message().find(c.expected), std::string::npos)
        << checkpoint.status().message();
    EXPECT_NE(checkpoint.status().message().find(index), std::string::npos)
        << checkpoint.status().message();
  }
}

TEST_F(CheckpointTest, IndexThatIsNotJsonOrLacksWeightMap) {
  const std::string dir = TestDir();
  const std::string index = dir + "/model.safetensors.index.json";
  ASSERT_TRUE(WriteFileAtomically(index, "{\n  \"weight_map\": {\"a\": }\n}").ok());
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(checkpoint.status().message(), index + ":2:23: expected a JSON value, found '}'");

  ASSERT_TRUE(WriteFileAtomically(index, R"({"metadata": {}})").ok());
  checkpoint = Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_NE(checkpoint.status().message().find("\"weight_map\""), std::string::npos);
  EXPECT_NE(checkpoint.status().message().find("found none"), std::string::npos);
}

TEST_F(CheckpointTest, CorruptShardNamesTheShard) {
  const std::string dir = TestDir();
  WriteShardedCheckpoint(dir, kGoodWeightMap);
  WriteRaw(dir + "/model-00002-of-00002.safetensors", "short");
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(checkpoint.status().message().find(dir + "/model-00002-of-00002.safetensors: file is 5 "
                                                     "bytes"),
            std::string::npos)
      << checkpoint.status().message();
}

TEST_F(CheckpointTest, DefaultConstructedIsEmpty) {
  Checkpoint checkpoint;
  EXPECT_TRUE(checkpoint.TensorNames().empty());
  EXPECT_EQ(checkpoint.Get("x").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(checkpoint.FileOf("x"), "");
  SafetensorsFile file;
  EXPECT_EQ(file.path(), "");
  EXPECT_EQ(file.Find("x"), nullptr);
  EXPECT_TRUE(file.tensors().empty());
}

TEST_F(CheckpointTest, DirectoryWithoutWeightsIsNotFound) {
  const std::string dir = TestDir();
  StatusOr<Checkpoint> checkpoint = Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(checkpoint.status().message(),
            dir +
                ": not a safetensors checkpoint directory: expected "
                "model.safetensors.index.json or model.safetensors in it");
  EXPECT_EQ(Checkpoint::Open(dir + "/does-not-exist").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace moegraph
