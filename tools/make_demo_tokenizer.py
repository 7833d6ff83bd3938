#!/usr/bin/env python3
"""Trains the built-in demo model's tokenizer with Hugging Face `tokenizers`.

A Qwen2-style byte-level BPE (NFC, the Qwen2 regex split, ByteLevel) of exactly the demo model's
vocab_size (512: 256 byte symbols, 255 merges and the special token <|endoftext|>, which is id 0
and the demo's eos_token_id), trained on the same deterministic corpus as the tokenizer goldens.
It writes frontends/data/demo_tokenizer.json; CMake embeds that file into the library
(frontends/demo_model.cc writes it into every demo model directory), so CI needs no Python.

    pip install -r tools/requirements-goldens.txt   # tokenizers==0.23.3
    python3 tools/make_demo_tokenizer.py [--out frontends/data/demo_tokenizer.json]
"""

import argparse
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors

from make_tokenizer_goldens import QWEN2_PATTERN, byte_level_trainer, training_corpus

DEMO_VOCAB_SIZE = 512  # frontends/demo_model.cc DemoModelConfig().vocab_size
EOS = "<|endoftext|>"


def make_demo_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_corpus(), byte_level_trainer(DEMO_VOCAB_SIZE, [EOS]))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..",
                                                      "frontends", "data", "demo_tokenizer.json"))
    args = parser.parse_args()
    tok = make_demo_tokenizer()
    if tok.get_vocab_size() != DEMO_VOCAB_SIZE:
        raise SystemExit(f"trained {tok.get_vocab_size()} tokens, expected {DEMO_VOCAB_SIZE}")
    if tok.token_to_id(EOS) != 0:
        raise SystemExit(f"{EOS} is id {tok.token_to_id(EOS)}, expected 0")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(tok.to_str())
        f.write("\n")
    print(f"wrote {args.out}: vocab {tok.get_vocab_size()}, "
          f"'Hello world' -> {tok.encode('Hello world').ids}")


if __name__ == "__main__":
    main()
