// Issue 10, "plans are untrusted": the demo plan, hand-edited the way a bad
// file would be, must be refused at load with a message naming what is wrong;
// sizes from a plan never overflow or abort; a checkpoint changed after
// compile is detected; a checkpoint truncated while mapped ends in a message
// naming the file, not a bare SIGBUS; a FIFO is refused, not waited on.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "compiler/compile_model.h"
#include "frontends/demo_model.h"
#include "frontends/hf_model.h"
#include "frontends/qwen3_moe_config.h"
#include "ir/op_registry.h"
#include "plan/plan_file.h"
#include "runtime/engine.h"
#include "runtime/forward_meta.h"
#include "runtime/kv_cache.h"
#include "runtime/program_check.h"
#include "support/json.h"
#include "support/mapped_file.h"
#include "tests/testing/temp_dir.h"

namespace moegraph {
namespace {

KeySetOptions SmallBuckets() {
  KeySetOptions keys;
  keys.chunk_size = 16;
  keys.max_chunks = 2;
  keys.prefill_buckets = {8, 32};
  keys.decode_buckets = {1, 2};
  keys.max_prefill_seqs = 2;
  return keys;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The index of kernel parameter `name` of `kernel`.
size_t IntParamIndex(const std::string& kernel, const std::string& name) {
  const OpDef* def = LookupOp(kernel);
  for (const ParamFieldInfo& f : *def->params) {
    if (f.kind == AttrKind::kInt && f.name == name) return f.wire_index;
  }
  ADD_FAILURE() << kernel << " has no parameter " << name;
  return 0;
}

class UntrustedPlanTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    model_dir_ = TestDir("model");
    ASSERT_TRUE(WriteDemoModel(model_dir_).ok());
    StatusOr<HfModel> model = LoadHfModel(model_dir_);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    CompileModelOptions options;
    options.keys = SmallBuckets();
    StatusOr<Plan> plan = CompileModel(*model, options);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    plan_ = std::move(*plan);
    plan_path_ = root_ + "/demo.mgplan";
  }

  // The first step of `kernel` in the first program of `phase`.
  KernelStep& FindStep(Plan& plan, const std::string& kernel, MoePhase phase = MoePhase::kDecode) {
    for (KeyProgram& p : plan.programs) {
      if (p.key.phase != phase) continue;
      for (KernelStep& s : p.steps) {
        if (s.kernel == kernel) return s;
      }
    }
    ADD_FAILURE() << "no " << kernel << " step";
    return plan.programs[0].steps[0];
  }
  KeyProgram& FirstProgram(Plan& plan, MoePhase phase) {
    for (KeyProgram& p : plan.programs) {
      if (p.key.phase == phase) return p;
    }
    ADD_FAILURE() << "no program";
    return plan.programs[0];
  }

  // Writes `plan` as a hand edit would leave it (sealed, but not validated),
  // and reads it back.
  Status WriteAndRead(const Plan& plan) {
    Status written = WriteFileAtomically(plan_path_, SerializePlan(plan));
    if (!written.ok()) return written;
    return ReadPlanFile(plan_path_).status();
  }

  StatusOr<std::unique_ptr<Engine>> Load(const Plan& plan, EngineOptions options = {}) {
    options.num_threads = 2;
    return Engine::Load(plan, options);
  }

