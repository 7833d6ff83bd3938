// moe-chunk: IR text in, IR text out.
#include "passes/moe_chunk.h"

#include "tests/passes/test_util.h"

namespace moegraph {
namespace {

constexpr const char* kMoe20 =
    R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y = moe(%meta, %x, %router, %wg, %wu, %wd) {norm_topk_prob = 1, top_k = 2} : tensor<20 x 6 x f32>
  return %y
}
)";

// The key kMoe20 records (chunk size 8).
SpecKey Key(int rows, int chunks, int max_chunks) {
  return SpecKey{MoePhase::kPrefill, chunks, max_chunks, rows, 4};
}

// A MoE block over a bucket of `rows` rows with the key's chunk counts.
std::string MoeBlock(int rows, int chunks, int max_chunks) {
  std::string text = kMoe20;
  auto sub = [&](const std::string& from, const std::string& to) {
    for (size_t at = text.find(from); at != std::string::npos;
         at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
    }
  };
  sub("tensor<20 x 6 x f32>", "tensor<" + std::to_string(rows) + " x 6 x f32>");
  sub("token_bucket = 20", "token_bucket = " + std::to_string(rows));
  sub("max_moe_num_chunk = 3", "max_moe_num_chunk = " + std::to_string(max_chunks));
  sub(", moe_num_chunk = 3", ", moe_num_chunk = " + std::to_string(chunks));
  return text;
}

TEST(MoeChunk, ThreeChunksSliceTheBucketWithRowOffsets) {
  MoeChunkPass pass(Key(20, 3, 3), 8);
  bool changed = false;
  EXPECT_EQ(
      RunPass(kMoe20, pass, &changed),
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y.in0 = slice_rows(%x) {begin = 0, rows = 8} : tensor<8 x 6 x f32>
  %y.chunk0 = moe(%meta, %y.in0, %router, %wg, %wu, %wd) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<8 x 6 x f32>
  %y.in1 = slice_rows(%x) {begin = 8, rows = 8} : tensor<8 x 6 x f32>
  %y.chunk1 = moe(%meta, %y.in1, %router, %wg, %wu, %wd) {norm_topk_prob = 1, row_offset = 8, top_k = 2} : tensor<8 x 6 x f32>
  %y.in2 = slice_rows(%x) {begin = 16, rows = 4} : tensor<4 x 6 x f32>
  %y.chunk2 = moe(%meta, %y.in2, %router, %wg, %wu, %wd) {norm_topk_prob = 1, row_offset = 16, top_k = 2} : tensor<4 x 6 x f32>
  %y.joined = concat_rows(%y.chunk0, %y.chunk1, %y.chunk2) : tensor<20 x 6 x f32>
  return %y.joined
}
)");
  EXPECT_TRUE(changed);
}

TEST(MoeChunk, RowsPastTheChunksArePaddingZeros) {
  MoeChunkPass pass(Key(32, 2, 2), 8);
  const std::string out = RunPass(MoeBlock(32, 2, 2), pass);
  EXPECT_NE(out.find("%y.in1 = slice_rows(%x) {begin = 8, rows = 8} : tensor<8 x 6 x f32>"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("%y.pad = zeros() : tensor<16 x 6 x f32>"), std::string::npos) << out;
  EXPECT_NE(
      out.find("%y.joined = concat_rows(%y.chunk0, %y.chunk1, %y.pad) : tensor<32 x 6 x f32>"),
      std::string::npos)
      << out;
  EXPECT_EQ(out.find("chunk2"), std::string::npos) << out;
}

// Expert parallelism: every rank runs max_moe_num_chunk chunks; the ones past
// moe_num_chunk take zero rows but still exist.
TEST(MoeChunk, ChunksPastTheCountRunOnEmptyInput) {
  MoeChunkPass pass(Key(16, 1, 3), 8);
  const std::string out = RunPass(MoeBlock(16, 1, 3), pass);
  EXPECT_NE(out.find("%y.in1 = slice_rows(%x) {begin = 8, rows = 0} : tensor<0 x 6 x f32>"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("%y.chunk2 = moe(%meta, %y.in2, %router, %wg, %wu, %wd) {norm_topk_prob = 1, "
                     "row_offset = 16, top_k = 2} : tensor<0 x 6 x f32>"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("%y.joined = concat_rows(%y.chunk0, %y.pad) : tensor<16 x 6 x f32>"),
            std::string::npos)
      << out;
}

// Each chunk keeps the %bias operand and every routing attribute; a block that fits one chunk is
// left as it is, bias and all.
TEST(MoeChunk, ChunksKeepTheBiasOperandAndRoutingAttributes) {
  std::string text = kMoe20;
  text.replace(text.find("  %y = moe"), 0,
               "  %bias = weight() {name = \"gate.e_score_correction_bias\"} : tensor<4 x f32>\n");
  text.replace(text.find("%wd) {norm_topk_prob = 1, top_k = 2}"),
               std::string("%wd) {norm_topk_prob = 1, top_k = 2}").size(),
               "%wd, %bias) {norm_topk_prob = 1, num_groups = 2, routed_scaling_factor = 2.5, "
               "scoring = 1, top_k = 2, top_k_groups = 1}");
  MoeChunkPass pass(Key(20, 3, 3), 8);
  const std::string out = RunPass(text, pass);
  for (const char* chunk : {"%y.chunk0 = moe(%meta, %y.in0, %router, %wg, %wu, %wd, %bias) "
                            "{norm_topk_prob = 1, num_groups = 2, routed_scaling_factor = 2.5, "
                            "row_offset = 0, scoring = 1, top_k = 2, top_k_groups = 1}",
                            "%y.chunk2 = moe(%meta, %y.in2, %router, %wg, %wu, %wd, %bias) "
                            "{norm_topk_prob = 1, num_groups = 2, routed_scaling_factor = 2.5, "
                            "row_offset = 16, scoring = 1, top_k = 2, top_k_groups = 1}"}) {
    EXPECT_NE(out.find(chunk), std::string::npos) << out;
  }

  std::string fits = text;
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"20 x 6", "8 x 6"},
                                 {"token_bucket = 20", "token_bucket = 8"},
                                 {"max_moe_num_chunk = 3", "max_moe_num_chunk = 1"},
                                 {", moe_num_chunk = 3", ", moe_num_chunk = 1"}}) {
    for (size_t at = fits.find(from); at != std::string::npos; at = fits.find(from, at + 1))
      fits.replace(at, from.size(), to);
  }
  MoeChunkPass one(Key(8, 1, 1), 8);
  bool changed = true;
  EXPECT_EQ(RunPass(fits, one, &changed), fits);
  EXPECT_FALSE(changed);
}

