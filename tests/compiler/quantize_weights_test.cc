// compile-model --weights int8: the int8 block quantizer's bound, the rewrite of a graph's
// matmul weights (IR text in, IR text out, including the no-change case and the weights it
// keeps), the packed file's layout, and int8 plans against the checkpoint's own on the goldens.
#include "compiler/quantize_weights.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "compiler/compile_model.h"
#include "ir/op_registry.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "kernels/cpu/cpu_isa.h"
#include "runtime/engine.h"
#include "support/half.h"
#include "tests/golden/golden_util.h"
#include "tests/testing/engine_compare.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensors.h"

namespace moegraph {
namespace {

// ---- QuantizeInt8Rows ------------------------------------------------------------------

// Every value comes back within half a step of its block (s / 2; plus the rounding of code * s
// in f32, < 1e-4 of it), each nonzero block's
// largest value maps to +-127 exactly, and an all-zero block has scale 0 and codes 0; 37
// columns make a short last block.
TEST(QuantizeInt8RowsTest, CodesReconstructWithinHalfAStep) {
  constexpr int64_t kRows = 3, kCols = 37, kBlock = 32, kBlocks = 2;
  std::vector<float> w = testing::RandomFloats(kRows * kCols, 7, 2.5f);
  for (int64_t c = kBlock; c < kCols; ++c)
    w[1 * kCols + c] = 0.0f;   // row 1's short block is all zero
  w[2 * kCols + 3] = -1e-30f;  // a tiny value in a block with large ones
  std::vector<int8_t> q(kRows * kCols, 99);
  std::vector<float> scales(kRows * kBlocks, -1.0f);
  ASSERT_TRUE(QuantizeInt8Rows(w.data(), kRows, kCols, kBlock, q.data(), scales.data()).ok());
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t b = 0; b < kBlocks; ++b) {
      const int64_t c0 = b * kBlock, c1 = std::min(kCols, c0 + kBlock);
      float max_abs = 0.0f;
      int max_code = 0;
      for (int64_t c = c0; c < c1; ++c) {
        max_abs = std::max(max_abs, std::fabs(w[r * kCols + c]));
        max_code = std::max(max_code, std::abs(static_cast<int>(q[r * kCols + c])));
      }
      const float s = scales[r * kBlocks + b];
      EXPECT_EQ(s, max_abs / 127.0f) << "row " << r << " block " << b;
      EXPECT_EQ(max_code, max_abs > 0.0f ? 127 : 0) << "row " << r << " block " << b;
      for (int64_t c = c0; c < c1; ++c) {
        const float err = std::fabs(w[r * kCols + c] - static_cast<float>(q[r * kCols + c]) * s);
        EXPECT_LE(err, 0.5f * s * (1.0f + 1e-4f)) << "row " << r << " column " << c;
      }
    }
  }
  EXPECT_EQ(scales[1 * kBlocks + 1], 0.0f);
  EXPECT_EQ(q[2 * kCols + 3], 0);
}

TEST(QuantizeInt8RowsTest, ANonFiniteValueNamesItsRowAndColumn) {
  std::vector<float> w(2 * 40, 0.5f);
  w[1 * 40 + 33] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int8_t> q(w.size());
  std::vector<float> scales(2 * 2);
  Status s = QuantizeInt8Rows(w.data(), 2, 40, 32, q.data(), scales.data());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("at row 1, column 33 is not finite"), std::string::npos)
      << s.message();
  w[1 * 40 + 33] = -std::numeric_limits<float>::infinity();
  s = QuantizeInt8Rows(w.data(), 2, 40, 32, q.data(), scales.data());
  EXPECT_NE(s.message().find("at row 1, column 33 is not finite"), std::string::npos)
      << s.message();
}