  std::string model_dir_;
  std::string plan_path_;
  Plan plan_;
};

TEST_F(UntrustedPlanTest, TheDemoPlanPassesEveryCheck) {
  ASSERT_TRUE(WritePlanFile(plan_, plan_path_).ok());
  StatusOr<Plan> loaded = ReadPlanFile(plan_path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(CheckPlanPrograms(*loaded).ok());
  EXPECT_FALSE(loaded->checkpoint_files.empty());
  StatusOr<std::unique_ptr<Engine>> engine = Load(*loaded);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  EXPECT_TRUE((*engine)->Step({SequenceStep{1, {3, 4, 5}, 0}}).ok());
}

TEST_F(UntrustedPlanTest, AnEditedPlanFileIsRefusedAsEdited) {
  ASSERT_TRUE(WritePlanFile(plan_, plan_path_).ok());
  StatusOr<std::string> bytes = ReadFileToString(plan_path_);
  ASSERT_TRUE(bytes.ok());
  std::string edited = *bytes;
  edited[edited.size() / 3] ^= 0x10;
  ASSERT_TRUE(WriteFileAtomically(plan_path_, edited).ok());
  StatusOr<Plan> loaded = ReadPlanFile(plan_path_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(loaded.status().message(),
                       plan_path_ + ": checksum mismatch (XXH64 of the file is 0x"))
      << loaded.status().message();
  EXPECT_TRUE(Contains(loaded.status().message(), "the plan was changed after it was written"));
}

// Two same-shape weights swapped: a plan no semantic check can fault, so the
// checksum must. The edited flatbuffer keeps the original footer, as a hand
// edit of the file would.
TEST_F(UntrustedPlanTest, ASwappedSameShapeWeightIsRefusedAsAnEdit) {
  Plan swapped = plan_;
  int32_t a = -1, b = -1;
  for (size_t i = 1; i < swapped.weights.size() && b < 0; ++i) {
    for (size_t j = i + 1; j < swapped.weights.size(); ++j) {
      if (swapped.weights[i].shape == swapped.weights[j].shape &&
          swapped.weights[i].dtype == swapped.weights[j].dtype) {
        a = static_cast<int32_t>(i);
        b = static_cast<int32_t>(j);
        break;
      }
    }
  }
  ASSERT_GE(b, 0);
  for (KeyProgram& p : swapped.programs) {
    for (KernelStep& s : p.steps) {
      for (ArgRef& in : s.inputs) {
        if (in.kind != ArgKind::kWeight) continue;
        if (in.index == a) {
          in.index = b;
        } else if (in.index == b) {
          in.index = a;
        }
      }
    }
  }
  ASSERT_TRUE(ValidatePlan(swapped, "swapped").ok());
  ASSERT_TRUE(CheckPlanPrograms(swapped).ok());
  const std::string original = SerializePlan(plan_);
  std::string edited = SerializePlan(swapped);
  ASSERT_EQ(edited.size(), original.size());
  edited.replace(edited.size() - kPlanFooterBytes, kPlanFooterBytes, original,
                 original.size() - kPlanFooterBytes, kPlanFooterBytes);
  ASSERT_TRUE(WriteFileAtomically(plan_path_, edited).ok());
  StatusOr<Plan> loaded = ReadPlanFile(plan_path_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(Contains(loaded.status().message(), plan_path_ + ": checksum mismatch"))
      << loaded.status().message();
}

TEST_F(UntrustedPlanTest, AnArenaOffsetMovedByOneByteIsRefused) {
  Plan plan = plan_;
  KernelStep& step = FindStep(plan, "attention");
  step.inputs[0].arena_offset += 1;
  const Status status = WriteAndRead(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), "(attention) input 0 at arena offset"))
      << status.message();
  EXPECT_TRUE(Contains(status.message(), "is misaligned for f32: expected a multiple of 4 bytes"))
      << status.message();
}

TEST_F(UntrustedPlanTest, AnInfiniteAttentionScaleIsRefused) {
  Plan plan = plan_;
  FindStep(plan, "attention").floats[0] = std::numeric_limits<float>::infinity();
  const Status status = WriteAndRead(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(
      Contains(status.message(), "(attention) float parameter 0 is inf, expected a finite number"))
      << status.message();
}

TEST_F(UntrustedPlanTest, AnAttentionLayerPastTheModelIsRefused) {
  Plan plan = plan_;
  const size_t layer = IntParamIndex("attention", "layer");
  FindStep(plan, "attention").ints[layer] = plan.model.num_layers;  // 4: one past the last
  ASSERT_TRUE(ValidatePlan(plan, "p").ok());  // structurally fine: the registry's check
  const Status status = CheckPlanPrograms(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(),
                       "('attention'): layer 4 is out of range: the model has 4 "
                       "layers (expected 0 <= layer < 4)"))
      << status.message();
  StatusOr<std::unique_ptr<Engine>> engine = Load(plan);
  ASSERT_FALSE(engine.ok());
  EXPECT_TRUE(Contains(engine.status().message(), "layer 4 is out of range"));
}

TEST_F(UntrustedPlanTest, AnAttentionHeadGeometryOtherThanTheKvCacheIsRefused) {
  Plan plan = plan_;
  plan.kv_layers[1].head_dim = 16;  // the steps say 32
  const Status status = CheckPlanPrograms(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(
      Contains(status.message(), "head_dim is 32, but the KV cache has 16 (kv_layers[1].head_dim)"))
      << status.message();
}

TEST_F(UntrustedPlanTest, ATopKRowOffsetPastTheBucketIsRefused) {
  Plan plan = plan_;
  KernelStep& step = FindStep(plan, "topk_route", MoePhase::kPrefill);
  step.ints[IntParamIndex("topk_route", "row_offset")] = 1000;
  const Status status = CheckPlanPrograms(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), "('topk_route'): row_offset 1000 with "))
      << status.message();
  EXPECT_TRUE(Contains(status.message(),
                       "rows is out of range: expected row_offset + rows <= the "
                       "key's token bucket"))
      << status.message();
}

