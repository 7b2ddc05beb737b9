"""Whether a failure class grows from a baseline (fp) to another version (the counts per run are
`codequant.failures.tally`).

The test of growth is paired over the same completions (problem p, sample i of both runs): the outcome of a
completion is "has class c", and the test is the one `codequant compare` would choose for these runs (`auto`:
exact McNemar with one completion per problem, Durkalski's clustered McNemar with several; `permutation` on
request). b counts completions that have class c under the other version but not the baseline (new), c the
reverse (gone); "grows" means other_count > base_count with the adjusted p below alpha. Corrected with
Benjamini-Hochberg over every (version, class) test of one call: one family per model x benchmark x decoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from codequant.failures.classes import CLASSES
from codequant.failures.tally import Failures
from codequant.stats.clustered import clustered_mcnemar, permutation_test
from codequant.stats.compare import choose_test
from codequant.stats.correction import adjust
from codequant.stats.mcnemar import mcnemar
from codequant.stats.options import CompareOptions
from codequant.stats.pairing import pair_outcomes


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


def growth_tests(
    base: Failures,
    others: Mapping[str, Failures],
    options: CompareOptions | None = None,
    *,
    classes: Iterable[str] = CLASSES,
    common_only: bool = False,
) -> list[GrowthTest]:
    """One test per (other version, class) that occurs in either run, corrected together (`options`: the test,
    its resamples and seed, the correction and alpha; pairing is per completion). The runs must hold the same
    completions (one clear error otherwise), or with `common_only` the completions they share."""
    options = options or CompareOptions()
    test, resamples, seed, alpha = options.test, options.resamples, options.seed, options.alpha
    rows: list[GrowthTest] = []
    for label, other in others.items():
        # pair on "passed" first: the keys must be the same completions (one clear error otherwise)
        paired = pair_outcomes(
            {t: {i: c is None for i, c in s.items()} for t, s in base.items()},
            {t: {i: c is None for i, c in s.items()} for t, s in other.items()},
            labels=("baseline", label),
            common_only=common_only,
        )
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
            rows.append(
                GrowthTest(
                    other=label,
                    failure=cls,
                    base_count=sum(x),
                    other_count=sum(y),
                    n_pairs=len(x),
                    new=sum(b and not a for a, b in zip(x, y, strict=True)),
                    gone=sum(a and not b for a, b in zip(x, y, strict=True)),
                    test=chosen,
                    p_value=float(p),
                    p_adjusted=float(p),
                    grows=False,
                )
            )
    if rows:
        for row, q in zip(rows, adjust([r.p_value for r in rows], options.correction), strict=True):
            row.p_adjusted = float(q)
            row.grows = row.other_count > row.base_count and q < alpha
    return rows
