#!/usr/bin/env python3
"""Write tests/data/rope/rope_goldens.json: RoPE inverse frequencies and attention factors
computed by transformers' own ROPE_INIT_FUNCTIONS (and the default rope of Qwen3-MoE), for the
C++ RoPE math in frontends/rope.cc to be held to. CI only reads the JSON.

Install the pinned dependencies with tools/requirements-goldens.txt, then:

    python3 tools/make_rope_goldens.py --out tests/data/rope/rope_goldens.json
"""

import argparse
import json

import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeRotaryEmbedding

# name -> (config fields, rope_parameters, seq_len for the init function)
CASES = {
    "default_qwen3": (dict(head_dim=128, max_position_embeddings=40960),
                      dict(rope_type="default", rope_theta=1000000.0), None),
    "default_odd_dim": (dict(head_dim=18, max_position_embeddings=256),
                        dict(rope_type="default", rope_theta=10000.0), None),
    "linear": (dict(head_dim=64, max_position_embeddings=4096),
               dict(rope_type="linear", rope_theta=10000.0, factor=4.0), None),
    "linear_partial": (dict(head_dim=64, max_position_embeddings=4096),
                       dict(rope_type="linear", rope_theta=10000.0, factor=2.0,
                            partial_rotary_factor=0.5), None),
    "dynamic_init": (dict(head_dim=64, max_position_embeddings=2048),
                     dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0), None),
    "dynamic_long": (dict(head_dim=64, max_position_embeddings=2048),
                     dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0), 8192),
    "yarn_qwen": (dict(head_dim=128, max_position_embeddings=131072),
                  dict(rope_type="yarn", rope_theta=1000000.0, factor=4.0,
                       original_max_position_embeddings=32768), None),
    "yarn_deepseek_mscale": (dict(head_dim=64, max_position_embeddings=163840),
                             dict(rope_type="yarn", rope_theta=10000.0, factor=40.0,
                                  original_max_position_embeddings=4096, beta_fast=32,
                                  beta_slow=1, mscale=1.0, mscale_all_dim=1.0), None),
    "yarn_mscale_ratio": (dict(head_dim=64, max_position_embeddings=163840),
                          dict(rope_type="yarn", rope_theta=10000.0, factor=40.0,
                               original_max_position_embeddings=4096, mscale=0.707,
                               mscale_all_dim=1.0), None),
    "yarn_no_truncate_attention_factor": (
        dict(head_dim=64, max_position_embeddings=131072),
        dict(rope_type="yarn", rope_theta=150000.0, factor=32.0,
             original_max_position_embeddings=4096, beta_fast=32.0, beta_slow=1.0,
             truncate=False, attention_factor=1.25), None),
    "llama3": (dict(head_dim=128, max_position_embeddings=131072),
               dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                    high_freq_factor=4.0, original_max_position_embeddings=8192), None),
    "llama3_small_context": (dict(head_dim=64, max_position_embeddings=4096),
                             dict(rope_type="llama3", rope_theta=10000.0, factor=4.0,
                                  low_freq_factor=1.0, high_freq_factor=4.0,
                                  original_max_position_embeddings=512), None),
}


def compute(fields, rope, seq_len):
    config = LlamaConfig(hidden_size=fields["head_dim"] * 4, num_attention_heads=4,
                         num_key_value_heads=4, head_dim=fields["head_dim"],
                         max_position_embeddings=fields["max_position_embeddings"],
                         rope_parameters=dict(rope))
    if rope["rope_type"] == "default":
        inv_freq, attention_factor = Qwen3MoeRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[rope["rope_type"]](
            config, "cpu", seq_len=seq_len)
    return inv_freq.to(torch.float32).tolist(), float(attention_factor)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/data/rope/rope_goldens.json")
    args = parser.parse_args()
    cases = []
    for name, (fields, rope, seq_len) in CASES.items():
        inv_freq, attention_factor = compute(fields, rope, seq_len)
        cases.append(dict(name=name, head_dim=fields["head_dim"],
                          max_position_embeddings=fields["max_position_embeddings"],
                          seq_len=seq_len or 0, rope_parameters=rope,
                          attention_factor=attention_factor, inv_freq=inv_freq))
    out = dict(generator="tools/make_rope_goldens.py", transformers=transformers.__version__,
               torch=torch.__version__, cases=cases)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