TEST_F(UntrustedPlanTest, ADecodeProgramWithoutStepsIsRefused) {
  Plan plan = plan_;
  KeyProgram& decode = FirstProgram(plan, MoePhase::kDecode);
  decode.steps.clear();
  const Status status = WriteAndRead(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), "program '" + decode.key.ToString() +
                                             "' has no steps; expected a program that computes "
                                             "the logits"))
      << status.message();
}

TEST_F(UntrustedPlanTest, AMovedLogitsSlotIsRefused) {
  Plan plan = plan_;
  KeyProgram& decode = FirstProgram(plan, MoePhase::kDecode);
  decode.logits.arena_offset = decode.arena_bytes - decode.logits.bytes();
  decode.logits.arena_offset -= decode.logits.arena_offset % 4;
  const Status status = WriteAndRead(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), "program '" + decode.key.ToString() + "' logits ["))
      << status.message();
}

TEST_F(UntrustedPlanTest, AnOutputAliasingItsInputIsRefused) {
  Plan plan = plan_;
  KernelStep& step = FindStep(plan, "attention");
  step.outputs[0].arena_offset = step.inputs[0].arena_offset;
  const Status status = WriteAndRead(plan);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), "(attention) output 0 ")) << status.message();
  EXPECT_TRUE(Contains(status.message(),
                       "overlaps input 0 [" + std::to_string(step.inputs[0].arena_offset)))
      << status.message();
}

// 2^31 - 1 positions used to overflow, then throw std::length_error; 1e9 held
// 3.9 GB of block tables and refilled them every step.
TEST_F(UntrustedPlanTest, HugeMaxPositionEmbeddingsLoadAndRun) {
  for (int32_t positions : {std::numeric_limits<int32_t>::max(), 1'000'000'000}) {
    SCOPED_TRACE(positions);
    Plan plan = plan_;
    plan.model.max_position_embeddings = positions;
    StatusOr<std::unique_ptr<Engine>> engine = Load(plan);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    for (int i = 0; i < 3; ++i) {
      StatusOr<StepLogits> out = (*engine)->Step({SequenceStep{1, {7}, i}});
      ASSERT_TRUE(out.ok()) << out.status().ToString();
    }
  }
}

TEST(UntrustedSizesTest, HugeForwardMetaAndKvCacheAreResourceExhausted) {
  StatusOr<ForwardMetaBuffers> meta = ForwardMetaBuffers::Create(
      std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::max(),
      std::numeric_limits<int32_t>::max());
  ASSERT_FALSE(meta.ok());
  EXPECT_EQ(meta.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(meta.status().message(), "ForwardMeta")) << meta.status().message();
  meta = ForwardMetaBuffers::Create(-1, 1, 1);
  EXPECT_EQ(meta.status().code(), StatusCode::kInvalidArgument);

  KvCacheConfig kv = KvCacheConfig::Uniform(3, std::numeric_limits<int32_t>::max(),
                                            std::numeric_limits<int32_t>::max());
  kv.block_size = 16;
  kv.num_blocks = 1 << 30;
  StatusOr<KvCache> cache = KvCache::Create(kv);
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(cache.status().message(), "KV cache")) << cache.status().message();
  // Fits 64 bits but not in memory: 2^46 bytes.
  kv = KvCacheConfig::Uniform(1, 1 << 10, 1 << 10);
  kv.block_size = 1;
  kv.num_blocks = 1 << 23;
  cache = KvCache::Create(kv);
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(cache.status().message(), "cannot allocate the KV cache"))
      << cache.status().message();
}

