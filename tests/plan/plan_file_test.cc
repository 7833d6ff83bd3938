// Tests for plan files: exact round trips, determinism, and that corrupt or
// inconsistent files are clear errors, never crashes.
#include "plan/plan_file.h"

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ir/op_registry.h"
#include "plan/plan_generated.h"
#include "support/mapped_file.h"

namespace moegraph {
namespace {

constexpr char kSource[] = "tiny.mgplan";
constexpr int32_t kVocab = 19;
constexpr int64_t kHidden = 8;

// A fresh directory per test under the gtest temp dir.
std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir =
      ::testing::TempDir() + "plan_file_test_" + std::to_string(::getpid()) + "_" + info->name();
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

ArgRef Arena(int64_t offset, DType dtype, std::vector<int64_t> shape) {
  return ArgRef{ArgKind::kArena, offset, 0, dtype, std::move(shape)};
}
ArgRef Weight(int32_t index, DType dtype, std::vector<int64_t> shape) {
  return ArgRef{ArgKind::kWeight, 0, index, dtype, std::move(shape)};
}
ArgRef Input(int32_t index, DType dtype, std::vector<int64_t> shape) {
  return ArgRef{ArgKind::kInput, 0, index, dtype, std::move(shape)};
}

// One key's program: embedding -> one MoE FFN -> lm head on the last tokens.
// Arena: hidden [T, 8] f32 at 0, moe_out [T, 8] f32 at 32T, logits [B, 19] f32
// at 64T, rounded up to 64 bytes.
KeyProgram TinyProgram(MoePhase phase, int32_t tokens, int32_t seqs) {
  KeyProgram p;
  p.key = SpecKey{phase, 1, 1, tokens, seqs};
  const int64_t hidden_bytes = tokens * kHidden * 4;
  const int64_t logits_offset = 2 * hidden_bytes;
  p.arena_bytes = (logits_offset + seqs * kVocab * 4 + 63) / 64 * 64;
  p.steps.push_back(
      KernelStep{"embedding",
                 {Input(0, DType::kI32, {tokens}), Weight(0, DType::kF32, {kVocab, kHidden})},
                 {Arena(0, DType::kF32, {tokens, kHidden})},
                 {},
                 {},
                 /*op_index=*/3});
  p.steps.push_back(
      KernelStep{"moe_expert_ffn",
                 {Arena(0, DType::kF32, {tokens, kHidden}),
                  Weight(1, DType::kBF16, {3, kHidden, 6}), Input(1, DType::kI32, {tokens, 2})},
                 {Arena(hidden_bytes, DType::kF32, {tokens, kHidden})},
                 {3, 2, 256, -1},
                 {1e-6f, 0.5f, -3.25f},
                 /*op_index=*/7});
  p.steps.push_back(
      KernelStep{"lm_head_last",
                 {Arena(hidden_bytes, DType::kF32, {tokens, kHidden}),
                  Weight(0, DType::kF32, {kVocab, kHidden}), Input(2, DType::kI32, {seqs})},
                 {Arena(logits_offset, DType::kF32, {seqs, kVocab})},
                 {-1},
                 {},
                 /*op_index=*/-1});
  p.logits = Arena(logits_offset, DType::kF32, {seqs, kVocab});
  p.ir = "graph @" + p.key.ToString() + " {\n  %0 = embedding(...)\n}\n";
  return p;
}

// Small but complete: two weights (one stacked over 3 experts), two keys,
// every ArgKind, non-default values everywhere.
Plan TinyPlan() {
  Plan plan;
  plan.op_set_hash = OpSetHash();
  plan.model = PlanModelInfo{
      "qwen3_moe", "{\"vocab_size\": 19, \"note\": \"caf\xc3\xa9\"}", kVocab, 1, 2, 4, 128};
  plan.model_dir = "/models/tiny";
  plan.weights.push_back(PlanWeight{"model.embed_tokens.weight",
                                    /*experts=*/0,
                                    /*row_offset=*/0,
                                    DType::kF32,
                                    {kVocab, kHidden},
                                    {{"model.safetensors", 128, kVocab * kHidden * 4}},
                                    /*quant=*/{},
                                    /*scale_name=*/"",
                                    /*scale_slices=*/{}});
  plan.weights.push_back(PlanWeight{"model.layers.0.mlp.experts.{e}.down_proj.weight",
                                    /*experts=*/3,
                                    /*row_offset=*/2,
                                    DType::kBF16,
                                    {3, kHidden, 6},
                                    {{"model-00001-of-00002.safetensors", 4096, 96},
                                     {"model-00001-of-00002.safetensors", 8192, 96},
                                     {"model-00002-of-00002.safetensors", 64, 96}},
                                    /*quant=*/{},
                                    /*scale_name=*/"",
                                    /*scale_slices=*/{}});
  plan.key_options.chunk_size = 128;
  plan.key_options.max_chunks = 4;
  plan.key_options.decode_buckets = {4};
  plan.key_options.prefill_buckets = {16};
  plan.key_options.max_prefill_seqs = 2;
  plan.programs.push_back(TinyProgram(MoePhase::kPrefill, 16, 2));
  plan.programs.push_back(TinyProgram(MoePhase::kDecode, 4, 4));
  plan.source_ir = std::string("graph @main {\n  %tokens = input\n}\n") + '\0' + "after a NUL";
  plan.compile_options = "compile-model --model /models/tiny --out tiny.mgplan";
  plan.keys_share_one_arena = false;
  plan.tokenizer_files = {{"tokenizer.json", 0x0123456789abcdefull}, {"generation_config.json", 7}};
  plan.kv_layers = {
      {KvLayerKind::kKeyValue, /*num_kv_heads=*/2, /*head_dim=*/4, /*window=*/0, DType::kBF16}};
  return plan;
}

bool StartsWith(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

TEST(PlanFileTest, TheHandBuiltPlanIsValid) {
  const Status status = ValidatePlan(TinyPlan(), kSource);
  EXPECT_TRUE(status.ok()) << status.ToString();
}

// A plan's steps are read through the registry (kernel names, parameter
// order): one compiled by a build with another op set is refused, not misread.
TEST(PlanFileTest, APlanFromAnotherOpSetIsRefused) {
  Plan plan = TinyPlan();
  plan.op_set_hash ^= 1;
  const Status status = ValidatePlan(plan, kSource);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();
  EXPECT_NE(status.ToString().find("compiled by a build with another op set"), std::string::npos)
      << status.ToString();
  EXPECT_NE(status.ToString().find("recompile it"), std::string::npos) << status.ToString();
}

TEST(PlanFileTest, RoundTripsThroughBytes) {
  const Plan plan = TinyPlan();
  const std::string bytes = SerializePlan(plan);
  EXPECT_EQ(bytes.substr(4, 4), "MGPL");
  EXPECT_EQ(bytes.size() % 8, 0u);
  StatusOr<Plan> loaded = DeserializePlan(bytes, kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, plan);
  EXPECT_EQ(loaded->programs[0].steps[1].floats, (std::vector<float>{1e-6f, 0.5f, -3.25f}));
  EXPECT_EQ(loaded->source_ir, plan.source_ir);  // the embedded NUL survives
  EXPECT_FALSE(loaded->keys_share_one_arena);
}

// A quantized weight keeps its scheme, blocks, scale name and scale slices through the file;
// its scales are checked like its slices.
PlanWeight Fp8Weight() {
  PlanWeight w;
  w.name = "model.layers.0.mlp.experts.{e}.up_proj.weight";
  w.experts = 2;
  w.dtype = DType::kFp8E4M3;
  w.shape = {2, 37, 50};
  w.slices = {{"model-00001-of-00002.safetensors", 1024, 37 * 50},
              {"model-00001-of-00002.safetensors", 4096, 37 * 50}};
  w.quant = WeightQuant{QuantScheme::kFp8Block, 16, 16};
  w.scale_name = "model.layers.0.mlp.experts.{e}.up_proj.weight_scale_inv";
  w.scale_slices = {{"model-00002-of-00002.safetensors", 256, 3 * 4 * 4},
                    {"model-00002-of-00002.safetensors", 512, 3 * 4 * 4}};
  return w;
}

TEST(PlanFileTest, RoundTripsAQuantizedWeight) {
  Plan plan = TinyPlan();
  plan.weights.push_back(Fp8Weight());
  ASSERT_TRUE(ValidatePlan(plan, kSource).ok()) << ValidatePlan(plan, kSource).ToString();
  StatusOr<Plan> loaded = DeserializePlan(SerializePlan(plan), kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, plan);
  EXPECT_EQ(loaded->weights.back().quant, (WeightQuant{QuantScheme::kFp8Block, 16, 16}));
  EXPECT_EQ(loaded->weights.back().scale_slices[1].offset, 512u);
  EXPECT_FALSE(loaded->weights[0].quant.quantized());
}

// An int8_block weight read from compile-model's packed weights file: its slices name a file
// of packed_weight_files, which keeps its fingerprint through the file.
TEST(PlanFileTest, RoundTripsAnInt8WeightFromAPackedFile) {
  Plan plan = TinyPlan();
  PlanWeight w = Fp8Weight();
  w.name = "int8.model.layers.0.mlp.experts.up_proj.weight";
  w.dtype = DType::kI8;
  w.quant = WeightQuant{QuantScheme::kInt8Block, 1, 32};
  w.scale_name = w.name + ".scale";
  w.slices = {{"tiny.int8.safetensors", 4096, 37 * 50}, {"tiny.int8.safetensors", 8192, 37 * 50}};
  w.scale_slices = {{"tiny.int8.safetensors", 12288, 37 * 2 * 4},
                    {"tiny.int8.safetensors", 16384, 37 * 2 * 4}};
  std::set<std::string> checkpoint_files;  // the files TinyPlan's weights read
  for (const PlanWeight& weight : plan.weights) {
    for (const PlanWeightSlice& slice : weight.slices)
      checkpoint_files.insert(slice.file);
  }
  for (const std::string& file : checkpoint_files)
    plan.checkpoint_files.push_back({file, 4096, 3, 0x9abc, 0});
  plan.weights.push_back(w);
  plan.packed_weight_files = {{"tiny.int8.safetensors", 20480, 17, 0x1234, 0x5678}};
  ASSERT_TRUE(ValidatePlan(plan, kSource).ok()) << ValidatePlan(plan, kSource).ToString();
  StatusOr<Plan> loaded = DeserializePlan(SerializePlan(plan), kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, plan);
  EXPECT_EQ(loaded->packed_weight_files, plan.packed_weight_files);
  EXPECT_EQ(loaded->weights.back().dtype, DType::kI8);
  EXPECT_EQ(loaded->weights.back().quant, (WeightQuant{QuantScheme::kInt8Block, 1, 32}));
  // A checkpoint-only plan has no packed files.
  StatusOr<Plan> plain = DeserializePlan(SerializePlan(TinyPlan()), kSource);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->packed_weight_files.empty());
}

// An int4_block weight: i4 codes two a byte, K a multiple of 32, blocks of 1 x a multiple of 32.
TEST(PlanFileTest, Int4WeightsNeedWholeGroupsOf32) {
  Plan plan = TinyPlan();
  PlanWeight w;
  w.name = "int4.w";
  w.dtype = DType::kI4;
  w.shape = {37, 64};
  w.slices = {{"", 0, 37 * 32}};
  w.quant = WeightQuant{QuantScheme::kInt4Block, 1, 64};
  w.scale_name = "int4.w.scale";
  w.scale_slices = {{"p.int4.safetensors", 4096, 37 * 4}};
  w.slices[0].file = "p.int4.safetensors";
  plan.weights.push_back(w);
  ASSERT_TRUE(ValidatePlan(plan, kSource).ok()) << ValidatePlan(plan, kSource).ToString();
  StatusOr<Plan> loaded = DeserializePlan(SerializePlan(plan), kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->weights.back(), w);

  plan.weights.back().quant.block_cols = 48;
  Status s = ValidatePlan(plan, kSource);
  EXPECT_NE(s.message().find("with scale blocks 1 x 48, expected K a multiple of 32 and blocks of "
                             "1 x 32 (mxfp4) or 1 x a multiple of 32 (int4_block)"),
            std::string::npos)
      << s.message();
  plan.weights.back() = w;
  plan.weights.back().shape = {37, 48};
  plan.weights.back().slices[0].bytes = 37 * 24;
  plan.weights.back().scale_slices[0].bytes = 37 * 4;
  s = ValidatePlan(plan, kSource);
  EXPECT_NE(
      s.message().find("is i4 [37, 48] with scale blocks 1 x 64, expected K a multiple of 32"),
      std::string::npos)
      << s.message();
}

TEST(PlanFileTest, QuantizedWeightInconsistenciesAreNamed) {
  const std::string what = "weight 'model.layers.0.mlp.experts.{e}.up_proj.weight'";
  struct Case {
    void (*corrupt)(PlanWeight&);
    std::string expected;
  };
  const Case cases[] = {
      {[](PlanWeight& w) { w.scale_slices.pop_back(); },
       what + " has 1 scale slices, expected 2 (one per slice)"},
      {[](PlanWeight& w) { w.scale_slices[0].bytes = 40; },
       what + " scale slice 0 is 'model-00002-of-00002.safetensors' @256 (40 bytes), expected a "
              "file and 48 bytes"},
      {[](PlanWeight& w) { w.quant = {}; },
       what + " is fp8e4m3 with 2 scale slices but names no quantization scheme"},
      {[](PlanWeight& w) { w.quant.scheme = static_cast<QuantScheme>(7); },
       what + " has quantization scheme 7, expected 1 (fp8_block)"},
      {[](PlanWeight& w) { w.quant.block_cols = 0; },
       what + " has scale blocks 16 x 0, expected positive sizes"},
      {[](PlanWeight& w) { w.scale_name.clear(); }, what + " names no scale tensor"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    Plan plan = TinyPlan();
    plan.weights.push_back(Fp8Weight());
    c.corrupt(plan.weights.back());
    const Status direct = ValidatePlan(plan, kSource);
    EXPECT_EQ(direct.code(), StatusCode::kDataLoss);
    EXPECT_NE(direct.message().find(c.expected), std::string::npos) << direct.message();
  }
}

TEST(PlanFileTest, RoundTripsKvLayersOfMixedGeometry) {
  Plan plan = TinyPlan();
  plan.model.num_layers = 3;
  plan.kv_layers = {{KvLayerKind::kKeyValue, 2, 4, 0, DType::kBF16},
                    {KvLayerKind::kKeyValue, 5, 24, 128, DType::kF16},
                    {KvLayerKind::kKeyValue, 1, 7, 0, DType::kF32}};
  StatusOr<Plan> loaded = DeserializePlan(SerializePlan(plan), kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->kv_layers, plan.kv_layers);
  EXPECT_EQ(*loaded, plan);
}

TEST(PlanFileTest, RoundTripsAnEmptyPlanAndDefaults) {
  Plan plan;  // no weights, no programs, default options, empty strings
  plan.op_set_hash = OpSetHash();
  const std::string bytes = SerializePlan(plan);
  EXPECT_EQ(bytes.size() % 8, 0u);
  StatusOr<Plan> loaded = DeserializePlan(bytes, kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, plan);
  EXPECT_TRUE(loaded->keys_share_one_arena);
}

TEST(PlanFileTest, RoundTripsThroughAFile) {
  const std::string path = TestDir() + "/tiny.mgplan";
  const Plan plan = TinyPlan();
  ASSERT_TRUE(WritePlanFile(plan, path).ok());
  StatusOr<Plan> loaded = ReadPlanFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, plan);
  StatusOr<std::string> on_disk = ReadFileToString(path);
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(*on_disk, SerializePlan(plan));
}

TEST(PlanFileTest, SerializationIsDeterministic) {
  const Plan plan = TinyPlan();
  const std::string bytes = SerializePlan(plan);
  EXPECT_EQ(SerializePlan(TinyPlan()), bytes);
  StatusOr<Plan> loaded = DeserializePlan(bytes, kSource);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(SerializePlan(*loaded), bytes);
  Plan changed = plan;
  changed.programs[1].steps[2].ints[0] = 5;
  EXPECT_NE(SerializePlan(changed), bytes);
}

TEST(PlanFileTest, ReadsAMisalignedBuffer) {
  const std::string bytes = SerializePlan(TinyPlan());
  const std::string shifted = "x" + bytes;
  StatusOr<Plan> loaded = DeserializePlan(std::string_view(shifted).substr(1), kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, TinyPlan());
}

TEST(PlanFileCorruptionTest, EveryTruncationIsAnError) {
  const std::string bytes = SerializePlan(TinyPlan());
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t length = 0; length < bytes.size(); ++length) {
    StatusOr<Plan> loaded = DeserializePlan(std::string_view(bytes).substr(0, length), kSource);
    ASSERT_FALSE(loaded.ok()) << "truncated to " << length << " of " << bytes.size();
    EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss) << length;
    EXPECT_TRUE(StartsWith(loaded.status().message(), std::string(kSource) + ": "))
        << loaded.status().message();
  }
}