// Q4_0's rule: d = m / -8 for the block's value m of largest magnitude, so m comes back exactly
// (code -8), every value within |d| / 2 but those rounded past 7 (w / d > 7.5), within |d|;
// an all-zero block has d = 0 and codes 0 (nibble 8). 96 columns in blocks of 64 leave a short
// block of 32.
TEST(QuantizeInt4RowsTest, CodesReconstructWithinHalfAStepButTheClamped) {
  constexpr int64_t kRows = 3, kCols = 96, kBlock = 64, kBlocks = 2;
  std::vector<float> w = testing::RandomFloats(kRows * kCols, 9, 2.5f);
  for (int64_t c = kBlock; c < kCols; ++c)
    w[1 * kCols + c] = 0.0f;  // row 1's short block is all zero
  w[2 * kCols + 5] = 7.0f;    // row 2's first block: m = 7 (d < 0) ...
  w[2 * kCols + 6] = -6.9f;   // ... and a value that rounds to 7.89 -> clamped to 7
  std::vector<uint8_t> q(kRows * kCols / 2, 0xAA);
  std::vector<float> scales(kRows * kBlocks, 99.0f);
  ASSERT_TRUE(QuantizeInt4Rows(w.data(), kRows, kCols, kBlock, q.data(), scales.data()).ok());
  int clamped = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    const uint8_t* row = q.data() + r * kCols / 2;
    for (int64_t b = 0; b < kBlocks; ++b) {
      const int64_t c0 = b * kBlock, c1 = std::min(kCols, c0 + kBlock);
      float m = 0.0f;
      for (int64_t c = c0; c < c1; ++c) {
        if (std::fabs(w[r * kCols + c]) > std::fabs(m)) m = w[r * kCols + c];
      }
      const float d = scales[r * kBlocks + b];
      EXPECT_EQ(d, m / -8.0f) << "row " << r << " block " << b;
      for (int64_t c = c0; c < c1; ++c) {
        const float v = w[r * kCols + c];
        const int code = Int4At(row, c);
        ASSERT_GE(code, -8);
        ASSERT_LE(code, 7);
        const float err = std::fabs(v - static_cast<float>(code) * d);
        if (v == m && m != 0.0f) {
          EXPECT_EQ(code, -8) << "row " << r << " column " << c;
        }
        if (d != 0.0f && v / d > 7.5f) {
          ++clamped;
          EXPECT_EQ(code, 7);
          EXPECT_LE(err, std::fabs(d) * (1.0f + 1e-4f)) << "row " << r << " column " << c;
        } else {
          EXPECT_LE(err, 0.5f * std::fabs(d) * (1.0f + 1e-4f)) << "row " << r << " column " << c;
        }
      }
    }
  }
  EXPECT_GE(clamped, 1);
  EXPECT_EQ(scales[1 * kBlocks + 1], 0.0f);
  EXPECT_EQ(Int4At(q.data() + kCols / 2, kBlock), 0);
  EXPECT_EQ(q[kCols / 2 + kBlock / 2], 0x88);  // two zero codes: nibbles 8 and 8
}

TEST(QuantizeInt4RowsTest, OddColumnsAndNonFiniteValuesAreRefused) {
  std::vector<float> w(2 * 64, 0.25f);
  std::vector<uint8_t> q(64);
  std::vector<float> scales(4);
  Status odd = QuantizeInt4Rows(w.data(), 1, 63, 32, q.data(), scales.data());
  EXPECT_EQ(odd.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(odd.message().find("63 columns, expected an even count"), std::string::npos)
      << odd.message();
  w[64 + 40] = std::numeric_limits<float>::quiet_NaN();
  Status nan = QuantizeInt4Rows(w.data(), 2, 64, 32, q.data(), scales.data());
  EXPECT_NE(nan.message().find("at row 1, column 40 is not finite"), std::string::npos)
      << nan.message();
}

TEST(QuantizeWeightsTest, PackedWeightsLieBesideThePlan) {
  EXPECT_EQ(PackedWeightsPath("out/a3b.plan", WeightFormat::kInt8), "out/a3b.int8.safetensors");
  EXPECT_EQ(PackedWeightsPath("demo.plan", WeightFormat::kInt4), "demo.int4.safetensors");
  EXPECT_EQ(ParseWeightFormat("int8"), WeightFormat::kInt8);
  EXPECT_EQ(ParseWeightFormat("checkpoint"), WeightFormat::kCheckpoint);
  EXPECT_EQ(ParseWeightFormat("int4x"), std::nullopt);
}

// ---- QuantizeWeights on IR text ------------------------------------------------------

// An embedding tied to the output projection (kept: the embedding reads it), a norm (not a
// matmul weight), a bf16 gate/up and an f16 down projection of 37 columns.
constexpr const char* kModel = R"(graph @q(%meta: !forward_meta, %tokens: tensor<5 x i32>) {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %up_in = weight() {name = "up_in"} : tensor<37 x 6 x f32>
  %wg = weight() {name = "mlp.gate_proj.weight"} : tensor<9 x 37 x bf16>
  %wu = weight() {name = "mlp.up_proj.weight"} : tensor<9 x 37 x bf16>
  %wd = weight() {name = "mlp.down_proj.weight"} : tensor<37 x 9 x f16>
  %x = embedding(%tokens, %embed) : tensor<5 x 6 x f32>
  %h = rms_norm(%x, %norm) {eps = 1e-05} : tensor<5 x 6 x f32>
  %u = linear(%h, %up_in) : tensor<5 x 37 x f32>
  %m = mlp(%meta, %u, %wg, %wu, %wd) : tensor<5 x 37 x f32>
  %logits = linear(%h, %embed) : tensor<5 x 11 x f32>
  return %logits, %m
}
)";

