#!/usr/bin/env python3
"""Generate independent golden references for moegraph's model families.

The reference is Hugging Face `transformers` (Qwen3MoeForCausalLM,
Qwen3ForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen2MoeForCausalLM,
Ernie4_5_MoeForCausalLM, Glm4MoeForCausalLM, DeepseekV3ForCausalLM) running on CPU in float32 with eager attention and the eager (per-expert loop) experts implementation.  For every
case this script

  1. builds a small random model of the case's family (seeded),
  2. re-initialises all weights so logits and routing are non-trivial,
  3. writes the model with `save_pretrained` (config.json, model.safetensors,
     generation_config.json) in the case's dtype, optionally rewriting the
     weights (fused expert layout) or config.json (published key style),
  4. reloads the model *from those files* as float32 and records prefill
     logits and 32 greedy decode steps for four prompts in golden.safetensors.

An `fp8_block` case replaces the projections by their FP8 block quantization
before step 3 (so transformers runs the dequantized f32 weights) and, after
step 4, rewrites model.safetensors with F8_E4M3 weights and F32 scale_inv
tensors and config.json with quantization_config. An `mxfp4` case (GPT-OSS) does the
same for the experts in the published MXFP4 format: `*_blocks` (U8 FP4 e2m1 pairs, [E, out,
in / 32, 16]) and `*_scales` (U8 e8m0, [E, out, in / 32]); the weights transformers runs are
its own decode of those bytes (integrations.mxfp4.convert_moe_packed_tensors).

Install the pinned dependencies with tools/requirements-goldens.txt, then:

    python3 tools/make_goldens.py --out tests/data/golden

See tests/data/golden/README.md for the file format.
"""

import argparse
import inspect
import json
import math
import os
import shutil
import struct
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import (DeepseekV3Config, DeepseekV3ForCausalLM, Ernie4_5_MoeConfig, Ernie4_5_MoeForCausalLM, Glm4MoeConfig,
                          GptOssConfig, GptOssForCausalLM,
                          Glm4MoeForCausalLM, MixtralConfig, MixtralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)

NUM_DECODE_STEPS = 32
PROMPT_LENGTHS = (5, 17, 1, 40)
TIE_EPS = 1e-4          # greedy top-1/top-2 logit gap must exceed this
ROUTER_EPS = 1e-4       # k-th/(k+1)-th router logit gap must exceed this
MAX_PROMPT_ATTEMPTS = 50
# Spread of the randomised e_score_correction_bias (transformers initialises it to 0): the
# softmax scores it is added to are O(1/E), so this moves some choices (asserted per case).
CORRECTION_BIAS_SPREAD = 0.1

# Per family: the transformers classes, the config fields every case shares,
# the router and sparse-block module names (router margins, MoE layer list; None
# for a dense family), and a weight that exists only in the published
# per-expert layout (None: no experts). Optional: `choice_scores` (router module,
# its logits -> the scores top-k picks from, and the same without the score-correction
# bias; default: the logits) and `fp32_keys` (name fragments of tensors transformers
# keeps in float32 in a bfloat16 checkpoint).
FAMILIES = {
    "qwen3_moe": dict(
        config=Qwen3MoeConfig, model=Qwen3MoeForCausalLM,
        common=dict(hidden_act="silu", attention_bias=False, rope_scaling=None,
                    use_sliding_window=False, rms_norm_eps=1e-6, max_position_embeddings=256,
                    output_router_logits=False),
        router="Qwen3MoeTopKRouter", moe_block="Qwen3MoeSparseMoeBlock",
        per_expert_key=".experts.0.gate_proj.weight",
        checked=("num_experts", "num_experts_per_tok", "norm_topk_prob", "decoder_sparse_step",
                 "mlp_only_layers"),
    ),
    "qwen3": dict(
        config=Qwen3Config, model=Qwen3ForCausalLM,
        common=dict(hidden_act="silu", attention_bias=False, rope_scaling=None,
                    use_sliding_window=False, rms_norm_eps=1e-6, max_position_embeddings=256),
        router=None, moe_block=None, per_expert_key=None, checked=(),
    ),
    "mixtral": dict(
        config=MixtralConfig, model=MixtralForCausalLM,
        common=dict(hidden_act="silu", rope_scaling=None, sliding_window=None, rms_norm_eps=1e-5,
                    max_position_embeddings=256, output_router_logits=False,
                    router_jitter_noise=0.0),
        router="MixtralTopKRouter", moe_block="MixtralSparseMoeBlock",
        per_expert_key=".block_sparse_moe.experts.0.w1.weight",
        checked=("num_local_experts", "num_experts_per_tok"),
    ),
    # Qwen2 has no head_dim or attention_bias field: head_dim = hidden_size /
    # num_attention_heads, q/k/v always carry biases.
    "qwen2": dict(
        config=Qwen2Config, model=Qwen2ForCausalLM,
        common=dict(hidden_act="silu", rope_scaling=None, use_sliding_window=False,
                    rms_norm_eps=1e-6, max_position_embeddings=256),
        router=None, moe_block=None, per_expert_key=None, checked=(),
    ),
    # Ernie 4.5 MoE: the choice is top-k of softmax + moe_statics.e_score_correction_bias, the
    # weights the unbiased softmax renormalised by clamp(sum, moe_norm_min); interleaved RoPE;
    # use_bias puts biases on q/k/v/o, the dense and shared-expert MLPs and lm_head.
    "ernie4_5_moe": dict(
        config=Ernie4_5_MoeConfig, model=Ernie4_5_MoeForCausalLM,
        common=dict(hidden_act="silu", rms_norm_eps=1e-5, max_position_embeddings=256,
                    output_router_logits=False),
        router="Ernie4_5_MoeTopKRouter", moe_block="Ernie4_5_MoeSparseMoeBlock",
        per_expert_key=".mlp.experts.0.gate_proj.weight",
        checked=("moe_num_experts", "moe_k", "moe_intermediate_size", "moe_num_shared_experts",
                 "moe_layer_start_index", "moe_layer_end_index", "moe_layer_interval",
                 "moe_norm_min", "use_bias"),
        choice_scores=lambda mod, logits: (
            torch.softmax(logits, dim=-1) + mod.moe_statics.e_score_correction_bias.squeeze(0),
            torch.softmax(logits, dim=-1)),
        fp32_keys=(".mlp.gate.weight", "e_score_correction_bias"),
    ),
    # Qwen2-MoE: Qwen3-MoE's layer rule and router, q/k/v biases under qkv_bias, no
    # q/k norm or head_dim field, and a shared expert under a sigmoid gate
    # (shared_gate: the gate's module name, whose sigmoid range is recorded).
    "qwen2_moe": dict(
        config=Qwen2MoeConfig, model=Qwen2MoeForCausalLM,
        common=dict(hidden_act="silu", rope_scaling=None, use_sliding_window=False,
                    rms_norm_eps=1e-6, max_position_embeddings=256, output_router_logits=False),
        router="Qwen2MoeTopKRouter", moe_block="Qwen2MoeSparseMoeBlock",
        per_expert_key=".experts.0.gate_proj.weight", shared_gate="shared_expert_gate",
        checked=("num_experts", "num_experts_per_tok", "norm_topk_prob", "decoder_sparse_step",
                 "mlp_only_layers", "shared_expert_intermediate_size", "qkv_bias"),
    ),
    # GLM4-MoE: sigmoid router with e_score_correction_bias (a buffer, randomised below),
    # group-limited top-k, routed scaling, a shared expert, first_k_dense_replace dense layers,
    # partial rotary, optional q/k/v bias and q/k norm. The router weight and the bias stay f32
    # in bf16 checkpoints (_keep_in_fp32_modules_strict).
    "glm4_moe": dict(
        config=Glm4MoeConfig, model=Glm4MoeForCausalLM,
        common=dict(hidden_act="silu", rms_norm_eps=1e-5, max_position_embeddings=256,
                    output_router_logits=False),
        router="Glm4MoeTopkRouter", moe_block="Glm4MoeMoE",
        per_expert_key=".mlp.experts.0.gate_proj.weight",
        checked=("n_routed_experts", "num_experts_per_tok", "n_shared_experts", "n_group",
                 "topk_group", "first_k_dense_replace", "norm_topk_prob", "use_qk_norm",
                 "attention_bias", "routed_scaling_factor"),
        # Stored f32 after the cast to the case's dtype (so bf16-rounded values in f32), as the
        # glm4_moe_bf16 golden was made; fp32_keys keeps the unrounded f32 values instead.
        fp32_keys_rounded=("mlp.gate.weight", "mlp.gate.e_score_correction_bias"),
    ),
    # DeepSeek-V3: GLM4-MoE's router (DeepseekV3TopkRouter, the same rule) and shared experts
    # with multi-head latent attention (q_lora_rank or a plain q_proj, the kv_lora_rank latent
    # and a shared rope key, rope_interleave).
    "deepseek_v3": dict(
        config=DeepseekV3Config, model=DeepseekV3ForCausalLM,
        common=dict(hidden_act="silu", rms_norm_eps=1e-6, max_position_embeddings=256,
                    output_router_logits=False),
        router="DeepseekV3TopkRouter", moe_block="DeepseekV3MoE",
        per_expert_key=".mlp.experts.0.gate_proj.weight",
        checked=("n_routed_experts", "num_experts_per_tok", "n_shared_experts", "n_group",
                 "topk_group", "first_k_dense_replace", "norm_topk_prob", "attention_bias",
                 "routed_scaling_factor", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                 "qk_rope_head_dim", "v_head_dim", "rope_interleave"),
        fp32_keys_rounded=("mlp.gate.weight", "mlp.gate.e_score_correction_bias"),
    ),
    # GPT-OSS: attention sinks, q/k/v/o biases, layer_types' sliding windows, a router with a
    # bias, clamped SwiGLU experts with biases over fused [in, out] weights (interleaved gate/up
    # columns). No per-expert layout.
    "gpt_oss": dict(
        config=GptOssConfig, model=GptOssForCausalLM,
        common=dict(rms_norm_eps=1e-5, max_position_embeddings=256, output_router_logits=False),
        router="GptOssTopKRouter", moe_block="GptOssMLP",
        per_expert_key=None,
        checked=("num_local_experts", "num_experts_per_tok", "sliding_window", "layer_types",
                 "attention_bias", "swiglu_limit"),
    ),
}