TEST(PlanFileCorruptionTest, BitFlipsAreErrorsOrValidPlans) {
  const std::string bytes = SerializePlan(TinyPlan());
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<size_t> position(0, bytes.size() * 8 - 1);
  int rejected = 0;
  int loaded_changed = 0;
  constexpr int kFlips = 2000;
  for (int i = 0; i < kFlips; ++i) {
    const size_t bit = position(rng);
    std::string flipped = bytes;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    StatusOr<Plan> loaded = DeserializePlan(flipped, kSource);
    if (!loaded.ok()) {
      ++rejected;
      EXPECT_TRUE(loaded.status().code() == StatusCode::kDataLoss ||
                  loaded.status().code() == StatusCode::kFailedPrecondition)
          << loaded.status().ToString();
      EXPECT_TRUE(StartsWith(loaded.status().message(), std::string(kSource) + ": "))
          << loaded.status().message();
      continue;
    }
    const Status valid = ValidatePlan(*loaded, kSource);
    EXPECT_TRUE(valid.ok()) << "bit " << bit << ": " << valid.ToString();
    if (!(*loaded == TinyPlan())) ++loaded_changed;
  }
  // The checksum covers every byte: no flip loads.
  EXPECT_EQ(rejected, kFlips);
  std::printf("bit flips: %d rejected, %d loaded a changed valid plan, %d loaded unchanged\n",
              rejected, loaded_changed, kFlips - rejected - loaded_changed);
}