constexpr const char* kQuantized = R"(graph @q(%meta: !forward_meta, %tokens: tensor<5 x i32>) {
  %embed = weight() {name = "embed"} : tensor<11 x 6 x f32>
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %up_in = weight() {block_cols = 32, block_rows = 1, name = "int8.up_in", quant = "int8_block", scale = "int8.up_in.scale"} : tensor<37 x 6 x i8>
  %wg = weight() {block_cols = 32, block_rows = 1, name = "int8.mlp.gate_proj.weight", quant = "int8_block", scale = "int8.mlp.gate_proj.weight.scale"} : tensor<9 x 37 x i8>
  %wu = weight() {block_cols = 32, block_rows = 1, name = "int8.mlp.up_proj.weight", quant = "int8_block", scale = "int8.mlp.up_proj.weight.scale"} : tensor<9 x 37 x i8>
  %wd = weight() {block_cols = 32, block_rows = 1, name = "int8.mlp.down_proj.weight", quant = "int8_block", scale = "int8.mlp.down_proj.weight.scale"} : tensor<37 x 9 x i8>
  %x = embedding(%tokens, %embed) : tensor<5 x 6 x f32>
  %h = rms_norm(%x, %norm) {eps = 1e-05} : tensor<5 x 6 x f32>
  %u = linear(%h, %up_in) : tensor<5 x 37 x f32>
  %m = mlp(%meta, %u, %wg, %wu, %wd) : tensor<5 x 37 x f32>
  %logits = linear(%h, %embed) : tensor<5 x 11 x f32>
  return %logits, %m
}
)";

struct SourceTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<float> values;  // what the checkpoint holds, exactly (after rounding to dtype)
};

class QuantizeGraphTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    const std::vector<SourceTensor> spec = {
        {"embed", DType::kF32, {11, 6}, {}},
        {"norm", DType::kF32, {6}, {}},
        {"up_in", DType::kF32, {37, 6}, {}},
        {"mlp.gate_proj.weight", DType::kBF16, {9, 37}, {}},
        {"mlp.up_proj.weight", DType::kBF16, {9, 37}, {}},
        {"mlp.down_proj.weight", DType::kF16, {37, 9}, {}},
        {"w64", DType::kBF16, {5, 64}, {}},
    };
    std::vector<TensorToWrite> tensors;
    uint32_t seed = 1;
    for (SourceTensor t : spec) {
      int64_t n = 1;
      for (int64_t d : t.shape)
        n *= d;
      t.values = testing::RandomFloats(n, seed++, 0.3f);
      std::string bytes(static_cast<size_t>(n) * DTypeBytes(t.dtype), '\0');
      for (int64_t i = 0; i < n; ++i) {
        float& v = t.values[static_cast<size_t>(i)];
        if (t.dtype == DType::kF32) {
          std::memcpy(bytes.data() + 4 * i, &v, 4);
          continue;
        }
        const uint16_t h = t.dtype == DType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
        v = t.dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
      tensors.push_back(TensorToWrite{t.name, t.dtype, t.shape, std::move(bytes)});
      source_.push_back(std::move(t));
    }
    model_dir_ = TestDir("model");
    ASSERT_TRUE(WriteSafetensors(model_dir_ + "/model.safetensors", tensors).ok());
    StatusOr<Checkpoint> checkpoint = Checkpoint::Open(model_dir_);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
    checkpoint_ = std::move(checkpoint).value();
  }

  Graph Parse(const std::string& text) {
    StatusOr<Graph> graph = ParseGraph(text, "test.mgir");
    EXPECT_TRUE(graph.ok()) << graph.status().ToString();
    return graph.ok() ? std::move(graph).value() : Graph();
  }

  std::vector<SourceTensor> source_;
  std::string model_dir_;
  Checkpoint checkpoint_;
};

