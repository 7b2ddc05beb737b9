"""Prompt-lookup drafting and prefill grouping: the two ways the engine avoids paying for work that does not
change a token (verification of guessed tokens in otherwise idle batch room; prefill without padding waste)."""

from __future__ import annotations

from collections.abc import Sequence

from codequant.generation.batch import Row


def prompt_lookup(history: Sequence[int], limit: int, ngram: int = 3) -> list[int]:
    """Prompt-lookup drafting: find the latest earlier occurrence of the last `ngram` tokens (then shorter ones)
    in the row's prompt + output and guess that what followed it then follows now (code repeats names, signatures,
    whole lines; small models repeat themselves). No draft model: the guesses cost only the verification."""
    size = len(history)
    for n in range(ngram, 0, -1):
        if size <= n:
            continue
        key = list(history[size - n :])
        for start in range(size - n - 1, -1, -1):
            if history[start] == key[0] and list(history[start : start + n]) == key:
                return list(history[start + n : start + n + limit])
    return []


MAX_DRAFT = 8  # draft tokens per row at most


PREFILL_PAD_RATIO = 0.8  # a prefill group's shortest prompt is at least this fraction of its longest


def length_groups(rows: list[Row], ratio: float = PREFILL_PAD_RATIO) -> list[list[Row]]:
    """Split rows (longest prompt first) into prefill groups of similar length.

    Prefill is compute-bound and pays for every left-padding position: 32 HumanEval chat prompts of 94-322 tokens
    padded to the longest cost twice their real tokens. Prefilling groups whose lengths stay within `ratio` of
    each other and merging them (a cache copy, cheap next to the forward) bounds the waste to 1/ratio.
    """
    groups: list[list[Row]] = []
    for row in rows:
        if groups and len(row.prompt_ids) >= ratio * len(groups[-1][0].prompt_ids):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups
