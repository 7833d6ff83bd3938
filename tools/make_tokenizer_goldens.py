#!/usr/bin/env python3
"""Trains small BPE tokenizers with Hugging Face `tokenizers` and writes goldens for tests/tokenizer.

For each tokenizer family style it writes tests/data/tokenizer/<name>/tokenizer.json and
golden.json: for every line of tests/data/tokenizer/corpus.json, the ids `tokenizers` produces
with and without special tokens and the strings it decodes them to. The C++ tests read these
files; CI does not need Python.

    pip install -r tools/requirements-goldens.txt   # tokenizers==0.23.3
    python3 tools/make_tokenizer_goldens.py [--out tests/data/tokenizer]
"""

import argparse
import json
import os
import random

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
O200K_PATTERN = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged that we'll need more tokens, isn't it? They'd say so.",
    "I'm sure you've seen THIS before: HTTPServer, XMLHttpRequest and getElementById.",
    "In 2024 the model processed 1234567 tokens at 98.6% accuracy for $3,500.00.",
    "def encode(self, text: str) -> list[int]:\n    return [ord(c) for c in text]\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "if x == 0 and not y: print('zero')  # comment\r\n",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "我们今天去公园散步，天气非常好。机器学习模型需要大量的数据。",
    "東京は日本の首都です。ひらがなとカタカナと漢字を使います。",
    "한국어 문장도 포함되어 있습니다. 안녕하세요!",
    "مرحبا بالعالم، هذه جملة باللغة العربية للاختبار.",
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
    "Привет, мир! Это предложение на русском языке. Ёлка и ёж.",
    "Καλημέρα κόσμε, ΟΔΥΣΣΕΥΣ και σοφία.",
    "Ça va très bien, merci. Élève, naïve, façade, crème brûlée.",
    "Straße, Größe, Übermäßig schön; İstanbul'da ılık bir gün.",
    "Emoji: 😀😃😄 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸",
    "    indented    with     many      spaces   ",
    "tabs\tand\t\ttabs\nnew\nlines\r\nwindows\r\n",
    "https://example.com/path?query=value&other=123#anchor",
    "user@example.org wrote: <b>bold</b> & <i>italic</i>",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 0xFF",
]

# The hard test corpus: every golden compares the C++ tokenizer to `tokenizers` on each line.
CORPUS = [
    "",
    " ",
    "a",
    "Hello world",
    " Hello world",
    "Hello  world   with    spaces",
    "hello\nworld\n\n\nend",
    "trailing spaces    ",
    "    leading spaces",
    "\t\ttabs\tinside\t",
    "windows\r\nline\r\nendings\r\n",
    "mixed \r\n \n\r \t \u000b \u000c end",
    "It's we're they've I'm you'll he'd IT'S WE'RE THEY'VE I'M YOU'LL HE'D",
    "don't can't won't shouldn't y'all 'tis o'clock",
    "12345 1 22 333 4444 55555 666666 3.14159 -2.5e-10 1,000,000",
    "Call 555-0123 or +1 (800) 555-0199 before 23:59:59 on 2024-12-31.",
    "我们今天去公园散步，天气非常好。",
    "東京は日本の首都です。ひらがなカタカナ漢字",
    "한국어 문장도 포함되어 있습니다.",
    "مرحبا بالعالم، هذه جملة باللغة العربية.",
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
    "Привет, мир! Ёлка и ёж. ПРИВЕТ МИР",
    "Καλημέρα κόσμε, ΟΔΥΣΣΕΥΣ",
    "Straße Größe İstanbul ılık ǅemal ǈ ǋ",
    "😀😃😄😁😆 👍👍🏻👍🏼👍🏽👍🏾👍🏿",
    "Family: 👨‍👩‍👧‍👦 👩‍❤️‍💋‍👨 🏳️‍🌈 🏴‍☠️ flags 🇺🇸🇯🇵🇩🇪",
    "Keycaps 1️⃣ #️⃣ and variation ☺︎ ☺️",
    "combining: e\u0301 a\u0308 o\u0302 n\u0303 \u0041\u030a vs é ä ô ñ Å",
    "stacked: a\u0301\u0302\u0303\u0304 z\u0335\u0336",
    "compat: ﬁ ﬂ ① ² ½ Ｆｕｌｌｗｉｄｔｈ ｶﾀｶﾅ ㎏ Ⅻ",
    "hangul jamo: \u1100\u1161\u11a8 vs 각",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "int main(void) {\n    printf(\"%d\\n\", 42);\n    return 0;\n}",
    "const re = /[a-z]+/gi; let s = `template ${x}`; a?.b ?? c;",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "path/to/file.txt C:\\Windows\\System32 ~/.bashrc ../../up",
    "!!!???...,,,;;;:::---___===+++***&&&|||",
    "a" * 300,
    "ab " * 40,
    " " * 37 + "x" + " " * 19,
    "\n" * 9 + "y" + "\t" * 5,
    "word" + " " * 64 + "word",
    "<|endoftext|>",
    "Hello<|endoftext|>world",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
    "text <mask> more <mask>text<mask> end",
    "  <mask>  spaced  <mask>  ",
    "[SW] alone, x[SW]y, ([SW]) and [SW]",
    "<think>reasoning</think> answer",
    "<s>[INST] Hello [INST] there </s>",
    "<s><s></s></s><unk>",
    "<|start|>system<|message|>You are helpful.<|end|>",
    "Mixed 中文 English العربية हिन्दी Русский 😀 123",
    "\u00a0non\u00a0breaking\u2009thin\u3000ideographic\u200bzero\u2028ls\u2029ps\u0085nel",
    "soft\u00adhyphen zero\u200dwidth\u200cjoiner \ufeffbom",
    "private \ue000\uf8ff and supplementary \U00010000 \U0001d11e \U0010fffd",
    "".join(chr(c) for c in range(0, 64)),
    "".join(chr(c) for c in range(64, 128)),
    "".join(chr(c) for c in range(128, 192)),
    "".join(chr(c) for c in range(192, 256)),
    " ".join(chr(c) for c in range(0, 256)),
]


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<mask>",
            "[SW]", "<s>", "</s>", "<unk>", "[INST]", "<|start|>", "<|message|>", "<|end|>",
            "Hello world"]