TEST_F(QuantizeGraphTest, MatmulWeightsBecomeInt8BlocksAndTheRestIsKept) {
  Graph graph = Parse(kModel);
  const std::string path = TestDir("plan") + "/m.int8.safetensors";
  std::vector<size_t> progress;
  StatusOr<QuantizeReport> report =
      QuantizeWeights(graph, checkpoint_, path, QuantizeOptions{}, [&](size_t done, size_t total) {
        EXPECT_EQ(total, 4u);
        progress.push_back(done);
      });
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(PrintGraph(graph), kQuantized);
  EXPECT_TRUE(Verify(graph).ok()) << Verify(graph).ToString();
  EXPECT_EQ(progress, (std::vector<size_t>{1, 2, 3, 4}));
  EXPECT_EQ(report->weights, 4);
  EXPECT_EQ(report->kept, (std::vector<std::string>{"embed (also read by embedding)"}));
  EXPECT_EQ(report->source_bytes, 37u * 6 * 4 + 2 * 9 * 37 * 2 + 37 * 9 * 2);
  // Codes, plus one f32 scale per row and block of 32 columns.
  EXPECT_EQ(report->packed_bytes,
            37u * 6 + 2 * 9 * 37 + 37 * 9 + 4 * (37 * 1 + 2 * 9 * 2 + 37 * 1));

  // The packed file: a plain safetensors file, each tensor on a page of its own, whose codes
  // times scales give back the checkpoint's values within half a step.
  StatusOr<SafetensorsFile> packed = SafetensorsFile::Open(path);
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  EXPECT_EQ(packed->metadata().at("format"), "moegraph int8_block weights");
  int data_tensors = 0;
  for (const SafetensorsTensor& t : packed->tensors()) {
    if (t.name.rfind(kSafetensorsPadPrefix, 0) == 0) continue;
    ++data_tensors;
    EXPECT_EQ(t.file_offset % kPackedWeightsAlignment, 0u) << t.name;
  }
  EXPECT_EQ(data_tensors, 8);
  for (const SourceTensor& source : source_) {
    if (source.name == "w64") continue;  // not in kModel
    if (source.name == "embed" || source.name == "norm") {
      EXPECT_EQ(packed->Find("int8." + source.name), nullptr) << source.name;
      continue;
    }
    const SafetensorsTensor* codes = packed->Find("int8." + source.name);
    const SafetensorsTensor* scales = packed->Find("int8." + source.name + ".scale");
    ASSERT_NE(codes, nullptr) << source.name;
    ASSERT_NE(scales, nullptr) << source.name;
    const int64_t n = source.shape[0], k = source.shape[1], blocks = (k + 31) / 32;
    EXPECT_EQ(codes->dtype, DType::kI8);
    EXPECT_EQ(codes->shape, source.shape);
    EXPECT_EQ(scales->dtype, DType::kF32);
    EXPECT_EQ(scales->shape, (std::vector<int64_t>{n, blocks}));
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        const auto code = static_cast<int8_t>(codes->data[r * k + c]);
        float s;
        std::memcpy(&s, scales->data + 4 * (r * blocks + c / 32), 4);
        const float want = source.values[static_cast<size_t>(r * k + c)];
        EXPECT_LE(std::fabs(static_cast<float>(code) * s - want), 0.5f * s * (1.0f + 1e-4f))
            << source.name << " row " << r << " column " << c;
      }
    }
  }
}

// A graph whose matmul weights are int8 already is a fixed point: nothing changes, and the
// weights are listed as kept with the reason.
TEST_F(QuantizeGraphTest, NoChangeOnAQuantizedGraph) {
  Graph graph = Parse(kQuantized);
  StatusOr<QuantizeReport> report = QuantizeWeights(
      graph, checkpoint_, TestDir("plan") + "/again.int8.safetensors", QuantizeOptions{});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(PrintGraph(graph), kQuantized);
  EXPECT_EQ(report->weights, 0);
  EXPECT_EQ(report->packed_bytes, 0u);
  EXPECT_EQ(report->kept.size(), 5u);
  EXPECT_NE(std::find(report->kept.begin(), report->kept.end(),
                      "int8.mlp.up_proj.weight (already int8_block)"),
            report->kept.end());
}