TEST(PlanFileCorruptionTest, RejectsOtherFiles) {
  std::string bytes = SerializePlan(TinyPlan());
  bytes.replace(4, 4, "XXXX");
  StatusOr<Plan> loaded = DeserializePlan(bytes, kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(loaded.status().message(),
            "tiny.mgplan: not a moegraph plan: file identifier is 'XXXX', expected 'MGPL'");

  bytes.replace(4, 4, std::string("\x00\x01GP", 4));
  loaded = DeserializePlan(bytes, kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("file identifier is '\\x00\\x01GP'"), std::string::npos)
      << loaded.status().message();

  loaded = DeserializePlan("", kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().message(),
            "tiny.mgplan: not a moegraph plan: 0 bytes is too short for the 8-byte header with "
            "file identifier 'MGPL'");

  // The right identifier on garbage: no checksum footer.
  std::string garbage(64, '\xff');
  garbage.replace(4, 4, "MGPL");
  loaded = DeserializePlan(garbage, kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("tiny.mgplan: the plan has no checksum footer"),
            std::string::npos)
      << loaded.status().message();
  // Sealed garbage: the verifier's turn.
  loaded = DeserializePlan(AppendPlanChecksum(garbage), kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("tiny.mgplan: the flatbuffer is corrupt or truncated"),
            std::string::npos)
      << loaded.status().message();
}

TEST(PlanFileCorruptionTest, RejectsUnsupportedVersions) {
  for (uint32_t version : {0u, 1u, 3u, 7u}) {
    Plan plan = TinyPlan();
    plan.format_version = version;
    StatusOr<Plan> loaded = DeserializePlan(SerializePlan(plan), kSource);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(loaded.status().message(),
              "tiny.mgplan: plan format version " + std::to_string(version) +
                  " is not supported by this build (supports: 2); recompile the plan");
  }
}

// Version-1 buffers built with the generated API, lacking fields that
// SerializePlan always writes.
std::string Finished(flatbuffers::FlatBufferBuilder& b, flatbuffers::Offset<fb::Plan> root) {
  fb::FinishPlanBuffer(b, root);
  return AppendPlanChecksum(
      std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()));
}