ODDITIES = ["\t", "\r\n", "\n\n", "   ", "\u00a0", "\u3000", "\u0085", "e\u0301",
            "\u1100\u1161", "\ufb01", "\u2460", "\U0001f469\u200d\U0001f4bb",
            "\U0001f44d\U0001f3ff", "\U0001f1ef\U0001f1f5", "'s", "'LL", "\u0130", "\u03a3",
            "\x00", "\x7f", "\u00ff", "\\", "{}", "()=>", "0x1F", "3.14", "1,000"]


def generated_lines(seed=99, num_lines=60):
    """Random mixes of the sentences' words, numbers, added tokens and odd characters."""
    rng = random.Random(seed)
    words = " ".join(SENTENCES).split()
    lines = []
    for _ in range(num_lines):
        parts = []
        for _ in range(rng.randint(4, 40)):
            r = rng.random()
            if r < 0.1:
                parts.append(rng.choice(SPECIALS))
            elif r < 0.25:
                parts.append(rng.choice(ODDITIES))
            elif r < 0.32:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            else:
                w = rng.choice(words)
                parts.append(w.upper() if rng.random() < 0.1 else w)
        lines.append("".join(p + rng.choice(["", " ", " ", " ", "  ", "\t"]) for p in parts))
    return lines


def training_corpus(seed=1234, num_lines=4000):
    rng = random.Random(seed)
    words = " ".join(SENTENCES).split()
    lines = []
    for i in range(num_lines):
        if i % 3 == 0:
            lines.append(rng.choice(SENTENCES))
        else:
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))))
    return lines


def byte_level_trainer(vocab_size, special):
    return trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def make_qwen2(corpus):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, byte_level_trainer(1200, ["<|endoftext|>"]))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([
        AddedToken("<|im_start|>", special=True, normalized=False),
        AddedToken("<|im_end|>", special=True, normalized=False),
    ])
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    return tok


def make_gpt2(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, byte_level_trainer(900, ["<|endoftext|>"]))
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    tok.add_tokens([
        AddedToken("[SW]", single_word=True, normalized=False),
        AddedToken("Hello world", normalized=True),
        AddedToken("<s>", rstrip=True, normalized=False),
    ])
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A <|endoftext|>",
        pair="<|endoftext|> $A <|endoftext|> $B:1 <|endoftext|>:1",
        special_tokens=[("<|endoftext|>", eot)])
    return tok