// int4 takes K % 32 == 0: kModel's matmul weights (K 6, 37, 9) all stay as they are, listed
// with the reason; a K of 64 is packed two codes a byte, in blocks of 64 here.
TEST_F(QuantizeGraphTest, Int4PacksRowsOfWholeGroupsOf32AndKeepsTheRest) {
  Graph graph = Parse(kModel);
  StatusOr<QuantizeReport> report =
      QuantizeWeights(graph, checkpoint_, TestDir("plan") + "/m.int4.safetensors",
                      QuantizeOptions{WeightFormat::kInt4, 32});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(PrintGraph(graph), kModel);
  EXPECT_EQ(report->weights, 0);
  EXPECT_NE(std::find(report->kept.begin(), report->kept.end(),
                      "mlp.gate_proj.weight (K 37 is not a multiple of 32)"),
            report->kept.end());

  const std::string text = R"(graph @w(%meta: !forward_meta, %x: tensor<3 x 64 x f32>) {
  %w = weight() {name = "w64"} : tensor<5 x 64 x bf16>
  %y = linear(%x, %w) : tensor<3 x 5 x f32>
  return %y
}
)";
  const std::string expected = R"(graph @w(%meta: !forward_meta, %x: tensor<3 x 64 x f32>) {
  %w = weight() {block_cols = 64, block_rows = 1, name = "int4.w64", quant = "int4_block", scale = "int4.w64.scale"} : tensor<5 x 64 x i4>
  %y = linear(%x, %w) : tensor<3 x 5 x f32>
  return %y
}
)";
  Graph w64 = Parse(text);
  const std::string path = TestDir("plan") + "/w.int4.safetensors";
  report = QuantizeWeights(w64, checkpoint_, path, QuantizeOptions{WeightFormat::kInt4, 64});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(PrintGraph(w64), expected);
  EXPECT_TRUE(Verify(w64).ok()) << Verify(w64).ToString();
  EXPECT_EQ(report->weights, 1);
  EXPECT_EQ(report->packed_bytes, 5u * 64 / 2 + 5 * 4);
  StatusOr<SafetensorsFile> packed = SafetensorsFile::Open(path);
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  EXPECT_EQ(packed->metadata().at("format"), "moegraph int4_block weights");
  const SafetensorsTensor* codes = packed->Find("int4.w64");
  ASSERT_NE(codes, nullptr);
  EXPECT_EQ(codes->dtype, DType::kU8);
  EXPECT_EQ(codes->shape, (std::vector<int64_t>{5, 32}));
  const SafetensorsTensor* scales = packed->Find("int4.w64.scale");
  ASSERT_NE(scales, nullptr);
  EXPECT_EQ(scales->shape, (std::vector<int64_t>{5, 1}));
  const std::vector<float>& want = source_.back().values;
  for (int64_t r = 0; r < 5; ++r) {
    float d;
    std::memcpy(&d, scales->data + 4 * r, 4);
    for (int64_t c = 0; c < 64; ++c) {
      const int code = Int4At(reinterpret_cast<const uint8_t*>(codes->data) + r * 32, c);
      EXPECT_LE(std::fabs(static_cast<float>(code) * d - want[static_cast<size_t>(r * 64 + c)]),
                std::fabs(d) * (1.0f + 1e-4f))
          << "row " << r << " column " << c;
    }
  }
  // Blocks int4 cannot take.
  Status bad =
      QuantizeWeights(w64, checkpoint_, path, QuantizeOptions{WeightFormat::kInt4, 48}).status();
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("int4 with a multiple of 32"), std::string::npos) << bad.message();
}

// A graph without matmul weights is unchanged too.
TEST_F(QuantizeGraphTest, NoChangeWithoutMatmulWeights) {
  const std::string text = R"(graph @n(%meta: !forward_meta, %x: tensor<5 x 6 x f32>) {
  %norm = weight() {name = "norm"} : tensor<6 x f32>
  %h = rms_norm(%x, %norm) {eps = 1e-05} : tensor<5 x 6 x f32>
  return %h
}
)";
  Graph graph = Parse(text);
  StatusOr<QuantizeReport> report = QuantizeWeights(
      graph, checkpoint_, TestDir("plan") + "/n.int8.safetensors", QuantizeOptions{});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(PrintGraph(graph), text);
  EXPECT_EQ(report->weights, 0);
  EXPECT_TRUE(report->kept.empty());
}

// A checkpoint holding a NaN is refused with the file, weight, row and column, and no packed
// file is left behind.
TEST_F(QuantizeGraphTest, ANonFiniteWeightIsNamedAndNothingIsWritten) {
  std::vector<TensorToWrite> tensors;
  for (const SourceTensor& t : source_) {
    std::vector<float> values = t.values;
    if (t.name == "up_in") values[4 * 6 + 5] = std::numeric_limits<float>::infinity();
    std::string bytes(values.size() * DTypeBytes(t.dtype), '\0');
    for (size_t i = 0; i < values.size(); ++i) {
      if (t.dtype == DType::kF32) {
        std::memcpy(bytes.data() + 4 * i, &values[i], 4);
      } else {
        const uint16_t h = t.dtype == DType::kBF16 ? F32ToBf16(values[i]) : F32ToF16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    tensors.push_back(TensorToWrite{t.name, t.dtype, t.shape, std::move(bytes)});
  }
  const std::string dir = TestDir("broken");
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  StatusOr<Checkpoint> broken = Checkpoint::Open(dir);
  ASSERT_TRUE(broken.ok());
  Graph graph = Parse(kModel);
  const std::string path = TestDir("plan") + "/m.int8.safetensors";
  StatusOr<QuantizeReport> report = QuantizeWeights(graph, *broken, path, QuantizeOptions{});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find("model.safetensors: weight 'up_in': value inf at row "
                                           "4, column 5 is not finite"),
            std::string::npos)
      << report.status().message();
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---- int8 plans on the goldens ---------------------------------------------------------

CompileModelOptions GoldenOptions() {
  CompileModelOptions options;
  options.keys.chunk_size = 8;
  options.keys.max_chunks = 16;
  options.keys.prefill_buckets = {8, 16, 32};
  options.keys.decode_buckets = {1, 2};
  options.keys.max_prefill_seqs = 2;
  options.hash_checkpoint = false;
  return options;
}

// The accuracy one format keeps on every golden family (see the bounds at each caller).
struct Accuracy {
  WeightFormat format;
  int32_t block_cols;
  float median;       // bound on the median row's error / range
  float dense_worst;  // bound on the worst row's, for models without a router
  int same;           // of 66 rows at least this many pick the same token
};

class QuantizedPlanTest : public testing::TempDirTest {
 protected:
  EngineOptions EngineAt(const std::string& plan_dir) {
    EngineOptions options;
    options.num_threads = 2;
    options.kv_block_size = 8;
    options.kv_cache_bytes = 8ull << 20;
    options.plan_dir = plan_dir;
    return options;
  }
  // `golden`'s model compiled with `format` weights in blocks of `block_cols`, its packed
  // file in a new test directory (*dir).
  StatusOr<Plan> CompileQuantized(const HfModel& model, const std::string& golden,
                                  WeightFormat format, int32_t block_cols, std::string* dir,
                                  QuantizeReport* report) {
    const char* name = WeightFormatName(format);
    *dir = TestDir(golden + "-" + name + "-" + std::to_string(block_cols));
    CompileModelOptions options = GoldenOptions();
    options.weights = format;
    options.quant_block_cols = block_cols;
    options.packed_weights_path = *dir + "/" + golden + "." + name + ".safetensors";
    options.quantize_report = report;
    return CompileModel(model, options);
  }
  // Every golden family compiled with `bound.format` against the same model with its own
  // weights, within `bound`.
  void ExpectAccuracy(const Accuracy& bound) {
    for (const std::string& golden : testing::GoldenCases()) {
      SCOPED_TRACE(golden);
      StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(golden));
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      StatusOr<Plan> base = CompileModel(*model, GoldenOptions());
      ASSERT_TRUE(base.ok()) << base.status().ToString();
      const char* format = WeightFormatName(bound.format);
      std::string dir;
      QuantizeReport report;
      StatusOr<Plan> quantized =
          CompileQuantized(*model, golden, bound.format, bound.block_cols, &dir, &report);
      ASSERT_TRUE(quantized.ok()) << quantized.status().ToString();
      if (report.weights == 0) {
        // int4 takes K % 32 == 0: some goldens' odd sizes leave it nothing.
        EXPECT_EQ(bound.format, WeightFormat::kInt4);
        EXPECT_TRUE(quantized->packed_weight_files.empty());
        std::printf("%-24s %s/%d: no weight to quantize\n", golden.c_str(), format,
                    bound.block_cols);
        continue;
      }
      ASSERT_EQ(quantized->packed_weight_files.size(), 1u);
      EXPECT_NE(quantized->packed_weight_files[0].full_hash, 0u);

      StatusOr<std::unique_ptr<moegraph::Engine>> a = moegraph::Engine::Load(*base, EngineAt("."));
      StatusOr<std::unique_ptr<moegraph::Engine>> b =
          moegraph::Engine::Load(*quantized, EngineAt(dir));
      ASSERT_TRUE(a.ok()) << a.status().ToString();
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      const int vocab = base->model.vocab_size;
      std::vector<float> errors;  // per logit row: max abs error / the row's range
      int same = 0;
      testing::StepBothGreedy(
          **a, **b, {7, 13}, 32, 1, [&](int, size_t, const float* got, const float* want) {
            const auto [lo, hi] = std::minmax_element(want, want + vocab);
            errors.push_back(testing::MaxAbsDiff(got, want, vocab) / (*hi - *lo));
            same += testing::Argmax(got, vocab) == testing::Argmax(want, vocab);
          });
      ASSERT_EQ(errors.size(), 66u);
      std::sort(errors.begin(), errors.end());
      const float median = errors[errors.size() / 2], p90 = errors[errors.size() * 9 / 10];
      std::printf(
          "%-24s %s/%d weights %3lld: logit error / range median %.4f, p90 %.4f, max %.4f; "
          "same greedy token %d/%zu\n",
          golden.c_str(), format, bound.block_cols, static_cast<long long>(report.weights), median,
          p90, errors.back(), same, errors.size());
      EXPECT_LE(median, bound.median);
      EXPECT_GE(same, bound.same);
      // Without a router every row stays close; with one, a token whose top-k is nearly tied
      // may take another expert in one layer, and that row moves by more.
      const bool routed = std::any_of(model->graph.ops().begin(), model->graph.ops().end(),
                                      [](const Op& op) { return op.def && op.def->name == "moe"; });
      if (!routed) {
        EXPECT_LE(errors.back(), bound.dense_worst);
      }
    }
  }
};

// Every golden family compiled with --weights int8 against the same model with its own
// weights: a 7- and a 13-token prompt, then 32 greedy steps, both engines fed the checkpoint
// plan's tokens (66 logit rows). The matmuls also round their inputs to int8 per 32
// (RoundsInputToInt8). Measured (this test's output): the median row's max abs error is
// 0.3-1.4% of the row's logit range, dense models' worst row 2.0%, and 59-66 of the 66 rows
// pick the same token (the fewest on dsv3_bf16, whose nearly tied routes flip). Bounds:
// median <= 2%, dense worst <= 3%, >= 57 of 66.
TEST_F(QuantizedPlanTest, LogitsStayCloseToTheCheckpointPlanOnEveryFamily) {
  ExpectAccuracy({WeightFormat::kInt8, 32, 0.02f, 0.03f, 57});
}

// int4 keeps 16 levels per block where int8 keeps 255: on these random models (uniform weights,
// the hardest case for a block quantizer) its errors are ~16x int8's, as the step size says.
// Measured (this test's output, inputs rounded to int8 as for int8), blocks of 32 / 64: median
// row error 1.9-23% / 2.0-23% of the row's logit range, dense worst 18% / 21%, 41-62 / 35-65
// of 66 rows the same token (the
// goldens whose every K is odd-sized quantize nothing and are skipped). Bounds: median <= 30%,
// dense worst <= 30%, >= 30 of 66; a wrong nibble order, sign or scale gives errors above 100%
// and next to no agreement.
TEST_F(QuantizedPlanTest, Int4LogitsStayCloseToTheCheckpointPlanOnEveryFamily) {
  for (const int32_t block_cols : {32, 64}) {
    ExpectAccuracy({WeightFormat::kInt4, block_cols, 0.3f, 0.3f, 30});
  }
}

// The instruction set does not change an int8 / int4 plan's results: its integer products are
// the same exact sums and the same f32 operations on AVX2 (vpmaddubsw) and AVX-512 (VNNI's
// vpdpbusd where the CPU has it), so one engine on each gives the same logits, bit for bit,
// through a prefill of two prompts and 8 greedy decode steps (dense, MoE with shared experts
// and GPT-OSS's biased experts). The ISA is switched between steps, while no kernel runs.
TEST_F(QuantizedPlanTest, LogitsAreTheSameOnEveryInstructionSet) {
  if (static_cast<int>(DetectedCpuIsa()) < static_cast<int>(CpuIsa::kAvx512)) {
    GTEST_SKIP() << "this CPU runs one ISA only";
  }
  const CpuIsa saved = SelectedCpuIsa();
  for (const std::string golden : {"qwen3_dense_yarn", "qwen2_moe_bf16", "gpt_oss_bf16"}) {
    for (const WeightFormat format : {WeightFormat::kInt8, WeightFormat::kInt4}) {
      SCOPED_TRACE(golden + " " + WeightFormatName(format));
      StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir(golden));
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      std::string dir;
      QuantizeReport report;
      StatusOr<Plan> plan = CompileQuantized(*model, golden, format, 32, &dir, &report);
      ASSERT_TRUE(plan.ok()) << plan.status().ToString();
      ASSERT_GT(report.weights, 0);
      StatusOr<std::unique_ptr<moegraph::Engine>> avx2 =
          moegraph::Engine::Load(*plan, EngineAt(dir));
      StatusOr<std::unique_ptr<moegraph::Engine>> avx512 =
          moegraph::Engine::Load(*plan, EngineAt(dir));
      ASSERT_TRUE(avx2.ok()) << avx2.status().ToString();
      ASSERT_TRUE(avx512.ok()) << avx512.status().ToString();
      const int vocab = plan->model.vocab_size;
      std::vector<SequenceStep> batch = testing::PromptBatch({7, 13}, vocab, 1);
      for (int step = 0; step <= 8; ++step) {
        SetCpuIsa(CpuIsa::kAvx2);
        StatusOr<StepLogits> want = (*avx2)->Step(batch);
        SetCpuIsa(CpuIsa::kAvx512);
        StatusOr<StepLogits> got = (*avx512)->Step(batch);
        ASSERT_TRUE(want.ok()) << want.status().ToString();
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        for (size_t seq = 0; seq < batch.size(); ++seq) {
          const int32_t row = static_cast<int32_t>(seq);
          ASSERT_EQ(std::memcmp(got->row(row), want->row(row), sizeof(float) * vocab), 0)
              << "step " << step << " sequence " << seq << ": AVX-512 logits differ from AVX2's";
        }
        testing::AdvanceGreedy(
            batch, [&](int32_t row) { return want->row(row); }, vocab);
      }
    }
  }
  SetCpuIsa(saved);
}

