"""Incremental detokenization gives the full decode's text at every step, decoding only a short window."""

from __future__ import annotations

import random

from codequant.generation.detok import IncrementalText

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "naïve café — “quotes” 漢字 😀 ok\n",
    "for i in range(10):\n    print(i)  # ünïcödé\n",
]


class CountingTokenizer:
    """A real tokenizer that counts how many token ids each decode call reads."""

    def __init__(self, tok):
        self.tok, self.decoded = tok, 0

    def decode(self, ids, skip_special_tokens=True):
        self.decoded += len(ids)
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


def test_text_equals_the_full_decode_token_by_token(tiny_tokenizer):
    for text in TEXTS:
        ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        inc = IncrementalText(tiny_tokenizer)
        for i, tok in enumerate(ids):
            inc.append(tok)
            full = tiny_tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
            # a character split over tokens shows up once it is complete; until then the full decode ends in U+FFFD
            assert full.startswith(inc.text) and (full == inc.text or full.endswith("\ufffd"))
        assert inc.text == inc.full() == tiny_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_random_token_streams_and_special_tokens(tiny_tokenizer):
    rng = random.Random(0)
    vocab = len(tiny_tokenizer)
    for _ in range(20):
        ids = [rng.randrange(vocab) for _ in range(40)]
        inc = IncrementalText(tiny_tokenizer)
        for tok in ids:
            inc.append(tok)
        full = tiny_tokenizer.decode(ids, skip_special_tokens=True)
        assert inc.full() == full and full.startswith(inc.text)
        assert set(full[len(inc.text) :]) <= {"\ufffd"}  # at most undecodable bytes at the end, not yet shown


def test_each_token_decodes_a_window_not_the_whole_output(tiny_tokenizer):
    counting = CountingTokenizer(tiny_tokenizer)
    ids = tiny_tokenizer("x = 1\n" * 200, add_special_tokens=False)["input_ids"]
    inc = IncrementalText(counting)
    for tok in ids:
        inc.append(tok)
    assert inc.text == "x = 1\n" * 200
    assert counting.decoded < 6 * len(ids)  # a whole-output decode per token would read ~len(ids)^2 / 2