CASES = {
    "odd_norm_topk": dict(
        family="qwen3_moe",
        seed=1001,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=211, hidden_size=72, intermediate_size=96, moe_intermediate_size=40,
            num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1, head_dim=24,
            num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, mlp_only_layers=[1],
            decoder_sparse_step=1, tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    "odd_no_norm_tied": dict(
        # Small random tied 2-layer models tend to fall into 1-2 token greedy
        # cycles; this seed was picked for a less repetitive greedy continuation.
        family="qwen3_moe",
        seed=2011,
        dtype="float32",
        layout="per_expert",
        # config.json rewritten with the key names of published Qwen3-MoE
        # checkpoints (num_experts, rope_theta, rope_scaling, torch_dtype).
        config_style="published",
        config=dict(
            vocab_size=197, hidden_size=72, intermediate_size=80, moe_intermediate_size=40,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=18,
            num_experts=6, num_experts_per_tok=3, norm_topk_prob=False, mlp_only_layers=[],
            decoder_sparse_step=1, tie_word_embeddings=True, rope_theta=1000000.0,
        ),
    ),
    "sparse_step_bf16": dict(
        family="qwen3_moe",
        seed=1003,
        dtype="bfloat16",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, mlp_only_layers=[],
            decoder_sparse_step=2, tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # Same architecture as odd_norm_topk (other seed), model.safetensors
    # rewritten in transformers' fused in-memory expert layout:
    #   model.layers.N.mlp.experts.gate_up_proj [E, 2*I, H] (rows [0, I) = gate, [I, 2I) = up)
    #   model.layers.N.mlp.experts.down_proj    [E, H, I]
    "odd_norm_topk_fused": dict(
        family="qwen3_moe",
        seed=1004,
        dtype="float32",
        layout="fused",
        config_style="transformers",
        config=dict(
            vocab_size=211, hidden_size=72, intermediate_size=96, moe_intermediate_size=40,
            num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1, head_dim=24,
            num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, mlp_only_layers=[1],
            decoder_sparse_step=1, tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # Qwen3 dense (Qwen3ForCausalLM): q/k norm, gated MLP in every layer.
    "qwen3_dense_untied": dict(
        family="qwen3",
        seed=3001,
        dtype="float32",
        layout="dense",
        config_style="transformers",
        config=dict(
            vocab_size=223, hidden_size=80, intermediate_size=136, num_hidden_layers=3,
            num_attention_heads=5, num_key_value_heads=1, head_dim=16,
            tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    "qwen3_dense_tied_bf16": dict(
        family="qwen3",
        seed=3002,
        dtype="bfloat16",
        layout="dense",
        config_style="transformers",
        config=dict(
            vocab_size=181, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=14,
            tie_word_embeddings=True, rope_theta=1000000.0,
        ),
    ),
    # Scaled RoPE on dense Qwen3: YaRN (factor 4 over an original context of 64: pairs
    # 0..3 of 8 on the ramp, the rest interpolated, cos/sin times 0.1 ln 4 + 1) and Llama 3.1's
    # wavelength ramp (factor 8, freq factors 1 and 4), both under positions past 64.
    "qwen3_dense_yarn": dict(
        family="qwen3",
        seed=3003,
        dtype="float32",
        layout="dense",
        config_style="transformers",
        config=dict(
            vocab_size=199, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            tie_word_embeddings=False, rope_theta=10000.0,
            rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=64),
        ),
    ),
    "qwen3_dense_llama3": dict(
        family="qwen3",
        seed=3004,
        dtype="float32",
        layout="dense",
        config_style="transformers",
        config=dict(
            vocab_size=199, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            tie_word_embeddings=False, rope_theta=10000.0,
            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                              high_freq_factor=4.0, original_max_position_embeddings=64),
        ),
    ),
    # Mixtral: softmax top-k renormalised over the chosen experts, w1/w2/w3
    # expert names under block_sparse_moe (published layout), no q/k norm.
    "mixtral_top2": dict(
        family="mixtral",
        seed=4001,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=203, hidden_size=72, intermediate_size=56, num_hidden_layers=3,
            num_attention_heads=6, num_key_value_heads=2, head_dim=12,
            num_local_experts=8, num_experts_per_tok=2, tie_word_embeddings=False,
            rope_theta=1000000.0,
        ),
    ),
    # transformers' fused in-memory layout (mlp.gate, mlp.experts.gate_up_proj /
    # down_proj), top-3 of 5, all heads KV heads (MHA).
    "mixtral_top3_fused": dict(
        family="mixtral",
        seed=4002,
        dtype="float32",
        layout="fused",
        config_style="transformers",
        config=dict(
            vocab_size=197, hidden_size=60, intermediate_size=44, num_hidden_layers=2,
            num_attention_heads=3, num_key_value_heads=3, head_dim=20,
            num_local_experts=5, num_experts_per_tok=3, tie_word_embeddings=False,
            rope_theta=10000.0,
        ),
    ),
    # Qwen2: q/k/v projection biases, no q/k norm, gated MLP in every layer.
    "qwen2_untied": dict(
        family="qwen2",
        seed=5001,
        dtype="float32",
        layout="dense",
        config_style="transformers",
        config=dict(
            vocab_size=227, hidden_size=84, intermediate_size=124, num_hidden_layers=3,
            num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=False,
            rope_theta=1000000.0,
        ),
    ),
    "qwen2_tied_bf16": dict(
        family="qwen2",
        seed=5002,
        dtype="bfloat16",
        layout="dense",
        config_style="transformers",
        config=dict(
            vocab_size=193, hidden_size=64, intermediate_size=100, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True,
            rope_theta=10000.0,
        ),
    ),
    # Ernie 4.5 MoE: MoE layers 1 and 3 of 4 (interval 2), two shared experts (one MLP of
    # 2 * moe_intermediate_size), use_bias, untied; moe_norm_min 0.6 so the clamp is active
    # (the chosen weights' sum is often below it).
    "ernie_moe_shared2_bias": dict(
        family="ernie4_5_moe",
        seed=6001,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=211, hidden_size=72, intermediate_size=88, moe_intermediate_size=20,
            num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2, head_dim=12,
            moe_num_experts=7, moe_k=3, moe_num_shared_experts=2, moe_layer_start_index=1,
            moe_layer_end_index=-1, moe_layer_interval=2, moe_norm_min=0.6, use_bias=True,
            tie_word_embeddings=False, rope_theta=500000.0,
        ),
    ),
    # Every layer MoE (start index 0, interval 1), no shared expert, no bias, tied; config.json
    # in the published key style (rope_theta, moe_layer_end_index -1, torch_dtype).
    "ernie_moe_noshared_tied": dict(
        family="ernie4_5_moe",
        seed=6002,
        dtype="float32",
        layout="per_expert",
        config_style="published",
        config=dict(
            vocab_size=199, hidden_size=64, intermediate_size=96, moe_intermediate_size=24,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
            moe_num_experts=6, moe_k=2, moe_num_shared_experts=0, moe_layer_start_index=0,
            moe_layer_end_index=-1, moe_layer_interval=1, use_bias=False,
            tie_word_embeddings=True, rope_theta=10000.0,
        ),
    ),
    # bfloat16 with the router and correction bias in float32 (as published), use_bias with
    # tied embeddings (lm_head.bias stays its own), one shared expert, MoE layers 1-2 of 4
    # (moe_layer_end_index 2: layer 3 is dense again).
    "ernie_moe_bf16": dict(
        family="ernie4_5_moe",
        seed=6003,
        dtype="bfloat16",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=80, moe_intermediate_size=32,
            num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            moe_num_experts=8, moe_k=2, moe_num_shared_experts=1, moe_layer_start_index=1,
            moe_layer_end_index=2, moe_layer_interval=1, use_bias=True,
            tie_word_embeddings=True, rope_theta=10000.0,
        ),
    ),
    # transformers' fused in-memory layout: mlp.experts.gate_up_proj / down_proj and the
    # correction bias under the router (mlp.gate.moe_statics.e_score_correction_bias).
    "ernie_moe_fused": dict(
        family="ernie4_5_moe",
        seed=6004,
        dtype="float32",
        layout="fused",
        config_style="transformers",
        config=dict(
            vocab_size=181, hidden_size=60, intermediate_size=76, moe_intermediate_size=28,
            num_hidden_layers=3, num_attention_heads=5, num_key_value_heads=5, head_dim=12,
            moe_num_experts=5, moe_k=2, moe_num_shared_experts=1, moe_layer_start_index=1,
            moe_layer_end_index=-1, moe_layer_interval=1, use_bias=False,
            tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # Qwen2-MoE: MoE in layers 1 and 5 only (decoder_sparse_step 2, layer 3 in
    # mlp_only_layers), top-3 of 7 not renormalised, odd shared-expert size, q/k/v biases.
    "qwen2_moe_sparse2": dict(
        family="qwen2_moe",
        seed=6001,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=181, hidden_size=56, intermediate_size=76, moe_intermediate_size=26,
            shared_expert_intermediate_size=45, num_hidden_layers=6, num_attention_heads=4,
            num_key_value_heads=2, num_experts=7, num_experts_per_tok=3, norm_topk_prob=False,
            decoder_sparse_step=2, mlp_only_layers=[3], qkv_bias=True,
            tie_word_embeddings=False, rope_theta=1000000.0,
        ),
    ),
    # Renormalised top-2 of 5, no attention biases, tied embeddings, MQA. Seed
    # picked (of 6002..6042) for the least repetitive greedy continuations.
    "qwen2_moe_norm_nobias": dict(
        family="qwen2_moe",
        seed=6012,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=193, hidden_size=60, intermediate_size=80, moe_intermediate_size=28,
            shared_expert_intermediate_size=52, num_hidden_layers=3, num_attention_heads=3,
            num_key_value_heads=1, num_experts=5, num_experts_per_tok=2, norm_topk_prob=True,
            decoder_sparse_step=1, mlp_only_layers=[], qkv_bias=False,
            tie_word_embeddings=True, rope_theta=10000.0,
        ),
    ),
    # transformers' fused in-memory expert layout (mlp.experts.gate_up_proj /
    # down_proj), top-2 of 4, a dense layer via mlp_only_layers.
    "qwen2_moe_fused": dict(
        family="qwen2_moe",
        seed=6004,
        dtype="float32",
        layout="fused",
        config_style="transformers",
        config=dict(
            vocab_size=187, hidden_size=52, intermediate_size=68, moe_intermediate_size=22,
            shared_expert_intermediate_size=33, num_hidden_layers=3, num_attention_heads=2,
            num_key_value_heads=1, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
            decoder_sparse_step=1, mlp_only_layers=[1], qkv_bias=True,
            tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    "qwen2_moe_bf16": dict(
        family="qwen2_moe",
        seed=6003,
        dtype="bfloat16",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
            shared_expert_intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, num_experts=6, num_experts_per_tok=2, norm_topk_prob=True,
            decoder_sparse_step=1, mlp_only_layers=[], qkv_bias=True,
            tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    "mixtral_bf16": dict(
        family="mixtral",
        seed=4003,
        dtype="bfloat16",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False,
            rope_theta=10000.0,
        ),
    ),
    # GLM4-MoE, one group: partial rotary 0.5, q/k norm, no attention bias, layer 0 dense.
    "glm4_moe_g1": dict(
        family="glm4_moe",
        seed=6001,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=211, hidden_size=72, intermediate_size=96, moe_intermediate_size=40,
            num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1, head_dim=24,
            n_routed_experts=6, num_experts_per_tok=3, n_shared_experts=1, n_group=1,
            topk_group=1, first_k_dense_replace=1, routed_scaling_factor=1.0,
            norm_topk_prob=True, use_qk_norm=True, attention_bias=False,
            partial_rotary_factor=0.5, tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # 16 experts in 4 groups keeping 2, routed scaling 2.5 without renormalisation, two shared
    # experts, q/k/v bias, full rotary, every layer MoE.
    "glm4_moe_g4": dict(
        family="glm4_moe",
        seed=6002,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=203, hidden_size=64, intermediate_size=80, moe_intermediate_size=24,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            n_routed_experts=16, num_experts_per_tok=3, n_shared_experts=2, n_group=4,
            topk_group=2, first_k_dense_replace=0, routed_scaling_factor=2.5,
            norm_topk_prob=False, use_qk_norm=False, attention_bias=True,
            partial_rotary_factor=1.0, tie_word_embeddings=False, rope_theta=1000000.0,
        ),
    ),
    "glm4_moe_bf16": dict(
        family="glm4_moe",
        seed=6003,
        dtype="bfloat16",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=2,
            topk_group=1, first_k_dense_replace=1, routed_scaling_factor=1.5,
            norm_topk_prob=True, use_qk_norm=False, attention_bias=True,
            partial_rotary_factor=0.5, tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # GPT-OSS, f32: window 4 on layers 0 and 2 (transformers' default pattern), full on 1, YaRN
    # factor 4 over an original context of 16 (beta 32 / 1, no truncation, as gpt-oss-20b).
    "gpt_oss_yarn": dict(
        family="gpt_oss",
        seed=8001,
        dtype="float32",
        layout="fused",
        config_style="transformers",
        config=dict(
            vocab_size=211, hidden_size=64, intermediate_size=19, num_hidden_layers=3,
            num_attention_heads=3, num_key_value_heads=1, head_dim=16, num_local_experts=6,
            num_experts_per_tok=2, sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            attention_bias=True, swiglu_limit=7.0, tie_word_embeddings=False, rope_theta=150000.0,
            rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=4.0,
                                 beta_fast=32.0, beta_slow=1.0, truncate=False,
                                 original_max_position_embeddings=16),
        ),
    ),
    # GPT-OSS, bf16: window 7 on layers 1 and 2, full on 0 and 3, plain RoPE, a tighter clamp.
    "gpt_oss_bf16": dict(
        family="gpt_oss",
        seed=8003,
        dtype="bfloat16",
        layout="fused",
        config_style="transformers",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=32, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=8,
            num_experts_per_tok=3, sliding_window=7,
            layer_types=["full_attention", "sliding_attention", "sliding_attention",
                         "full_attention"],
            attention_bias=True, swiglu_limit=4.0, tie_word_embeddings=False, rope_theta=10000.0,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        ),
    ),
    # GPT-OSS with MXFP4 experts, the published format (*_blocks / *_scales, e8m0 per 32
    # inputs), everything else f32: windows 5 on layers 0 and 1, full on 2, YaRN factor 8.
    # transformers runs its own dequantization of the blocks (f32). Seeds 8005 and 8010 made
    # models whose routes flip under a bf16 KV cache on kv_dtype_test's prompts (>10% of rows;
    # the dequantized weights as plain f32 experts flip alike, so it is the model, not the
    # MXFP4 kernels); 8011-8016 do not.
    "gpt_oss_mxfp4": dict(
        family="gpt_oss",
        seed=8013,
        dtype="float32",
        layout="fused",
        config_style="transformers",
        mxfp4=True,
        config=dict(
            vocab_size=199, hidden_size=64, intermediate_size=32, num_hidden_layers=3,
            num_attention_heads=3, num_key_value_heads=1, head_dim=16, num_local_experts=5,
            num_experts_per_tok=2, sliding_window=5,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            attention_bias=True, swiglu_limit=6.0, tie_word_embeddings=False, rope_theta=150000.0,
            rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=8.0,
                                 beta_fast=32.0, beta_slow=1.0, truncate=False,
                                 original_max_position_embeddings=16),
        ),
    ),
    # DeepSeek-V3 with q_lora_rank, 16 experts in 4 groups keeping 2, interleaved RoPE,
    # attention biases (q_a_proj, kv_a_proj_with_mqa, o_proj), layer 0 dense.
    "dsv3_lora_g4": dict(
        family="deepseek_v3",
        seed=7001,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=211, hidden_size=64, intermediate_size=96, moe_intermediate_size=24,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=24,
            kv_lora_rank=40, qk_nope_head_dim=12, qk_rope_head_dim=6, v_head_dim=10,
            n_routed_experts=16, num_experts_per_tok=3, n_shared_experts=1, n_group=4,
            topk_group=2, first_k_dense_replace=1, routed_scaling_factor=2.5,
            norm_topk_prob=True, rope_interleave=True, attention_bias=True,
            tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # A plain q_proj (q_lora_rank null), one group, rotate-half RoPE, every layer MoE, two
    # shared experts, no renormalisation.
    "dsv3_plain_g1": dict(
        family="deepseek_v3",
        seed=7002,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=203, hidden_size=48, intermediate_size=64, moe_intermediate_size=20,
            num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=3, q_lora_rank=None,
            kv_lora_rank=20, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12,
            n_routed_experts=6, num_experts_per_tok=2, n_shared_experts=2, n_group=1,
            topk_group=1, first_k_dense_replace=0, routed_scaling_factor=1.5,
            norm_topk_prob=False, rope_interleave=False, attention_bias=False,
            tie_word_embeddings=False, rope_theta=1000000.0,
        ),
    ),
    "dsv3_bf16": dict(
        family="deepseek_v3",
        seed=7003,
        dtype="bfloat16",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=32,
            kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=2,
            topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.5,
            norm_topk_prob=True, rope_interleave=True, attention_bias=False,
            tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # DeepSeek-V3 with YaRN as published (mscale = mscale_all_dim = 1.0: the rope's attention
    # factor is 1, the softmax scale qk_head_dim^-0.5 * (0.1 ln 4 + 1)^2) over an original
    # context of 32, which the prompts plus 32 decode steps pass; interleaved RoPE.
    "dsv3_yarn": dict(
        family="deepseek_v3",
        seed=7004,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=199, hidden_size=64, intermediate_size=96, moe_intermediate_size=24,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=24,
            kv_lora_rank=36, qk_nope_head_dim=12, qk_rope_head_dim=16, v_head_dim=10,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=2,
            topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.5,
            norm_topk_prob=True, rope_interleave=True, attention_bias=False,
            tie_word_embeddings=False, rope_theta=10000.0,
            rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=32,
                              beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=1.0),
        ),
    ),
    # mscale 0.707 against mscale_all_dim 1.0, so the rope's attention factor
    # (0.0707 ln 4 + 1) / (0.1 ln 4 + 1) and the softmax scale's (0.1 ln 4 + 1)^2 differ;
    # a plain q_proj (no bias on it) with attention_bias (kv_a_proj_with_mqa and o_proj) and
    # rotate-half RoPE.
    "dsv3_yarn_mscale": dict(
        family="deepseek_v3",
        seed=7005,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        config=dict(
            vocab_size=199, hidden_size=48, intermediate_size=64, moe_intermediate_size=20,
            num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=3, q_lora_rank=None,
            kv_lora_rank=20, qk_nope_head_dim=8, qk_rope_head_dim=12, v_head_dim=12,
            n_routed_experts=6, num_experts_per_tok=2, n_shared_experts=1, n_group=1,
            topk_group=1, first_k_dense_replace=0, routed_scaling_factor=1.5,
            norm_topk_prob=True, rope_interleave=False, attention_bias=True,
            tie_word_embeddings=False, rope_theta=10000.0,
            rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=32,
                              beta_fast=32, beta_slow=1, mscale=0.707, mscale_all_dim=1.0),
        ),
    ),
    # DeepSeek-V3 as the published FP8 checkpoints store it: every linear F8_E4M3 with
    # [16, 32] block scales (q_a/q_b_proj, kv_a_proj_with_mqa, kv_b_proj read by
    # mla_attention, o_proj, the dense MLP, shared and routed experts; not mlp.gate). hidden
    # 72, kv_lora_rank 40, kv_a rows 46, kv_b [66, 40], moe_intermediate 40 leave partial edge
    # blocks. transformers runs the dequantized weights (f32).
    "dsv3_fp8": dict(
        family="deepseek_v3",
        seed=7004,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        fp8_block=[16, 32],
        config=dict(
            vocab_size=199, hidden_size=72, intermediate_size=96, moe_intermediate_size=40,
            num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=3, q_lora_rank=24,
            kv_lora_rank=40, qk_nope_head_dim=12, qk_rope_head_dim=6, v_head_dim=10,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=2,
            topk_group=1, first_k_dense_replace=1, routed_scaling_factor=2.5,
            norm_topk_prob=True, rope_interleave=True, attention_bias=False,
            tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
    # odd_norm_topk's architecture with FP8 block-quantized linears, as DeepSeek-V3 and
    # Qwen3-FP8 checkpoints store them: every attention, dense-MLP and expert projection is
    # F8_E4M3 with an F32 `<name>_scale_inv` per [16, 32] block (amax / 448); hidden 72,
    # moe_intermediate 40 and head_dim 24 leave partial edge blocks. transformers runs the
    # dequantized weights (f32): the golden is against those.
    "qwen3_moe_fp8": dict(
        family="qwen3_moe",
        seed=7001,
        dtype="float32",
        layout="per_expert",
        config_style="transformers",
        fp8_block=[16, 32],
        config=dict(
            vocab_size=211, hidden_size=72, intermediate_size=96, moe_intermediate_size=40,
            num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1, head_dim=24,
            num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, mlp_only_layers=[1],
            decoder_sparse_step=1, tie_word_embeddings=False, rope_theta=10000.0,
        ),
    ),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def log(msg):
    print(msg, flush=True)


def save_safetensors(tensors, path, metadata):
    """safetensors.torch.save_file with a canonical header.

    The safetensors library stores __metadata__ in a hash map, so key order (and
    thus the file bytes) varies between runs; rewrite the JSON header with sorted
    keys so that reruns are byte-identical.
    """
    save_file(tensors, path, metadata=metadata)
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    check = load_file(path)
    assert set(check) == set(tensors)
    for k, v in tensors.items():
        a, b = check[k], v
        if v.dtype == torch.float8_e4m3fn:  # compared as bytes
            a, b = a.view(torch.uint8), b.view(torch.uint8)
        assert check[k].dtype == v.dtype and torch.equal(a, b), k
    with safe_open(path, "pt") as f:
        assert f.metadata() == metadata


def make_config(case):
    family = FAMILIES[case["family"]]
    kw = dict(family["common"])
    kw.update(case["config"])
    return family["config"](**kw, attn_implementation="eager", experts_implementation="eager")


@torch.no_grad()
def perturb(model, seed):
    """Re-initialise every parameter so the model is far from HF's std-0.02 init.

    linear / expert / router weights: N(0, 1/fan_in) (fan_in = last dim),
    lm_head (untied): N(0, 4/fan_in), embeddings: N(0, 1), norm weights: 1 + 0.1*N(0, 1),
    biases (which transformers initialises to 0): 0.1*N(0, 1), score-correction biases
    (also 0): CORRECTION_BIAS_SPREAD*N(0, 1).
    Tied embeddings use N(0, 1/hidden) instead: with a larger std the token's own
    embedding (carried by the residual stream) dominates the tied logits and greedy
    decoding just repeats the last prompt token.
    """
    gen = torch.Generator().manual_seed(seed)
    tied = model.config.tie_word_embeddings
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if tied and name == "lm_head.weight":
            continue  # shares storage with the embedding
        if name.endswith(".bias") or name.endswith("_proj_bias"):
            new = 0.1 * torch.randn(p.shape, generator=gen)
        elif name.endswith("e_score_correction_bias"):
            new = CORRECTION_BIAS_SPREAD * torch.randn(p.shape, generator=gen)
        elif p.dim() == 1:
            new = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
        elif name == "model.embed_tokens.weight" and not tied:
            new = torch.randn(p.shape, generator=gen)
        else:
            std = 1.0 / math.sqrt(p.shape[-1])
            if name.endswith(("experts.gate_up_proj", "experts.down_proj")) and \
                    model.config.model_type == "gpt_oss":
                std = 1.0 / math.sqrt(p.shape[-2])  # GPT-OSS's experts are [E, in, out]
            if name == "lm_head.weight":
                std *= 2.0
            new = std * torch.randn(p.shape, generator=gen)
        p.copy_(new.to(p.dtype))
    # Buffers transformers initialises to a constant: GLM4-MoE's e_score_correction_bias (zeros).
    # Its spread (0.3 N(0, 1)) is about that of the sigmoid scores, so it moves choices; make_case
    # checks that it does.
    for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
        if name.endswith("e_score_correction_bias"):
            b.copy_((0.3 * torch.randn(b.shape, generator=gen)).to(b.dtype))


def fp8_block_quantize(w, block):
    """[N, K] f32 -> (e4m3 [N, K], f32 scale_inv [ceil(N/B0), ceil(K/B1)], dequantized f32):
    each block's scale is its amax / 448 (1 for an all-zero block), the element
    round-to-nearest-even(w / scale) in e4m3, and the dequantized value e4m3 * scale."""
    br, bc = block
    n, k = w.shape
    sr, sc = -(-n // br), -(-k // bc)
    padded = torch.zeros(sr * br, sc * bc, dtype=torch.float32)
    padded[:n, :k] = w
    amax = padded.view(sr, br, sc, bc).abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax)).float().contiguous()
    full = scale.repeat_interleave(br, 0).repeat_interleave(bc, 1)[:n, :k]
    q = (w / full).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).contiguous()
    return q, scale, q.float() * full