std::string BufferWithoutModel() {
  flatbuffers::FlatBufferBuilder b;
  b.TrackMinAlign(8);
  return Finished(b, fb::CreatePlan(b, /*format_version=*/2));
}

TEST(PlanFileCorruptionTest, RejectsMissingRequiredFields) {
  StatusOr<Plan> loaded = DeserializePlan(BufferWithoutModel(), kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(loaded.status().message(),
            "tiny.mgplan: required field 'model' is missing; every version-2 plan has it (the "
            "file is corrupt)");
}

// A plan written before kv_layers existed (the field absent) reads as what
// those builds cached: f32 K/V of the model's geometry in every layer.
TEST(PlanFileTest, APlanWithoutKvLayersReadsAsF32LayersOfTheModelGeometry) {
  flatbuffers::FlatBufferBuilder b;
  b.TrackMinAlign(8);
  const auto model = fb::CreatePlanModelInfoDirect(b, "qwen3_moe", "{}", kVocab,
                                                   /*num_layers=*/2, /*num_kv_heads=*/3,
                                                   /*head_dim=*/4, /*max_position_embeddings=*/64);
  const KeySetOptions o;
  const auto options = fb::CreateKeySetOptionsDirect(
      b, o.prefill, o.decode, o.chunk_size, o.max_chunks, o.expert_parallel, &o.decode_buckets,
      &o.prefill_buckets, o.max_prefill_seqs);
  const std::vector<flatbuffers::Offset<fb::PlanWeight>> weights;
  const std::vector<flatbuffers::Offset<fb::KeyProgram>> programs;
  const std::vector<flatbuffers::Offset<fb::PlanCheckpointFile>> files;
  const auto root = fb::CreatePlanDirect(b, /*format_version=*/2, model, "/m", &weights, options,
                                         &programs, "", "", true, &files, OpSetHash());
  StatusOr<Plan> loaded = DeserializePlan(Finished(b, root), kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const PlanKvLayer f32{KvLayerKind::kKeyValue, 3, 4, 0, DType::kF32};
  EXPECT_EQ(loaded->kv_layers, (std::vector<PlanKvLayer>{f32, f32}));
}

// Complete except that its one step has no kernel name (nor anything else).
std::string BufferWithNamelessStep() {
  flatbuffers::FlatBufferBuilder b;
  b.TrackMinAlign(8);
  const auto model = fb::CreatePlanModelInfoDirect(b, "qwen3_moe", "{}", /*vocab_size=*/kVocab);
  const std::vector<int64_t> logits_shape = {1, kVocab};
  const auto logits =
      fb::CreateArgRefDirect(b, fb::ArgKind::Arena, 0, 0, fb::DType::F32, &logits_shape);
  const auto key = fb::CreateSpecKey(b, fb::MoePhase::Decode, 1, 1, 1, 1);
  const std::vector<flatbuffers::Offset<fb::KernelStep>> steps = {fb::CreateKernelStep(b)};
  const std::vector<flatbuffers::Offset<fb::KeyProgram>> programs = {
      fb::CreateKeyProgramDirect(b, key, 4 * kVocab, &steps, logits, "")};
  const std::vector<int32_t> buckets = {1};
  const auto options =
      fb::CreateKeySetOptionsDirect(b, true, true, 256, 8, 1, &buckets, &buckets, 16);
  const std::vector<flatbuffers::Offset<fb::PlanWeight>> weights;
  const auto root = fb::CreatePlanDirect(b, /*format_version=*/2, model, "/m", &weights, options,
                                         &programs, "", "", true);
  return Finished(b, root);
}

// Plans written before tokenizer_files existed (the field absent) read as plans without a
// tokenizer.
TEST(PlanFileTest, APlanWithoutTokenizerFilesHasNone) {
  flatbuffers::FlatBufferBuilder b;
  b.TrackMinAlign(8);
  const auto model = fb::CreatePlanModelInfoDirect(b, "qwen3_moe", "{}", /*vocab_size=*/kVocab);
  const std::vector<int32_t> buckets = {1};
  const auto options =
      fb::CreateKeySetOptionsDirect(b, true, true, 256, 8, 1, &buckets, &buckets, 16);
  const std::vector<flatbuffers::Offset<fb::PlanWeight>> weights;
  const std::vector<flatbuffers::Offset<fb::KeyProgram>> programs;
  const std::vector<flatbuffers::Offset<fb::PlanCheckpointFile>> files;
  const auto root =
      fb::CreatePlanDirect(b, /*format_version=*/2, model, "/m", &weights, options, &programs, "",
                           "", true, &files, OpSetHash(), /*tokenizer_files=*/nullptr);
  StatusOr<Plan> loaded = DeserializePlan(Finished(b, root), kSource);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(loaded->tokenizer_files.empty());
}

TEST(PlanFileCorruptionTest, NamesTheMissingFieldByItsPath) {
  StatusOr<Plan> loaded = DeserializePlan(BufferWithNamelessStep(), kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(loaded.status().message().find("required field 'programs[0].steps[0].kernel' is "
                                           "missing"),
            std::string::npos)
      << loaded.status().message();
}

// One inconsistency each; the loader must name it.
struct SemanticCase {
  const char* name;
  std::function<void(Plan&)> corrupt;
  std::string expected;  // a fragment of the message
};

constexpr char kDecode[] = "program 'phase=decode,chunks=1,max_chunks=1,tokens=4,seqs=4'";
constexpr char kPrefill[] = "program 'phase=prefill,chunks=1,max_chunks=1,tokens=16,seqs=2'";
constexpr char kExperts[] = "weight 'model.layers.0.mlp.experts.{e}.down_proj.weight'";

std::vector<SemanticCase> SemanticCases() {
  // Decode arena: hidden at 0 (128 B), moe_out at 128, logits at 256 (304 B) -> 576 B.
  return {
      {"arena offset out of range",
       [](Plan& p) { p.programs[1].steps[0].outputs[0].arena_offset = 512; },
       std::string(kDecode) +
           " step 0 (embedding) output 0 at arena offset 512 (128 bytes) lies outside the arena "
           "of 576 bytes"},
      {"negative arena offset", [](Plan& p) { p.programs[1].steps[1].inputs[0].arena_offset = -8; },
       std::string(kDecode) + " step 1 (moe_expert_ffn) input 0 at arena offset -8"},
      {"arena end overflows",
       [](Plan& p) {
         p.programs[1].steps[1].inputs[0].arena_offset = std::numeric_limits<int64_t>::max() - 4;
       },
       "lies outside the arena of 576 bytes"},
      {"weight index out of range", [](Plan& p) { p.programs[0].steps[0].inputs[1].index = 2; },
       std::string(kPrefill) +
           " step 0 (embedding) input 1 refers to weight index 2, expected 0 <= index < 2"},
      {"negative weight index", [](Plan& p) { p.programs[0].steps[0].inputs[1].index = -1; },
       "refers to weight index -1"},
      {"weight dtype mismatch",
       [](Plan& p) { p.programs[1].steps[2].inputs[1].dtype = DType::kBF16; },
       std::string(kDecode) +
           " step 2 (lm_head_last) input 1 reads weight 'model.embed_tokens.weight' as bf16 [19, "
           "8], but the weight is f32 [19, 8]"},
      {"weight shape mismatch",
       [](Plan& p) {
         p.programs[1].steps[1].inputs[1].shape = {3, 6, 8};
       },
       "reads weight 'model.layers.0.mlp.experts.{e}.down_proj.weight' as bf16 [3, 6, 8], but "
       "the weight is bf16 [3, 8, 6]"},
      {"bad arg dtype enum",
       [](Plan& p) { p.programs[0].steps[1].outputs[0].dtype = static_cast<DType>(10); },
       std::string(kPrefill) +
           " step 1 (moe_expert_ffn) output 0 has dtype value 10, expected 0..9 (f32 .. i4)"},
      {"bad arg kind enum",
       [](Plan& p) { p.programs[0].steps[1].inputs[2].kind = static_cast<ArgKind>(7); },
       "input 2 has arg kind value 7, expected 0 (arena), 1 (weight) or 2 (input)"},
      {"bad phase enum", [](Plan& p) { p.programs[1].key.phase = static_cast<MoePhase>(3); },
       "program #1 has phase value 3, expected 0 (prefill) or 1 (decode)"},
      {"bad weight dtype enum", [](Plan& p) { p.weights[0].dtype = static_cast<DType>(200); },
       "weight 'model.embed_tokens.weight' has dtype value 200"},
      {"slice bytes mismatch", [](Plan& p) { p.weights[1].slices[2].bytes = 95; },
       std::string(kExperts) + ": its slices hold 287 bytes, but bf16 [3, 8, 6] is 288 bytes"},
      {"unequal expert slices",
       [](Plan& p) {
         p.weights[1].slices[0].bytes = 90;
         p.weights[1].slices[1].bytes = 102;
       },
       std::string(kExperts) + " slice 1 holds 102 bytes, expected 90 like slice 0"},
      {"slice count", [](Plan& p) { p.weights[1].slices.pop_back(); },
       std::string(kExperts) + " has 2 slices, expected 3 (one per expert)"},
      {"unstacked weight with two slices",
       [](Plan& p) { p.weights[0].slices.push_back(p.weights[0].slices[0]); },
       "has 2 slices, expected 1 (it is not stacked)"},
      {"stacked shape", [](Plan& p) { p.weights[1].shape[0] = 4; },
       std::string(kExperts) + " is stacked over 3 experts but has shape [4, 8, 6]"},
      {"weight size overflow",
       [](Plan& p) {
         p.weights[0].shape = {int64_t{1} << 40, int64_t{1} << 40};
       },
       "weight 'model.embed_tokens.weight' f32 [1099511627776, 1099511627776] is too large: its "
       "byte size overflows int64"},
      {"negative weight dim", [](Plan& p) { p.weights[0].shape[1] = -8; },
       "weight 'model.embed_tokens.weight' has a negative dim: [19, -8]"},
      {"slice end overflows",
       [](Plan& p) { p.weights[0].slices[0].offset = std::numeric_limits<uint64_t>::max() - 10; },
       "weight 'model.embed_tokens.weight' slice 0: offset 18446744073709551605 + 608 bytes "
       "overflows"},
      {"slice without a file", [](Plan& p) { p.weights[1].slices[1].file.clear(); },
       std::string(kExperts) + " slice 1 names no file"},
      {"empty weight name", [](Plan& p) { p.weights[1].name.clear(); },
       "weight #1 has an empty name"},
      {"duplicate key", [](Plan& p) { p.programs[1] = p.programs[0]; },
       std::string(kPrefill) + " is a duplicate key (programs #0 and #1)"},
      {"empty token bucket", [](Plan& p) { p.programs[1].key.token_bucket = 0; },
       "has an empty bucket; expected tokens > 0 and seqs > 0"},
      {"chunks over max", [](Plan& p) { p.programs[1].key.moe_num_chunk = 2; },
       "program 'phase=decode,chunks=2,max_chunks=1,tokens=4,seqs=4' has a bad chunk count"},
      {"negative arena bytes", [](Plan& p) { p.programs[0].arena_bytes = -1; },
       std::string(kPrefill) + " has arena_bytes -1, expected >= 0"},
      {"too many ints", [](Plan& p) { p.programs[0].steps[1].ints.resize(17); },
       std::string(kPrefill) +
           " step 1 (moe_expert_ffn) has 17 ints and 3 floats; the kernel ABI takes at most 16 "
           "and 8"},
      {"too many floats", [](Plan& p) { p.programs[0].steps[1].floats.resize(9); },
       "has 4 ints and 9 floats; the kernel ABI takes at most 16 and 8"},
      {"empty kernel name", [](Plan& p) { p.programs[1].steps[2].kernel.clear(); },
       std::string(kDecode) + " step 2 () has no kernel name"},
      {"rank over the ABI limit",
       [](Plan& p) {
         p.programs[1].steps[0].inputs[0].shape = {1, 1, 1, 4, 1};
       },
       "step 0 (embedding) input 0 has rank 5, expected at most 4"},
      {"negative input index", [](Plan& p) { p.programs[1].steps[0].inputs[0].index = -2; },
       "step 0 (embedding) input 0 refers to input index -2, expected >= 0"},
      {"output into a weight",
       [](Plan& p) {
         p.programs[1].steps[0].outputs[0] = Weight(0, DType::kF32, {kVocab, kHidden});
       },
       "step 0 (embedding) output 0 is not in the arena; kernels write only to the arena"},
      {"logits shape",
       [](Plan& p) {
         p.programs[1].logits.shape = {4, 18};
       },
       std::string(kDecode) +
           " logits is [4, 18] in the arena, expected an arena tensor [4, 19] ([seq_bucket, "
           "vocab_size])"},
      {"logits not in the arena",
       [](Plan& p) {
         p.programs[1].logits = Input(0, DType::kF32, {4, kVocab});
       },
       "logits is [4, 19] not in the arena"},
      {"logits outside the arena", [](Plan& p) { p.programs[1].logits.arena_offset = 300; },
       std::string(kDecode) +
           " logits at arena offset 300 (304 bytes) lies outside the arena of 576 bytes"},
      {"zero chunk size", [](Plan& p) { p.key_options.chunk_size = 0; },
       "key_options.chunk_size is 0, expected > 0"},
      {"bad bucket",
       [](Plan& p) {
         p.key_options.decode_buckets = {4, -1};
       },
       "key_options.decode_buckets holds -1, expected buckets > 0"},
      {"negative model field", [](Plan& p) { p.model.num_layers = -1; },
       "model.num_layers is -1, expected >= 0"},
      // Issue 10: plans are untrusted.
      {"arena offset misaligned for its dtype",
       [](Plan& p) { p.programs[1].steps[1].inputs[0].arena_offset = 1; },
       std::string(kDecode) +
           " step 1 (moe_expert_ffn) input 0 at arena offset 1 is misaligned for f32: expected "
           "a multiple of 4 bytes"},
      {"infinite float parameter",
       [](Plan& p) { p.programs[0].steps[1].floats[1] = std::numeric_limits<float>::infinity(); },
       std::string(kPrefill) +
           " step 1 (moe_expert_ffn) float parameter 1 is inf, expected a finite number"},
      {"NaN float parameter",
       [](Plan& p) { p.programs[1].steps[1].floats[0] = std::numeric_limits<float>::quiet_NaN(); },
       " step 1 (moe_expert_ffn) float parameter 0 is nan, expected a finite number"},
      {"output aliases an input",
       [](Plan& p) { p.programs[1].steps[1].outputs[0].arena_offset = 64; },
       std::string(kDecode) +
           " step 1 (moe_expert_ffn) output 0 [64, 192) overlaps input 0 [0, 128); expected "
           "outputs that do not alias the step's inputs"},
      {"two outputs overlap",
       [](Plan& p) {
         p.programs[1].steps[0].outputs.push_back(Arena(64, DType::kF32, {4, kHidden}));
       },
       std::string(kDecode) + " step 0 (embedding) output 1 [64, 192) overlaps output 0 [0, 128)"},
      {"input no step wrote", [](Plan& p) { p.programs[1].steps[2].inputs[0].arena_offset = 384; },
       std::string(kDecode) +
           " step 2 (lm_head_last) input 0 [384, 512) reads arena bytes that no earlier step "
           "wrote"},
      {"live value overwritten before its read",
       [](Plan& p) {
         p.programs[1].steps.insert(
             p.programs[1].steps.begin() + 2,
             KernelStep{"embedding",
                        {Input(0, DType::kI32, {4}), Weight(0, DType::kF32, {kVocab, kHidden})},
                        {Arena(64, DType::kF32, {4, kHidden})},
                        {},
                        {},
                        -1});
       },
       std::string(kDecode) +
           " step 3 (lm_head_last) input 0 [128, 256) is not the output of one earlier step: "
           "step 2 (embedding) output 0 wrote [64, 192) over it"},
      {"input read with another shape",
       [](Plan& p) {
         p.programs[1].steps[2].inputs[0].shape = {2, kHidden};
       },
       std::string(kDecode) +
           " step 2 (lm_head_last) input 0 [128, 192) reads step 1 (moe_expert_ffn) output 0 as "
           "f32 [2, 8], but it wrote f32 [4, 8] ending at 256"},
      {"logits slot moved", [](Plan& p) { p.programs[1].logits.arena_offset = 0; },
       std::string(kDecode) +
           " logits [0, 304) reads step 0 (embedding) output 0 as f32 [4, 19], but it wrote "
           "f32 [4, 8] ending at 128"},
      {"logits slot never written", [](Plan& p) { p.programs[1].steps.pop_back(); },
       std::string(kDecode) + " logits [256, 560) reads arena bytes that no earlier step wrote"},
      {"checkpoint file outside model_dir",
       [](Plan& p) {
         p.checkpoint_files = {{"../../etc/passwd", 1, 0, 0, 0}};
       },
       "checkpoint_files[0] is '../../etc/passwd', expected a file name inside model_dir"},
      {"weight file without a fingerprint",
       [](Plan& p) {
         p.checkpoint_files = {{"model.safetensors", 1, 0, 0, 0}};
       },
       std::string(kExperts) +
           " is read from 'model-00001-of-00002.safetensors', which neither checkpoint_files nor "
           "packed_weight_files lists"},
      {"packed weights file outside the plan's directory",
       [](Plan& p) {
         p.packed_weight_files = {{"../model.int8.safetensors", 1, 0, 0, 0}};
       },
       "packed_weight_files[0] is '../model.int8.safetensors', expected a file name inside the "
       "plan's directory"},
      {"packed weights file that is also a checkpoint file",
       [](Plan& p) {
         p.checkpoint_files = {{"model-00001-of-00002.safetensors", 1, 0, 0, 0},
                               {"model-00002-of-00002.safetensors", 1, 0, 0, 0}};
         p.packed_weight_files = {{"model-00002-of-00002.safetensors", 1, 0, 0, 0}};
       },
       "checkpoint_files and packed_weight_files list 'model-00002-of-00002.safetensors' twice"},
      {"packed weights file without a name",
       [](Plan& p) {
         p.packed_weight_files = {{"", 1, 0, 0, 0}};
       },
       "packed_weight_files[0] names no file"},
      {"tokenizer file of another name",
       [](Plan& p) { p.tokenizer_files[1].file = "../vocab.json"; },
       "tokenizer_files[1] is '../vocab.json', expected tokenizer.json, tokenizer_config.json or "
       "generation_config.json"},
      {"tokenizer file twice", [](Plan& p) { p.tokenizer_files[1].file = "tokenizer.json"; },
       "tokenizer_files lists 'tokenizer.json' twice"},
      {"kv_layers not one per layer", [](Plan& p) { p.kv_layers.push_back(p.kv_layers[0]); },
       "kv_layers has 2 entries, expected one per layer (model.num_layers is 1)"},
      {"no kv_layers", [](Plan& p) { p.kv_layers.clear(); },
       "kv_layers has 0 entries, expected one per layer (model.num_layers is 1)"},
      {"unknown kv layer kind", [](Plan& p) { p.kv_layers[0].kind = static_cast<KvLayerKind>(9); },
       "kv_layers[0].kind is 9, expected 0..1 (key_value, latent)"},
      {"kv layer dtype not a cache dtype", [](Plan& p) { p.kv_layers[0].dtype = DType::kI32; },
       "kv_layers[0].dtype is i32, expected f32, f16 or bf16"},
      {"unknown kv layer dtype", [](Plan& p) { p.kv_layers[0].dtype = static_cast<DType>(42); },
       "kv_layers[0].dtype is 42, expected f32, f16 or bf16"},
      {"negative kv heads", [](Plan& p) { p.kv_layers[0].num_kv_heads = -2; },
       "kv_layers[0].num_kv_heads is -2, expected > 0"},
      {"zero head_dim", [](Plan& p) { p.kv_layers[0].head_dim = 0; },
       "kv_layers[0].head_dim is 0, expected > 0"},
      {"negative window", [](Plan& p) { p.kv_layers[0].window = -1; },
       "kv_layers[0].window is -1, expected >= 0 (0: no sliding window)"},
      {"kv bytes per token overflow",
       [](Plan& p) {
         p.model.num_layers = 3;
         const PlanKvLayer huge{KvLayerKind::kKeyValue, std::numeric_limits<int32_t>::max(),
                                std::numeric_limits<int32_t>::max(), 0, DType::kF32};
         p.kv_layers = {p.kv_layers[0], huge, huge};
       },
       "kv_layers[1] (2147483647 KV heads of 2147483647, f32): the KV cache's bytes per token "
       "overflow int64"},
      {"program without steps", [](Plan& p) { p.programs[1].steps.clear(); },
       std::string(kDecode) + " has no steps; expected a program that computes the logits"},
      {"program of a rank outside the layout", [](Plan& p) { p.programs[1].rank = 1; },
       std::string(kDecode) +
           " is for rank 1, expected 0 <= rank < 1 (key_options.expert_parallel)"},
      {"a rank without a key's program",
       [](Plan& p) {
         p.key_options.expert_parallel = 2;
         KeyProgram other = p.programs[0];
         other.rank = 1;
         p.programs.push_back(other);
       },
       "has no program for rank 1: a step that one rank runs with it would leave its "
       "collectives unmatched (deadlock)"},
      {"ranks whose collectives differ",
       [](Plan& p) {
         p.key_options.expert_parallel = 2;
         for (size_t i = 0, n = p.programs.size(); i < n; ++i) {
           KeyProgram other = p.programs[i];
           other.rank = 1;
           p.programs.push_back(other);
         }
         // Rank 1's decode program gains a collective rank 0's lacks.
         KernelStep extra = p.programs.back().steps.front();
         extra.kernel = "all_gather";
         extra.ints = {2};
         extra.floats.clear();
         p.programs.back().steps.insert(p.programs.back().steps.begin(), extra);
       },
       "ranks 0 and 1 issue different collectives (a deadlock): collective #0 is nothing (its "
       "program ends) on rank 0 but all_gather("},
  };
}

TEST(PlanFileSemanticTest, EachInconsistencyIsNamed) {
  for (const SemanticCase& c : SemanticCases()) {
    SCOPED_TRACE(c.name);
    Plan plan = TinyPlan();
    c.corrupt(plan);
    // In memory, and through bytes as a loader sees it.
    const Status direct = ValidatePlan(plan, kSource);
    StatusOr<Plan> loaded = DeserializePlan(SerializePlan(plan), kSource);
    for (const Status& status : {direct, loaded.status()}) {
      ASSERT_FALSE(status.ok());
      EXPECT_EQ(status.code(), StatusCode::kDataLoss);
      EXPECT_TRUE(StartsWith(status.message(), std::string(kSource) + ": ")) << status.message();
      EXPECT_NE(status.message().find(c.expected), std::string::npos)
          << "message: " << status.message() << "\nexpected fragment: " << c.expected;
    }
    EXPECT_EQ(direct.message(), loaded.status().message());
  }
}

TEST(PlanFileSemanticTest, ArgumentsAtTheArenaEdgeAreValid) {
  Plan plan = TinyPlan();
  // Logits end exactly at the arena's end: the bound is inclusive.
  plan.programs[1].arena_bytes = 256 + 4 * kVocab * 4;
  EXPECT_TRUE(ValidatePlan(plan, kSource).ok());
  plan.programs[1].arena_bytes -= 1;
  EXPECT_FALSE(ValidatePlan(plan, kSource).ok());
}

TEST(PlanFileIoTest, ErrorsNameTheFile) {
  const std::string dir = TestDir();
  const std::string path = dir + "/bad.mgplan";
  std::string bytes = SerializePlan(TinyPlan());

  ASSERT_TRUE(WriteFileAtomically(path, bytes.substr(0, bytes.size() / 2)).ok());
  StatusOr<Plan> loaded = ReadPlanFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(StartsWith(loaded.status().message(), path + ": ")) << loaded.status().message();

  Plan plan = TinyPlan();
  plan.programs[1].steps[0].outputs[0].arena_offset = 512;
  ASSERT_TRUE(WriteFileAtomically(path, SerializePlan(plan)).ok());
  loaded = ReadPlanFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(StartsWith(loaded.status().message(), path + ": " + kDecode + " step 0"))
      << loaded.status().message();

  loaded = ReadPlanFile(dir + "/missing.mgplan");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kNotFound);
  EXPECT_NE(loaded.status().message().find(dir + "/missing.mgplan"), std::string::npos)
      << loaded.status().message();
}

TEST(PlanFileIoTest, WriteRefusesAnInvalidPlan) {
  const std::string path = TestDir() + "/invalid.mgplan";
  Plan plan = TinyPlan();
  plan.weights[1].slices[2].bytes = 95;
  const Status status = WritePlanFile(plan, path);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(StartsWith(status.message(), path + ": " + kExperts)) << status.message();
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0);  // nothing written
}

// Issue 10: a plan carries a checksum of its bytes, and any edit after it was
// written is refused as an edit, before anything reads the edited bytes.
TEST(PlanFileChecksumTest, AnEditedByteIsRefusedAsAnEdit) {
  const std::string bytes = SerializePlan(TinyPlan());
  for (size_t at :
       {size_t{9}, bytes.size() / 2, bytes.size() - kPlanFooterBytes - 1, bytes.size() - 1}) {
    std::string changed = bytes;
    changed[at] = static_cast<char>(changed[at] ^ 0x01);
    StatusOr<Plan> loaded = DeserializePlan(changed, kSource);
    ASSERT_FALSE(loaded.ok()) << at;
    EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
    EXPECT_TRUE(StartsWith(loaded.status().message(),
                           "tiny.mgplan: checksum mismatch (XXH64 of "
                           "the file is 0x"))
        << loaded.status().message();
    EXPECT_NE(loaded.status().message().find("the plan was changed after it was written"),
              std::string::npos)
        << loaded.status().message();
  }
}

TEST(PlanFileChecksumTest, AMissingOrWrongFooterIsNamed) {
  const std::string bytes = SerializePlan(TinyPlan());
  StatusOr<Plan> loaded =
      DeserializePlan(bytes.substr(0, bytes.size() - kPlanFooterBytes), kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(loaded.status().message().find("tiny.mgplan: the plan has no checksum footer"),
            std::string::npos)
      << loaded.status().message();
  // A footer moved: bytes appended after it.
  std::string longer = bytes + std::string(8, '\0') + bytes.substr(bytes.size() - kPlanFooterBytes);
  loaded = DeserializePlan(longer, kSource);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("bytes precede it: the file was truncated or edited"),
            std::string::npos)
      << loaded.status().message();
}

TEST(PlanFileChecksumTest, AnEditedFileOnDiskIsRefused) {
  const std::string path = TestDir() + "/edited.mgplan";
  ASSERT_TRUE(WritePlanFile(TinyPlan(), path).ok());
  StatusOr<std::string> bytes = ReadFileToString(path);
  ASSERT_TRUE(bytes.ok());
  // The decode program's step 2 input 0 offset (128) moved by one byte, as in the issue.
  Plan moved = TinyPlan();
  moved.programs[1].steps[2].inputs[0].arena_offset = 129;
  std::string edited = *bytes;
  const std::string other = SerializePlan(moved);
  ASSERT_EQ(other.size(), edited.size());
  // Take the edited flatbuffer but keep the original footer: what a hand edit does.
  edited.replace(0, edited.size() - kPlanFooterBytes, other, 0, other.size() - kPlanFooterBytes);
  ASSERT_TRUE(WriteFileAtomically(path, edited).ok());
  StatusOr<Plan> loaded = ReadPlanFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(StartsWith(loaded.status().message(), path + ": checksum mismatch"))
      << loaded.status().message();
}

TEST(PlanFileIoTest, TheWriterReplacesTheFileAtomically) {
  const std::string dir = TestDir();
  const std::string path = dir + "/atomic.mgplan";
  ASSERT_TRUE(WritePlanFile(TinyPlan(), path).ok());
  Plan other = TinyPlan();
  other.compile_options = "compile-model --other";
  ASSERT_TRUE(WritePlanFile(other, path).ok());
  StatusOr<Plan> loaded = ReadPlanFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->compile_options, "compile-model --other");
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0) << "no temporary file is left";
  // A failed write leaves the old file as it was.
  Plan invalid = TinyPlan();
  invalid.programs[1].steps.clear();
  EXPECT_FALSE(WritePlanFile(invalid, path).ok());
  loaded = ReadPlanFile(path);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->compile_options, "compile-model --other");
}

TEST(PlanFileIoTest, AFifoIsRefusedNotWaitedOn) {
  const std::string path = TestDir() + "/fifo.mgplan";
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0);
  StatusOr<Plan> loaded = ReadPlanFile(path);  // would block forever without a writer
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(loaded.status().message(), path + ": not a regular file");
}

}  // namespace
}  // namespace moegraph
