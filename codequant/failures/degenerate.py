"""Degenerate outputs: no code at all, or text stuck in a loop.

Repetition is judged on the code that ran (the extracted completion), not on the raw output: a model that writes
a correct function and then babbles until the token limit lost nothing to the babble, since extraction cut it.
"""

from __future__ import annotations

import re
from collections import Counter

_PY_EMPTY = re.compile(r"^\s*(?:#.*|pass|\.\.\.|\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|)\s*$")
_JAVA_COMMENTS = re.compile(r"//[^\n]*|/\*[\s\S]*?\*/")
NGRAM = 8  # tokens per n-gram
MIN_TOKENS = 48  # shorter completions are never called repetitive
MAX_DUPLICATE_SHARE = 0.5  # more than half of the n-grams are copies of an earlier one
MAX_SAME_LINES = 4  # this many identical non-blank lines in a row


def no_code(completion: str, language: str = "python") -> bool:
    """Nothing that could implement anything: empty, or only comments, docstrings, `pass`, `...` and braces."""
    if language == "java":
        body = _JAVA_COMMENTS.sub("", completion)
        return not re.sub(r"[\s{};]", "", body)
    text = re.sub(r"\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''", "", completion)
    return all(_PY_EMPTY.match(line) for line in text.splitlines())


def repetitive(text: str) -> bool:
    """A loop: the same line MAX_SAME_LINES times in a row, or more than half of the 8-token windows repeating
    an earlier window (code that merely reuses a few idioms stays well below that)."""
    run, last = 0, None
    for line in (s.strip() for s in text.splitlines()):
        if not line:
            continue
        run = run + 1 if line == last else 1
        last = line
        if run >= MAX_SAME_LINES and len(line) > 2:
            return True
    tokens = text.split()
    if len(tokens) < MIN_TOKENS:
        return False
    grams = Counter(tuple(tokens[i : i + NGRAM]) for i in range(len(tokens) - NGRAM + 1))
    total = len(tokens) - NGRAM + 1
    duplicates = sum(c - 1 for c in grams.values())
    return duplicates / total > MAX_DUPLICATE_SHARE