@torch.no_grad()
def quantize_fp8_linears(model, block):
    """Replaces every attention (DeepSeek-V3: q_a/q_b/q, kv_a_proj_with_mqa, kv_b, o),
    dense-MLP, shared-expert and expert projection of `model` by its FP8 block dequantization
    (not the router gate, norms, embeddings or lm_head); returns {published per-expert checkpoint name: (e4m3, scale_inv, deq)}.
    transformers' fused experts are quantized per published tensor: gate rows [0, I) and up
    rows [I, 2I) of gate_up_proj separately, as experts.E.{gate,up}_proj.weight store them."""
    out = {}
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("experts.gate_up_proj"):
            prefix = name[:-len("gate_up_proj")]
            inter = p.shape[1] // 2
            for e in range(p.shape[0]):
                for rows, proj in ((slice(0, inter), "gate_proj"), (slice(inter, 2 * inter), "up_proj")):
                    q, s, deq = fp8_block_quantize(p[e, rows].float(), block)
                    p[e, rows] = deq
                    out[f"{prefix}{e}.{proj}.weight"] = (q, s, deq)
        elif name.endswith("experts.down_proj"):
            prefix = name[:-len("down_proj")]
            for e in range(p.shape[0]):
                q, s, deq = fp8_block_quantize(p[e].float(), block)
                p[e] = deq
                out[f"{prefix}{e}.down_proj.weight"] = (q, s, deq)
        elif (name.endswith("_proj.weight") or name.endswith("_proj_with_mqa.weight")) and p.dim() == 2:
            q, s, deq = fp8_block_quantize(p.float(), block)
            p.copy_(deq)
            out[name] = (q, s, deq)
    return out