// The packed file is checked like the checkpoint: a missing file is NotFound naming it, an
// edited one DataLoss.
TEST_F(QuantizedPlanTest, AMissingOrEditedPackedFileIsRefused) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("odd_norm_topk"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::string dir = TestDir("plan");
  CompileModelOptions int8 = GoldenOptions();
  int8.weights = WeightFormat::kInt8;
  int8.packed_weights_path = dir + "/m.int8.safetensors";
  StatusOr<Plan> plan = CompileModel(*model, int8);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_TRUE(moegraph::Engine::Load(*plan, EngineAt(dir)).ok());

  StatusOr<std::unique_ptr<moegraph::Engine>> elsewhere =
      moegraph::Engine::Load(*plan, EngineAt(TestDir("elsewhere")));
  ASSERT_FALSE(elsewhere.ok());
  EXPECT_EQ(elsewhere.status().code(), StatusCode::kNotFound);
  EXPECT_NE(elsewhere.status().message().find("m.int8.safetensors"), std::string::npos)
      << elsewhere.status().message();
  EXPECT_NE(elsewhere.status().message().find("packed weights"), std::string::npos)
      << elsewhere.status().message();

  // One code byte of the last tensor changed, size and name the same.
  {
    std::fstream f(int8.packed_weights_path, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekg(-3, std::ios::end);
    const char byte = static_cast<char>(f.get());
    f.seekp(-3, std::ios::end);
    f.put(static_cast<char>(byte ^ 0x5a));
  }
  StatusOr<std::unique_ptr<moegraph::Engine>> edited = moegraph::Engine::Load(*plan, EngineAt(dir));
  ASSERT_FALSE(edited.ok());
  EXPECT_EQ(edited.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(edited.status().message().find("m.int8.safetensors"), std::string::npos)
      << edited.status().message();
}

// A plan name whose packed file would land in the checkpoint directory is refused before any
// weight is quantized, and nothing of the checkpoint is touched.
TEST_F(QuantizedPlanTest, APackedFileNamedLikeACheckpointFileIsRefused) {
  StatusOr<HfModel> model = LoadHfModel(testing::GoldenDir("odd_norm_topk"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  CompileModelOptions int8 = GoldenOptions();
  int8.weights = WeightFormat::kInt8;
  int8.packed_weights_path = TestDir("plan") + "/model.safetensors";
  StatusOr<Plan> plan = CompileModel(*model, int8);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("'model.safetensors' is also a file of the checkpoint "
                                         "directory"),
            std::string::npos)
      << plan.status().message();
  EXPECT_FALSE(std::filesystem::exists(int8.packed_weights_path));
}

}  // namespace
}  // namespace moegraph
