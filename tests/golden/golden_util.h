// Reading the transformers goldens (tests/data/golden/<case>/golden.safetensors).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "compiler/compile_model.h"
#include "frontends/hf_model.h"
#include "runtime/kv_cache.h"

namespace moegraph::testing {

// An f32 KV cache laid out as compile-model lays out the model's (its layers' geometry from
// the graph's attention ops: key/value or latent), of `num_blocks` blocks of `block_size`.
inline StatusOr<KvCache> GraphKvCache(const HfModel& model, int32_t block_size,
                                      int32_t num_blocks) {
  KvCacheConfig kv;
  MG_ASSIGN_OR_RETURN(
      kv.layers,
      KvLayersFromGraph(model.graph, static_cast<int32_t>(model.decoder().num_hidden_layers),
                        DType::kF32));
  kv.block_size = block_size;
  kv.num_blocks = num_blocks;
  return KvCache::Create(kv);
}

struct GoldenSequence {
  std::vector<int32_t> prompt;
  std::vector<float> prefill_logits;  // [L, V]
  std::vector<int32_t> generated;     // [32]
  std::vector<float> decode_logits;   // [32, V]
};

struct Golden {
  std::string dir;
  int64_t vocab = 0;
  std::vector<GoldenSequence> sequences;
};

inline std::vector<std::string> GoldenCases() {
  return {"odd_norm_topk",
          "odd_no_norm_tied",
          "sparse_step_bf16",
          "odd_norm_topk_fused",
          "qwen3_dense_untied",
          "qwen3_dense_tied_bf16",
          "qwen3_dense_yarn",
          "qwen3_dense_llama3",
          "mixtral_top2",
          "mixtral_top3_fused",
          "mixtral_bf16",
          "qwen2_untied",
          "qwen2_tied_bf16",
          "qwen2_moe_sparse2",
          "qwen2_moe_norm_nobias",
          "qwen2_moe_bf16",
          "qwen2_moe_fused",
          "ernie_moe_shared2_bias",
          "ernie_moe_noshared_tied",
          "ernie_moe_bf16",
          "ernie_moe_fused",
          "glm4_moe_g1",
          "glm4_moe_g4",
          "glm4_moe_bf16",
          "dsv3_lora_g4",
          "dsv3_plain_g1",
          "dsv3_bf16",
          "dsv3_yarn",
          "dsv3_yarn_mscale",
          "gpt_oss_yarn",
          "gpt_oss_bf16",

          "qwen3_moe_fp8",
          "dsv3_fp8",
          "gpt_oss_mxfp4"};
}

// The golden models with routed experts (every case but the dense Qwen2 / Qwen3 ones).
inline std::vector<std::string> MoeGoldenCases() {
  std::vector<std::string> out;
  for (const std::string& name : GoldenCases()) {
    const bool dense = name.find("dense") != std::string::npos ||
                       (name.rfind("qwen2_", 0) == 0 && name.find("moe") == std::string::npos);
    if (!dense) out.push_back(name);
  }
  return out;
}

inline std::string GoldenDir(const std::string& name) {
  return std::string(MOEGRAPH_TEST_DATA_DIR) + "/golden/" + name;
}

template <typename T>
std::vector<T> TensorData(const SafetensorsFile& file, const std::string& name) {
  const SafetensorsTensor* t = file.Find(name);
  if (!t) return {};
  std::vector<T> out(t->bytes / sizeof(T));
  std::memcpy(out.data(), t->data, t->bytes);
  return out;
}

inline Golden LoadGolden(const std::string& name) {
  Golden g;
  g.dir = GoldenDir(name);
  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(g.dir + "/golden.safetensors");
  if (!file.ok()) return g;
  for (int i = 0;; ++i) {
    const std::string p = "seq" + std::to_string(i) + ".";
    if (!file->Find(p + "prompt")) break;
    GoldenSequence s;
    s.prompt = TensorData<int32_t>(*file, p + "prompt");
    s.prefill_logits = TensorData<float>(*file, p + "prefill_logits");
    s.generated = TensorData<int32_t>(*file, p + "generated");
    s.decode_logits = TensorData<float>(*file, p + "decode_logits");
    g.vocab = file->Find(p + "decode_logits")->shape[1];
    g.sequences.push_back(std::move(s));
  }
  return g;
}

inline float MaxAbsDiff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i)
    m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

inline int32_t Argmax(const float* x, int64_t n) {
  return static_cast<int32_t>(std::max_element(x, x + n) - x);
}

}  // namespace moegraph::testing
