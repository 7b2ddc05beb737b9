"""How often each failure class occurs per run, and whether it grows from a baseline (fp) to another version.

The test of growth is paired over the same completions (problem p, sample i of both runs): the outcome of a
completion is "has class c", and the test is the one `codequant compare` would choose for these runs (`auto`:
exact McNemar with one completion per problem, Durkalski's clustered McNemar with several; `permutation` on
request). b counts completions that have class c under the other version but not the baseline (new), c the
reverse (gone); "grows" means other_count > base_count with the adjusted p below alpha. Corrected with
Benjamini-Hochberg over every (version, class) test of one call: one family per model x benchmark x decoding.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codequant.errors import CodequantError
from codequant.failures.classes import CLASSES, classify

if TYPE_CHECKING:
    from codequant.stats.options import CompareOptions

Failures = dict[str, dict[int, str | None]]  # task -> sample -> class (None: passed)


@dataclass
class GrowthTest:
    other: str
    failure: str
    base_count: int
    other_count: int
    n_pairs: int
    new: int  # the other version has this class, the baseline not
    gone: int  # the reverse
    test: str
    p_value: float
    p_adjusted: float
    grows: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_failures(records: Iterable[Mapping[str, Any]]) -> Failures:
    """Class of every completion of a run (its samples.jsonl records); None for the passed ones."""
    out: Failures = {}
    for r in records:
        if r.get("status") is None:
            continue  # not executed yet
        found = classify(r)
        out.setdefault(str(r["task_id"]), {})[int(r["sample_index"])] = str(found.failure) if found else None
    return out


def read_failures(run_dir: str | Path) -> Failures:
    path = Path(run_dir) / "samples.jsonl"
    if not path.is_file():
        raise CodequantError(f"{run_dir} has no samples.jsonl; is it a `codequant evaluate` output folder?")
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    if rows and all(r.get("status") == "scored" for r in rows):
        raise CodequantError(f"{run_dir} is scored by text (code summarization): nothing was executed, so there are "
                             "no failures to classify; its scores are in samples.jsonl (bleu, rouge_l)")
    return run_failures(rows)


def counts(failures: Failures) -> dict[str, int]:
    """{"completions", "passed", "failed", and one count per class (zeros included)}."""
    flat = [c for samples in failures.values() for c in samples.values()]
    tally = Counter(c for c in flat if c is not None)
    return {"completions": len(flat), "passed": sum(c is None for c in flat), "failed": sum(tally.values()),
            **{c: tally.get(c, 0) for c in CLASSES}}


def growth_tests(base: Failures, others: Mapping[str, Failures], options: CompareOptions | None = None, *,
                 classes: Iterable[str] = CLASSES, common_only: bool = False) -> list[GrowthTest]:
    """One test per (other version, class) that occurs in either run, corrected together (`options`: the test,
    its resamples and seed, the correction and alpha; pairing is per completion). The runs must hold the same
    completions (one clear error otherwise), or with `common_only` the completions they share."""
    from codequant.stats import (
        CompareOptions,
        adjust,
        choose_test,
        clustered_mcnemar,
        mcnemar,
        pair_outcomes,
        permutation_test,
    )

    options = options or CompareOptions()
    test, resamples, seed, alpha = options.test, options.resamples, options.seed, options.alpha
    rows: list[GrowthTest] = []
    for label, other in others.items():
        # pair on "passed" first: the keys must be the same completions (one clear error otherwise)
        paired = pair_outcomes({t: {i: c is None for i, c in s.items()} for t, s in base.items()},
                               {t: {i: c is None for i, c in s.items()} for t, s in other.items()},
                               labels=("baseline", label), common_only=common_only)
        chosen = choose_test(test, paired)
        clusters = [t for t, _ in paired.keys]
        for cls in classes:
            x = [base[t][i] == cls for t, i in paired.keys]
            y = [other[t][i] == cls for t, i in paired.keys]
            if not any(x) and not any(y):
                continue
            free_x, free_y = [not v for v in x], [not v for v in y]  # "free of cls" plays the part of a pass
            if chosen == "mcnemar":
                p = mcnemar(free_x, free_y).p_value
            elif chosen == "clustered":
                p = clustered_mcnemar(free_x, free_y, clusters).p_value
            else:
                p = permutation_test(free_x, free_y, clusters, n_resamples=resamples, seed=seed).p_value
            rows.append(GrowthTest(other=label, failure=cls, base_count=sum(x), other_count=sum(y),
                                   n_pairs=len(x), new=sum(b and not a for a, b in zip(x, y, strict=True)),
                                   gone=sum(a and not b for a, b in zip(x, y, strict=True)), test=chosen,
                                   p_value=float(p), p_adjusted=float(p), grows=False))
    if rows:
        for row, q in zip(rows, adjust([r.p_value for r in rows], options.correction), strict=True):
            row.p_adjusted = float(q)
            row.grows = row.other_count > row.base_count and q < alpha
    return rows