def sentencepiece_vocab(corpus, pre_tokenizer, vocab_size):
    """Trains a Metaspace BPE, then rebuilds it with <unk>, <s>, </s> and <0xNN> byte tokens first."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = pre_tokenizer
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False))
    data = json.loads(tok.to_str())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for token, _ in sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in data["model"]["merges"]]
    return vocab, merges


def make_llama(corpus):
    # Mixtral / Llama 2: normalizer Prepend + Replace, no pre-tokenizer, byte fallback.
    vocab, merges = sentencepiece_vocab(
        corpus, pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True), 1000)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                               fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken("<unk>", special=True, normalized=False),
                            AddedToken("<s>", special=True, normalized=False),
                            AddedToken("</s>", special=True, normalized=False)])
    tok.add_tokens([AddedToken("[INST]", normalized=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 1)])
    return tok


def make_metaspace(corpus):
    # Newer SentencePiece conversions: Metaspace pre-tokenizer (prepend_scheme first) and decoder.
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
        pre_tokenizers.Digits(individual_digits=True)])
    vocab, merges = sentencepiece_vocab(corpus, pre, 800)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                               fuse_unk=False, ignore_merges=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                     decoders.Metaspace(replacement="\u2581", prepend_scheme="first")])
    tok.add_special_tokens([AddedToken("<s>", special=True, normalized=False),
                            AddedToken("</s>", special=True, normalized=False)])
    tok.add_tokens([AddedToken("[SW]", single_word=True, normalized=True, lstrip=True, rstrip=True)])
    return tok


def make_o200k(corpus):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, byte_level_trainer(1500, ["<|endoftext|>"]))
    tok.add_special_tokens([
        AddedToken("<|start|>", special=True, normalized=False),
        AddedToken("<|message|>", special=True, normalized=False, rstrip=True),
        AddedToken("<|end|>", special=True, normalized=False, lstrip=True),
    ])
    return tok


def with_pre_tokenizer(base, pre, normalizer=None):
    """A variant of `base` (same vocab and merges) with another pre-tokenizer (and normalizer)."""
    tok = Tokenizer.from_str(base.to_str())
    tok.pre_tokenizer = pre
    if normalizer is not None:
        tok.normalizer = normalizer
    return tok


def variants(qwen2):
    out = {}
    for behavior in ["removed", "isolated", "merged_with_previous", "merged_with_next",
                     "contiguous"]:
        for invert in [False, True]:
            name = f"split_{behavior}{'_invert' if invert else ''}"
            out[name] = with_pre_tokenizer(qwen2, pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(r"\s+|\p{P}"), behavior=behavior, invert=invert),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))
    out["split_string"] = with_pre_tokenizer(qwen2, pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="merged_with_next"),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)]),
        normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\d+"), "#"),
                              normalizers.Lowercase()]))
    return out


def metaspace_variants(base):
    """Metaspace's other prepend schemes, without split; NFD + Strip so byte fallback is busy."""
    always = with_pre_tokenizer(base, pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="always", split=False),
        normalizers.Sequence([normalizers.Strip(left=True, right=True), normalizers.NFD()]))
    always.decoder = decoders.Sequence([
        decoders.ByteFallback(), decoders.Metaspace(replacement="\u2581", prepend_scheme="always")])
    never = with_pre_tokenizer(base, pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="never", split=True), normalizers.NFKD())
    never.decoder = decoders.Sequence([
        decoders.ByteFallback(), decoders.Metaspace(replacement="\u2581", prepend_scheme="never"),
        decoders.Fuse()])
    return {"metaspace_always": always, "metaspace_never": never}


def golden(tok, lossless):
    """`lossless`: None, or the added tokens (with lstrip/rstrip) whose lines may not round-trip."""
    cases = []
    for text in CORPUS + generated_lines():
        plain = tok.encode(text, add_special_tokens=False).ids
        special = tok.encode(text, add_special_tokens=True).ids
        case = {
            "ids": plain,
            "ids_special": special,
            "decoded": tok.decode(special, skip_special_tokens=False),
            "decoded_skip": tok.decode(special, skip_special_tokens=True),
            "decoded_plain": tok.decode(plain, skip_special_tokens=False),
        }
        case["roundtrip"] = case["decoded_plain"] == text
        if lossless and not any(t in text for t in lossless):
            assert case["roundtrip"], (text, case["decoded_plain"])
        # Keep the files small: a field equal to its fallback is left out (the test knows).
        if case["ids_special"] == case["ids"]:
            del case["ids_special"]
        for key in ["decoded_skip", "decoded_plain"]:
            if case[key] == case["decoded"]:
                del case[key]
        cases.append(case)
    return {"tokenizers_version": tokenizers.__version__, "lossless": bool(lossless),
            "cases": cases}


def to_legacy_merges(tokenizer_json):
    """Writes merges in the older "a b" string form (the pair form is the default now)."""
    data = json.loads(tokenizer_json)
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    return json.dumps(data, ensure_ascii=False, indent=None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                      "data", "tokenizer"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    corpus = training_corpus()
    qwen2 = make_qwen2(corpus)
    toks = {  # name -> (tokenizer, lossless)
        "qwen2": (qwen2, None),  # NFC
        "gpt2": (make_gpt2(corpus), None),  # add_prefix_space
        "llama": (make_llama(corpus), None),  # Strip removes one leading space
        "metaspace": (make_metaspace(corpus), None),  # NFKC + Lowercase
        "o200k": (make_o200k(corpus), ["<|message|>", "<|end|>"]),  # rstrip / lstrip
    }
    for name, tok in variants(qwen2).items():
        toks[name] = (tok, None)
    for name, tok in metaspace_variants(toks["metaspace"][0]).items():
        toks[name] = (tok, None)
    with open(os.path.join(args.out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump({"lines": CORPUS + generated_lines()}, f, ensure_ascii=False, indent=0)
        f.write("\n")
    for name, (tok, lossless) in toks.items():
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        text = tok.to_str()
        if name == "gpt2":
            text = to_legacy_merges(text)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(text)
        with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as f:
            json.dump(golden(Tokenizer.from_str(text), lossless), f, ensure_ascii=False,
                      separators=(",", ":"))
            f.write("\n")
        print(f"{name}: vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