TEST(MoeChunk, OneChunkThatFitsIsNoChange) {
  MoeChunkPass pass(Key(8, 1, 1), 8);
  const std::string in = MoeBlock(8, 1, 1);
  bool changed = true;
  EXPECT_EQ(RunPass(in, pass, &changed), in);
  EXPECT_FALSE(changed);
}

TEST(MoeChunk, AlreadyChunkedIsNoChange) {
  MoeChunkPass pass(Key(20, 3, 3), 8);
  const std::string once =
      R"(graph @moe(%meta: !forward_meta, %x: tensor<20 x 6 x f32>) attributes {max_moe_num_chunk = 3, moe_chunk_size = 8, moe_num_chunk = 3, moe_phase = "prefill", seq_bucket = 4, token_bucket = 20} {
  %router = weight() {name = "gate"} : tensor<4 x 6 x bf16>
  %wg = weight() {experts = 4, name = "e.{e}.gate"} : tensor<4 x 5 x 6 x bf16>
  %wu = weight() {experts = 4, name = "e.{e}.up"} : tensor<4 x 5 x 6 x bf16>
  %wd = weight() {experts = 4, name = "e.{e}.down"} : tensor<4 x 6 x 5 x bf16>
  %y.in0 = slice_rows(%x) {begin = 0, rows = 8} : tensor<8 x 6 x f32>
  %y.chunk0 = moe(%meta, %y.in0, %router, %wg, %wu, %wd) {norm_topk_prob = 1, row_offset = 0, top_k = 2} : tensor<8 x 6 x f32>
  %y.in1 = slice_rows(%x) {begin = 8, rows = 8} : tensor<8 x 6 x f32>
  %y.chunk1 = moe(%meta, %y.in1, %router, %wg, %wu, %wd) {norm_topk_prob = 1, row_offset = 8, top_k = 2} : tensor<8 x 6 x f32>
  %y.in2 = slice_rows(%x) {begin = 16, rows = 4} : tensor<4 x 6 x f32>
  %y.chunk2 = moe(%meta, %y.in2, %router, %wg, %wu, %wd) {norm_topk_prob = 1, row_offset = 16, top_k = 2} : tensor<4 x 6 x f32>
  %y.joined = concat_rows(%y.chunk0, %y.chunk1, %y.chunk2) : tensor<20 x 6 x f32>
  return %y.joined
}
)";
  bool changed = true;
  EXPECT_EQ(RunPass(once, pass, &changed), once);
  EXPECT_FALSE(changed);
}

// The pass takes its key from the pipeline; an IR file recording another key
// is refused rather than chunked for the wrong bucket.
TEST(MoeChunk, AGraphRecordingAnotherKeyIsRefused) {
  Graph graph = ParseOrDie(kMoe20);
  MoeChunkPass pass(Key(20, 2, 3), 8);
  StatusOr<bool> result = pass.Run(graph);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("moe_num_chunk = 3"), std::string::npos)
      << result.status().message();
  EXPECT_NE(result.status().message().find("but the pass runs key phase=prefill,chunks=2"),
            std::string::npos)
      << result.status().message();
  MoeChunkPass other_chunk(Key(20, 3, 3), 16);
  EXPECT_FALSE(other_chunk.Run(graph).ok());
}

TEST(MoeChunk, NeedsASpecializedGraph) {
  Graph graph = ParseOrDie(R"(graph @g(%meta: !forward_meta, %x: tensor<4 x f32>) {
  %y = add(%x, %x) : tensor<4 x f32>
  return %y
}
)");
  MoeChunkPass pass(Key(20, 3, 3), 8);
  StatusOr<bool> result = pass.Run(graph);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("run specialize first"), std::string::npos);
}

}  // namespace
}  // namespace moegraph