// Fill resets only what the previous fill wrote, yet reads exactly as a fresh fill.
TEST(UntrustedSizesTest, ForwardMetaFillAfterALargerBatchEqualsAFreshFill) {
  KvCacheConfig config = KvCacheConfig::Uniform(1, 1, 2);
  config.block_size = 2;
  config.num_blocks = 32;
  StatusOr<KvCache> kv = KvCache::Create(config);
  ASSERT_TRUE(kv.ok());
  ASSERT_TRUE(kv->Reserve(1, 9).ok());
  ASSERT_TRUE(kv->Reserve(2, 5).ok());
  ASSERT_TRUE(kv->Reserve(3, 2).ok());
  const std::vector<SequenceStep> big = {
      {1, {1, 2, 3, 4, 5, 6, 7, 8, 9}, 0}, {2, {4, 5}, 3}, {3, {6}, 1}};
  const std::vector<SequenceStep> small = {{2, {9}, 4}};
  ForwardMetaBuffers reused(16, 4, 8), fresh(16, 4, 8);
  ASSERT_TRUE(reused.Fill(big, 16, 4, *kv).ok());
  ASSERT_TRUE(reused.Fill(small, 2, 2, *kv).ok());
  ASSERT_TRUE(fresh.Fill(small, 2, 2, *kv).ok());
  const ForwardMetaView& a = reused.view();
  const ForwardMetaView& b = fresh.view();
  EXPECT_EQ(a.num_tokens, b.num_tokens);
  EXPECT_EQ(a.num_seqs, b.num_seqs);
  auto same = [](const int32_t* x, const int32_t* y, size_t n) {
    return std::memcmp(x, y, n * sizeof(int32_t)) == 0;
  };
  EXPECT_TRUE(same(reused.tokens(), fresh.tokens(), 16));
  EXPECT_TRUE(same(a.batch_id_per_token, b.batch_id_per_token, 16));
  EXPECT_TRUE(same(a.positions, b.positions, 16));
  EXPECT_TRUE(same(a.slot_mapping, b.slot_mapping, 16));
  EXPECT_TRUE(same(a.seq_lens_this_time, b.seq_lens_this_time, 4));
  EXPECT_TRUE(same(a.seq_lens_encoder, b.seq_lens_encoder, 4));
  EXPECT_TRUE(same(a.seq_lens_decoder, b.seq_lens_decoder, 4));
  EXPECT_TRUE(same(a.cu_seqlens_q, b.cu_seqlens_q, 5));
  EXPECT_TRUE(same(a.block_tables, b.block_tables, 4 * 8));
}

// A config's sizes become the plan's int32 model info and weight byte sizes.
TEST(UntrustedSizesTest, ConfigSizesThatOverflowAreRefused) {
  const std::string text = DemoModelConfig().ToJson();
  auto parse = [&](const std::string& field, const std::string& value,
                   const std::string& field2 = "", const std::string& value2 = "") {
    std::string edited = text;
    for (const auto& [f, v] : {std::pair{field, value}, std::pair{field2, value2}}) {
      if (f.empty()) continue;
      const std::string key = "\"" + f + "\": ";
      const size_t at = edited.find(key);
      EXPECT_NE(at, std::string::npos) << f;
      const size_t end = edited.find_first_of(",\n", at + key.size());
      edited.replace(at + key.size(), end - at - key.size(), v);
    }
    StatusOr<JsonValue> json = ParseJson(edited, "config.json");
    EXPECT_TRUE(json.ok());
    return ParseQwen3MoeConfig(*json, "config.json").status();
  };
  EXPECT_TRUE(parse("max_position_embeddings", "2147483647").ok()) << "INT32_MAX is allowed";
  Status status = parse("max_position_embeddings", "2147483648");
  EXPECT_EQ(status.message(),
            "config.json: field \"max_position_embeddings\" is 2147483648, expected at most "
            "2147483647");
  status = parse("head_dim", "4294967296");
  EXPECT_EQ(status.message(),
            "config.json: field \"head_dim\" is 4294967296, expected at most 2147483647");
  status = parse("hidden_size", "2000000000", "moe_intermediate_size", "2000000000");
  EXPECT_EQ(status.message(),
            "config.json: field \"moe_intermediate_size\" makes a weight whose byte size "
            "overflows int64 (with hidden_size = 2000000000)");
}

// ---- Checkpoints ---------------------------------------------------------------

TEST_F(UntrustedPlanTest, ACheckpointWithOtherValuesIsRefused) {
  DemoModelOptions other;
  other.seed += 1;  // same names, dtypes, shapes and offsets; other values
  ASSERT_TRUE(WriteDemoModel(model_dir_, other).ok());
  StatusOr<std::unique_ptr<Engine>> engine = Load(plan_);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(engine.status().message(), model_dir_ + "/model.safetensors changed since "
                                                               "the plan was compiled: "))
      << engine.status().message();
  EXPECT_TRUE(Contains(engine.status().message(), "recompile the plan"));
}

