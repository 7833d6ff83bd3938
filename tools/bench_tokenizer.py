#!/usr/bin/env python3
"""Encode throughput of Hugging Face `tokenizers` vs moegraph's tokenizer, single-threaded.

Writes a few MB of mixed text (tests/data/tokenizer/corpus.json plus generated multilingual
lines and code) unless --text exists, measures `tokenizers` (RAYON_NUM_THREADS=1, one
`encode` per line, no encode_batch; best of --passes after one warm-up pass) and, with --cpp,
runs moegraph-tokenizer-bench on the same file and prints the ratio.

    pip install -r tools/requirements-goldens.txt
    python3 tools/bench_tokenizer.py --cpp build/bin/moegraph-tokenizer-bench
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import tokenizers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "tokenizer")
sys.path.insert(0, HERE)
from make_tokenizer_goldens import SENTENCES  # noqa: E402


def write_text(path, megabytes, seed=7):
    with open(os.path.join(DATA, "corpus.json"), encoding="utf-8") as f:
        corpus = [line.replace("\n", " ") for line in json.load(f)["lines"]]
    words = " ".join(SENTENCES).split()
    rng = random.Random(seed)
    out, size = [], 0
    while size < megabytes * 1e6:
        r = rng.random()
        if r < 0.1:
            line = rng.choice(corpus)
        elif r < 0.3:
            line = rng.choice(SENTENCES).replace("\n", " ")
        else:
            # Words with random numbers and casing so that the word cache does not see it all.
            parts = []
            for _ in range(rng.randint(5, 30)):
                w = rng.choice(words)
                if rng.random() < 0.1:
                    w = str(rng.randint(0, 10**rng.randint(1, 8)))
                elif rng.random() < 0.1:
                    w = w.upper()
                elif rng.random() < 0.1:
                    w = w + rng.choice(words)
                parts.append(w)
            line = " ".join(parts)
        out.append(line)
        size += len(line.encode("utf-8")) + 1
    with open(path, "w", encoding="utf-8", newline="") as f:  # keep \r as it is
        f.write("\n".join(out))


def bench_hf(tokenizer_path, lines, num_bytes, passes):
    tok = tokenizers.Tokenizer.from_file(tokenizer_path)
    best, num_tokens = float("inf"), 0
    for p in range(passes + 1):
        t0 = time.perf_counter()
        n = 0
        for line in lines:
            n += len(tok.encode(line, add_special_tokens=False).ids)
        dt = time.perf_counter() - t0
        if p > 0:
            best = min(best, dt)
        num_tokens = n
    return num_bytes / 1e6 / best, num_tokens, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default="/tmp/moegraph_tokenizer_bench.txt")
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--cpp", help="path of moegraph-tokenizer-bench")
    parser.add_argument("--tokenizers", default="qwen2,gpt2,llama,o200k")
    args = parser.parse_args()
    if not os.path.exists(args.text):
        write_text(args.text, args.mb)
    with open(args.text, encoding="utf-8", newline="") as f:  # no newline translation
        text = f.read()
    lines = text.split("\n")
    num_bytes = len(text.encode("utf-8"))
    print(f"text: {args.text}: {len(lines)} lines, {num_bytes / 1e6:.2f} MB; "
          f"tokenizers {tokenizers.__version__}, RAYON_NUM_THREADS=1")
    for name in args.tokenizers.split(","):
        path = os.path.join(DATA, name, "tokenizer.json")
        hf_mbps, hf_tokens, hf_s = bench_hf(path, lines, num_bytes, args.passes)
        row = f"{name:8s} tokenizers {hf_mbps:7.2f} MB/s ({hf_tokens} tokens, {hf_s:.3f} s)"
        if args.cpp:
            out = subprocess.run([args.cpp, path, args.text, str(args.passes)], check=True,
                                 capture_output=True, text=True).stdout
            mbps = float(re.search(r"([0-9.]+) MB/s", out).group(1))
            tokens = int(re.search(r"([0-9]+) tokens", out).group(1))
            same = "same token count" if tokens == hf_tokens else f"TOKEN COUNT DIFFERS ({tokens})"
            row += f" | moegraph {mbps:7.2f} MB/s | ratio {mbps / hf_mbps:5.2f}x | {same}"
        print(row)


if __name__ == "__main__":
    main()