def rewrite_quantized_checkpoint(case_dir, replacements, quantization_config):
    """Replaces tensors of model.safetensors, {name: (dequantized, {stored name: tensor})}
    (checking the f32 file held exactly each one's dequantization), and adds
    `quantization_config` to config.json."""
    path = os.path.join(case_dir, "model.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    sd = load_file(path)
    for k, (deq, stored) in replacements.items():
        assert torch.equal(sd[k], deq), f"stored weight is not its dequantization: {k}"
        del sd[k]
        sd.update(stored)
    os.remove(path)
    save_safetensors(sd, path, meta)
    cfg_path = os.path.join(case_dir, "config.json")
    with open(cfg_path) as f:
        d = json.load(f)
    d["quantization_config"] = quantization_config
    with open(cfg_path, "w") as f:
        json.dump(dict(sorted(d.items())), f, indent=2, sort_keys=True)
        f.write("\n")


def write_fp8_checkpoint(case_dir, quantized, block):
    """F8_E4M3 weights and F32 `<name>_scale_inv` for every quantized linear, and the fp8
    quantization_config."""
    rewrite_quantized_checkpoint(
        case_dir, {k: (deq, {k: q, k + "_scale_inv": s}) for k, (q, s, deq) in quantized.items()},
        {"activation_scheme": "dynamic", "fmt": "e4m3", "modules_to_not_convert": ["lm_head"],
         "quant_method": "fp8", "weight_block_size": list(block)})


FP4_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                         -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_quantize(w):
    """[E, N, K] f32 ([out, in], K % 32 == 0) -> (blocks U8 [E, N, K/32, 16], scales U8
    [E, N, K/32]): per block of 32 inputs the e8m0 scale 2^s with the smallest s that puts
    amax / 2^s within FP4's 6, each element the nearest FP4 e2m1 code of w / 2^s (the even
    element in a byte's low nibble)."""
    e, n, k = w.shape
    blk = w.reshape(e, n, k // 32, 32)
    amax = blk.abs().amax(dim=-1)
    exp = torch.where(amax > 0, torch.ceil(torch.log2(amax / 6.0)), torch.zeros_like(amax))
    exp = exp.clamp(-127, 127)
    x = blk / torch.pow(2.0, exp).unsqueeze(-1)
    codes = (x.unsqueeze(-1) - FP4_E2M1).abs().argmin(dim=-1).to(torch.uint8)
    codes = codes.reshape(e, n, k // 32, 16, 2)
    blocks = (codes[..., 0] | (codes[..., 1] << 4)).contiguous()
    scales = (exp + 127).to(torch.uint8).contiguous()
    return blocks, scales


@torch.no_grad()
def quantize_mxfp4_experts(model):
    """Replaces every GPT-OSS expert stack ([E, in, out] gate_up_proj / down_proj) by
    transformers' own decode of its MXFP4 quantization (checked against a direct decode);
    returns {checkpoint name: (blocks, scales, dequantized [E, in, out])}."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    out = {}
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if not name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            continue
        blocks, scales = mxfp4_quantize(p.detach().float().transpose(1, 2).contiguous())
        deq = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)  # [E, in, out]
        lo, hi = FP4_E2M1[(blocks & 0xF).long()], FP4_E2M1[(blocks >> 4).long()]
        direct = torch.stack([lo, hi], dim=-1).reshape(*scales.shape, 32)
        direct = (direct * torch.pow(2.0, scales.float() - 127).unsqueeze(-1))
        direct = direct.reshape(p.shape[0], p.shape[2], p.shape[1]).transpose(1, 2)
        assert torch.equal(deq, direct), f"MXFP4 decode disagrees with transformers': {name}"
        assert (deq - p.float()).abs().max() <= p.abs().max() / 4 + 1e-6, name
        p.copy_(deq)
        out[name] = (blocks, scales, deq)
    return out


def write_mxfp4_checkpoint(case_dir, quantized):
    """Each quantized expert stack as its `_blocks` and `_scales`, and GPT-OSS's published
    quantization_config."""
    rewrite_quantized_checkpoint(
        case_dir,
        {k: (deq, {k + "_blocks": blocks, k + "_scales": scales})
         for k, (blocks, scales, deq) in quantized.items()},
        {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                    "model.embed_tokens", "lm_head"],
         "quant_method": "mxfp4"})


def fused_state_dict(model):
    sd = {}
    for k, v in model.state_dict().items():
        if model.config.tie_word_embeddings and k == "lm_head.weight":
            continue
        sd[k] = v.detach().clone().contiguous()
    return sd


def write_published_config(case_dir, cfg):
    """Rewrite config.json with the key names used by published Qwen3-MoE (or Ernie 4.5)
    checkpoints."""
    path = os.path.join(case_dir, "config.json")
    with open(path) as f:
        d = json.load(f)
    rope = d.pop("rope_parameters")
    assert rope.get("rope_type", "default") == "default", rope
    if d["model_type"] == "ernie4_5_moe":
        # baidu/ERNIE-4.5-*-PT: rope_theta, the end index as -1 (the last layer), torch_dtype.
        assert d["moe_layer_end_index"] == d["num_hidden_layers"] - 1, d
        d["moe_layer_end_index"] = -1
        d["rope_theta"] = float(rope["rope_theta"])
        d["torch_dtype"] = d.pop("dtype")
        with open(path, "w") as f:
            json.dump(dict(sorted(d.items())), f, indent=2, sort_keys=True)
            f.write("\n")
        return
    d["num_experts"] = d.pop("num_local_experts")
    d["rope_theta"] = float(rope["rope_theta"])
    d["rope_scaling"] = None
    d["torch_dtype"] = d.pop("dtype")
    d["sliding_window"] = None
    d = dict(sorted(d.items()))
    with open(path, "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
        f.write("\n")


def load_reference(case_dir, family):
    model = family["model"].from_pretrained(
        case_dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
    model.eval()
    assert model.config._attn_implementation == "eager"
    assert model.config._experts_implementation == "eager"
    return model


class RouterMargins:
    """Forward hooks on the routers: smallest gap between k-th and (k+1)-th choice score (the
    router logits unless the family says otherwise), and how many token rows choose other
    experts than they would without the score-correction bias."""

    def __init__(self, model, router, choice_scores=None):
        self.top_k = getattr(model.config, "num_experts_per_tok", 0)
        self.choice_scores = choice_scores
        self.min_gap = math.inf
        self.bias_changed_rows = 0
        self.chosen = []  # GLM4-MoE: each router call's chosen expert ids
        self.handles = []
        if router is None:  # a dense family: no routing to tie
            return
        for mod in model.modules():
            if type(mod).__name__ == router:
                self.handles.append(mod.register_forward_hook(self.hook))
        assert self.handles, "no routers found"

    def hook(self, mod, _inp, out):
        logits = out[0].float()
        if hasattr(mod, "e_score_correction_bias"):  # GLM4-MoE: the choice is on biased scores
            self.min_gap = min(self.min_gap, glm_choice_gap(mod, logits))
            self.chosen.append(out[2].clone())
            return
        scores = logits
        if self.choice_scores is not None:
            scores, unbiased = self.choice_scores(mod, logits)
            chosen = torch.topk(scores, self.top_k, dim=-1).indices.sort(dim=-1).values
            plain = torch.topk(unbiased, self.top_k, dim=-1).indices.sort(dim=-1).values
            self.bias_changed_rows += int((chosen != plain).any(dim=-1).sum())
        top = torch.topk(scores, self.top_k + 1, dim=-1).values
        gap = (top[:, self.top_k - 1] - top[:, self.top_k]).min().item()
        self.min_gap = min(self.min_gap, gap)

    def reset(self):
        self.min_gap = math.inf
        self.bias_changed_rows = 0
        self.chosen = []


class GateRange:
    """Forward hooks on the shared-expert gates: the range of sigmoid(x @ gate^T) seen.

    A gate that is near-constant over the tokens (all about 0 or 1) could hide a bug
    in how the engine applies it; the range is recorded so that the README can show it is not.
    """

    def __init__(self, model, module_name):
        self.lo, self.hi = math.inf, -math.inf
        if module_name is None:
            return
        handles = [m.register_forward_hook(self.hook) for n, m in model.named_modules()
                   if n.endswith("." + module_name)]
        assert handles, "no shared-expert gates found"

    def hook(self, _mod, _inp, out):
        g = torch.sigmoid(out.float())
        self.lo = min(self.lo, g.min().item())
        self.hi = max(self.hi, g.max().item())


def glm_choice_gap(router, logits):
    """Glm4MoeTopkRouter's choice margins: the topk_group-th vs the next group score, and the
    k-th vs the (k+1)-th choice score among the kept groups' experts (inf when there is none)."""
    choice = logits.sigmoid() + router.e_score_correction_bias.float()
    groups, k = router.num_group, router.top_k
    grouped = choice.view(-1, groups, router.num_experts // groups)
    group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)
    gap = math.inf
    if router.topk_group < groups:
        g = torch.topk(group_scores, router.topk_group + 1, dim=-1).values
        gap = (g[:, -2] - g[:, -1]).min().item()
    kept = torch.zeros_like(group_scores).scatter_(
        1, torch.topk(group_scores, router.topk_group, dim=-1)[1], 1)
    mask = kept.unsqueeze(-1).expand_as(grouped).reshape(-1, router.num_experts).bool()
    masked = choice.masked_fill(~mask, float("-inf"))
    top = torch.topk(masked, min(k + 1, router.num_experts), dim=-1).values
    if top.shape[-1] > k:
        diff = top[:, k - 1] - top[:, k]
        gap = min(gap, diff[torch.isfinite(diff)].min().item() if torch.isfinite(diff).any()
                  else math.inf)
    return gap


@torch.no_grad()
def check_bias_moves_a_choice(model, prompts, router):
    """GLM4-MoE: with the correction biases zeroed some chosen expert changes for the golden
    prompts, so a golden cannot pass with the bias ignored. (Ernie's bias sits on its router's
    moe_statics; RouterMargins counts its re-routed rows instead.)"""
    routers = [m for m in model.modules()
               if type(m).__name__ == router and hasattr(m, "e_score_correction_bias")]
    if not routers:
        return None

    def chosen():
        ids = []
        hooks = [r.register_forward_hook(lambda _m, _i, out: ids.append(out[2].clone()))
                 for r in routers]
        for prompt in prompts:
            model(input_ids=prompt.to(torch.long).unsqueeze(0), use_cache=False)
        for h in hooks:
            h.remove()
        return ids

    with_bias = chosen()
    saved = [r.e_score_correction_bias.clone() for r in routers]
    for r in routers:
        r.e_score_correction_bias.zero_()
    without = chosen()
    for r, b in zip(routers, saved):
        r.e_score_correction_bias.copy_(b)
    changed = sum(int((a.sort(dim=-1)[0] != b.sort(dim=-1)[0]).any(dim=-1).sum())
                  for a, b in zip(with_bias, without))
    assert changed > 0, "the correction bias changes no chosen expert for the golden prompts"
    return changed


def top2_margin(row):
    t = torch.topk(row, 2).values
    return (t[0] - t[1]).item()


@torch.no_grad()
def run_sequence(model, prompt):
    """Full-recompute greedy decoding (no KV cache) in float32."""
    ids = prompt.to(torch.long).unsqueeze(0)
    prefill = model(input_ids=ids, use_cache=False).logits[0].float().clone()
    rows = [prefill[-1]]
    generated, decode = [], []
    seq = ids
    for _ in range(NUM_DECODE_STEPS):
        tok = int(torch.argmax(rows[-1]))
        generated.append(tok)
        seq = torch.cat([seq, torch.tensor([[tok]])], dim=1)
        last = model(input_ids=seq, use_cache=False).logits[0, -1].float().clone()
        decode.append(last)
        rows.append(last)
    margin = min(top2_margin(r) for r in rows)
    return prefill, torch.tensor(generated, dtype=torch.int32), torch.stack(decode), margin


@torch.no_grad()
def check_with_kv_cache(model, prompt, generated, decode_logits):
    """Cross-check: incremental decoding with transformers' DynamicCache."""
    from transformers import DynamicCache
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    cache = DynamicCache(config=model.config)
    out = model(input_ids=prompt.to(torch.long).unsqueeze(0), use_cache=True, **{cache_kw: cache})
    max_diff = 0.0
    for j in range(NUM_DECODE_STEPS):
        tok = torch.tensor([[int(generated[j])]])
        out = model(input_ids=tok, use_cache=True, **{cache_kw: cache})
        row = out.logits[0, -1].float()
        max_diff = max(max_diff, (row - decode_logits[j]).abs().max().item())
        if j + 1 < NUM_DECODE_STEPS:
            assert int(torch.argmax(row)) == int(generated[j + 1]), "KV-cache greedy mismatch"
    return max_diff


def make_case(name, case, out_dir, kv_check):
    torch.manual_seed(case["seed"])
    case_dir = os.path.join(out_dir, name)
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)

    family = FAMILIES[case["family"]]
    cfg = make_config(case)
    model = family["model"](cfg).eval()
    perturb(model, case["seed"])
    fp8_block = case.get("fp8_block")
    quantized = quantize_fp8_linears(model, fp8_block) if fp8_block else {}
    mxfp4 = case.get("mxfp4", False)
    mx_quantized = quantize_mxfp4_experts(model) if mxfp4 else {}
    fp32_keys = family.get("fp32_keys", ())
    keep_fp32 = {k: v.detach().clone() for k, v in model.named_parameters()
                 if any(f in k for f in fp32_keys)}
    model = model.to(DTYPES[case["dtype"]])
    with torch.no_grad():  # as transformers' _keep_in_fp32_modules_strict loads them
        for k, p in model.named_parameters():
            if k in keep_fp32:
                p.data = keep_fp32[k]
        for key in family.get("fp32_keys_rounded", ()):
            for k, t in list(model.named_parameters()) + list(model.named_buffers()):
                if k.endswith(key):
                    t.data = t.data.float()
    fp32_keys = fp32_keys + family.get("fp32_keys_rounded", ())
    model.save_pretrained(case_dir, safe_serialization=True)
    expected = {k: v.float() for k, v in fused_state_dict(model).items()}
    del model

    weights_path = os.path.join(case_dir, "model.safetensors")
    if case["layout"] == "fused":
        with safe_open(weights_path, "pt") as f:
            meta = f.metadata()
        sd = {k: v.to(DTYPES[case["dtype"]]).contiguous() for k, v in expected.items()}
        os.remove(weights_path)
        save_safetensors(sd, weights_path, meta)
    if case["config_style"] == "published":
        write_published_config(case_dir, cfg)

    # Describe what landed on disk.
    with safe_open(weights_path, "pt") as f:
        keys = list(f.keys())
        dtypes = {f.get_slice(k).get_dtype() for k in keys if not any(s in k for s in fp32_keys)}
        fp32_dtypes = {f.get_slice(k).get_dtype() for k in keys if any(s in k for s in fp32_keys)}
    assert dtypes == {"F32" if case["dtype"] == "float32" else "BF16"}, dtypes
    assert fp32_dtypes <= {"F32"}, fp32_dtypes
    fused_keys = [k for k in keys if k.endswith("experts.gate_up_proj")]
    per_expert_keys = [k for k in keys if family["per_expert_key"] and family["per_expert_key"] in k]
    if case["layout"] == "fused":
        assert fused_keys and not per_expert_keys, keys
    elif case["layout"] == "per_expert":
        assert per_expert_keys and not fused_keys, keys
    else:
        assert case["layout"] == "dense" and not fused_keys and not per_expert_keys, keys
    assert ("lm_head.weight" in keys) == (not cfg.tie_word_embeddings)

    # Reference: reload from the files as float32.
    model = load_reference(case_dir, family)
    got = fused_state_dict(model)
    assert set(got) == set(expected), set(got) ^ set(expected)
    for k in expected:
        assert torch.equal(got[k], expected[k]), f"reloaded weight differs: {k}"
    for key in ("vocab_size", "hidden_size", "tie_word_embeddings", "head_dim") + family["checked"]:
        # getattr with None: Qwen2 configs have no head_dim.
        want = cfg.num_experts if key == "num_experts" else getattr(cfg, key, None)
        assert getattr(model.config, key, None) == want, key
    assert model.config.rope_parameters["rope_theta"] == case["config"]["rope_theta"]
    moe_layers = [i for i, layer in enumerate(model.model.layers)
                  if type(layer.mlp).__name__ == family["moe_block"]]

    vocab = cfg.vocab_size
    routers = RouterMargins(model, family["router"], family.get("choice_scores"))
    gates = GateRange(model, family.get("shared_gate"))
    tensors, prompt_seeds = {}, []
    min_margin, min_router, max_kv_diff = math.inf, math.inf, 0.0
    bias_changed_rows = 0
    for i, length in enumerate(PROMPT_LENGTHS):
        for attempt in range(MAX_PROMPT_ATTEMPTS):
            pseed = case["seed"] * 1000 + i * 100 + attempt
            gen = torch.Generator().manual_seed(pseed)
            prompt = torch.randint(0, vocab, (length,), generator=gen, dtype=torch.int64)
            routers.reset()
            prefill, generated, decode, margin = run_sequence(model, prompt)
            if margin > TIE_EPS and routers.min_gap > ROUTER_EPS:
                break
            log(f"  {name} seq{i}: prompt seed {pseed} rejected "
                f"(top2 margin {margin:.2e}, router gap {routers.min_gap:.2e})")
        else:
            raise RuntimeError(f"{name} seq{i}: no prompt without near-ties")
        bias_changed_rows += routers.bias_changed_rows
        if kv_check:
            max_kv_diff = max(max_kv_diff, check_with_kv_cache(model, prompt, generated, decode))
        prompt_seeds.append(pseed)
        min_margin = min(min_margin, margin)
        min_router = min(min_router, routers.min_gap)
        assert prefill.shape == (length, vocab) and decode.shape == (NUM_DECODE_STEPS, vocab)
        tensors[f"seq{i}.prompt"] = prompt.to(torch.int32).contiguous()
        tensors[f"seq{i}.prefill_logits"] = prefill.contiguous()
        tensors[f"seq{i}.generated"] = generated.contiguous()
        tensors[f"seq{i}.decode_logits"] = decode.contiguous()

    if family.get("choice_scores") is not None:
        # A bias that moves no choice for these prompts could not catch a bug in its use.
        assert bias_changed_rows > 0, f"{name}: the correction bias changes no expert choice"
    bias_changes = check_bias_moves_a_choice(
        model, [tensors[f"seq{i}.prompt"] for i in range(len(PROMPT_LENGTHS))], family["router"])
    all_logits = torch.cat([tensors[f"seq{i}.prefill_logits"] for i in range(len(PROMPT_LENGTHS))])
    metadata = {
        "case": name,
        "num_sequences": str(len(PROMPT_LENGTHS)),
        "num_decode_steps": str(NUM_DECODE_STEPS),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "min_top2_margin": f"{min_margin:.6g}",
        "min_router_topk_gap": f"{min_router:.6g}",
        "weights_dtype": case["dtype"],
        "expert_layout": case["layout"],
        "config_style": case["config_style"],
        "moe_layers": json.dumps(moe_layers),
        "seed": str(case["seed"]),
        "prompt_seeds": json.dumps(prompt_seeds),
        "prefill_logits_std": f"{all_logits.std().item():.4g}",
        "attn_implementation": "eager",
        "experts_implementation": "eager",
        "decode_mode": "full_recompute",
        **({"correction_bias_changed_choices": str(bias_changes)} if bias_changes is not None
           else {}),
    }
    if family.get("shared_gate"):
        metadata["shared_gate_range"] = f"{gates.lo:.4g} {gates.hi:.4g}"
        assert gates.hi - gates.lo > 0.5, f"shared-expert gate near-constant: {metadata['shared_gate_range']}"
    if fp8_block:
        metadata["quantization"] = f"fp8 e4m3, weight_block_size {fp8_block}, {len(quantized)} linears"
    if mxfp4:
        metadata["quantization"] = (f"mxfp4 experts (e2m1, e8m0 per 32 inputs), "
                                    f"{len(mx_quantized)} expert stacks")
    golden_path = os.path.join(case_dir, "golden.safetensors")
    save_safetensors(tensors, golden_path, metadata)
    if fp8_block:
        del model
        write_fp8_checkpoint(case_dir, quantized, fp8_block)
    if mxfp4:
        del model
        write_mxfp4_checkpoint(case_dir, mx_quantized)
    kv = f", kv-cache max |diff| {max_kv_diff:.2e}" if kv_check else ""
    if family.get("choice_scores") is not None:
        kv += f", rows the correction bias re-routes {bias_changed_rows}"
    if bias_changes is not None:
        kv += f", correction bias moves {bias_changes} token choices"
    gate = f", shared gate range {metadata['shared_gate_range']}" if family.get("shared_gate") else ""
    log(f"{name}: moe layers {moe_layers}, min top2 margin {min_margin:.4g}, "
        f"min router gap {min_router:.4g}, logits std {metadata['prefill_logits_std']}{gate}{kv}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Cases: " + ", ".join(CASES))
    ap.add_argument("--out", default="tests/data/golden", help="output directory (default: %(default)s)")
    ap.add_argument("--case", action="append", choices=sorted(CASES),
                    help="generate only this case (repeatable; default: all)")
    ap.add_argument("--no-kv-check", action="store_true",
                    help="skip the cross-check against KV-cache incremental decoding")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1, for reproducible bytes)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass
    os.makedirs(args.out, exist_ok=True)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for name in args.case or list(CASES):
        make_case(name, CASES[name], args.out, kv_check=not args.no_kv_check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