// One byte changed where no sampled page looks, the mtime put back: only a
// full hash sees it.
TEST_F(UntrustedPlanTest, AFullCheckFindsAChangeTheSampledPagesMiss) {
  const std::string path = model_dir_ + "/model.safetensors";
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_GT(st.st_size, 512 << 10);
  // Past the 64 KiB head, between spread pages 3 and 4 (they are st_size / 63 apart).
  const off_t at = st.st_size / 63 * 3 + (8 << 10);
  ASSERT_GT(at, 64 << 10);
  ASSERT_LT(at, st.st_size / 63 * 4);
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
  byte ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
  ::close(fd);
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);

  EngineOptions options;
  options.checkpoint_check = CheckpointCheck::kAuto;
  EXPECT_TRUE(Load(plan_, options).ok()) << "kAuto trusts an unchanged mtime";
  options.checkpoint_check = CheckpointCheck::kFull;
  StatusOr<std::unique_ptr<Engine>> engine = Load(plan_, options);
  ASSERT_FALSE(engine.ok());
  EXPECT_TRUE(Contains(engine.status().message(),
                       "model.safetensors changed since the plan was compiled: the same size, but "
                       "its content hash (XXH64) is 0x"))
      << engine.status().message();
  // kAuto hashes in full once the mtime moved.
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), nullptr, 0), 0);
  options.checkpoint_check = CheckpointCheck::kAuto;
  EXPECT_FALSE(Load(plan_, options).ok());
}

TEST_F(UntrustedPlanTest, ATouchedButUnchangedCheckpointLoads) {
  const std::string path = model_dir_ + "/model.safetensors";
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), nullptr, 0), 0);  // mtime = now
  StatusOr<std::unique_ptr<Engine>> engine = Load(plan_);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
}

// Weights are read from the mapping in place: truncating the file under a
// running engine must end in a message naming it.
TEST_F(UntrustedPlanTest, ACheckpointTruncatedWhileRunningNamesTheFile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string path = model_dir_ + "/model.safetensors";
  EXPECT_EXIT(
      {
        StatusOr<std::unique_ptr<Engine>> engine = Load(plan_);
        if (!engine.ok()) std::_Exit(2);
        if (::truncate(path.c_str(), 0) != 0) std::_Exit(3);
        (void)(*engine)->Step({SequenceStep{1, {3, 4, 5}, 0}});
        std::_Exit(4);
      },
      ::testing::ExitedWithCode(kMappedFileFaultExitCode),
      "moegraph: fatal: reading .*model.safetensors at byte [0-9]+ of its [0-9]+-byte mapping "
      "failed \\(SIGBUS\\): the file was truncated or replaced while mapped");
}

TEST_F(UntrustedPlanTest, AFifoConfigOrCheckpointIsRefusedNotWaitedOn) {
  const std::string dir = TestDir("fifo");
  ASSERT_EQ(::mkfifo((dir + "/config.json").c_str(), 0644), 0);
  StatusOr<HfModel> model = LoadHfModel(dir);  // would block forever without a writer
  ASSERT_FALSE(model.ok());
  EXPECT_TRUE(Contains(model.status().message(), "config.json: not a regular file"))
      << model.status().message();
  ASSERT_EQ(::mkfifo((dir + "/model.safetensors").c_str(), 0644), 0);
  StatusOr<MappedFile> mapped = MappedFile::Open(dir + "/model.safetensors");
  ASSERT_FALSE(mapped.ok());
  EXPECT_EQ(mapped.status().code(), StatusCode::kInvalidArgument);
}

TEST(MappedFileFaultTest, ATruncatedMappingNamesTheFile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // No pid in the name: a threadsafe death test reruns this body in a child.
  const std::string path = ::testing::TempDir() + "moegraph_mapped_fault_test";
  ASSERT_TRUE(WriteFileAtomically(path, std::string(3 * 4096, 'x')).ok());
  EXPECT_EXIT(
      {
        StatusOr<MappedFile> file = MappedFile::Open(path);
        if (!file.ok()) std::_Exit(2);
        if (::truncate(path.c_str(), 0) != 0) std::_Exit(3);
        volatile char c = static_cast<char>(file->data()[2 * 4096 + 5]);
        (void)c;
        std::_Exit(4);
      },
      ::testing::ExitedWithCode(kMappedFileFaultExitCode),
      "moegraph: fatal: reading " + path + " at byte 8197 of its 12288-byte mapping failed");
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace moegraph
