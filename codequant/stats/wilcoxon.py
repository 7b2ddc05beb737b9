"""Wilcoxon signed-rank test for continuous per-problem metrics of two paired runs.

Pass/fail outcomes go to McNemar; a continuous metric per problem (the log-likelihood of the canonical solution,
a per-problem pass rate over many samples) goes here. It is paired and rank-based, so it needs no normality and is
robust to a few problems with huge differences. Differences are `other - base`: a negative median difference
means the second run scores lower.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from codequant.errors import CodequantError


@dataclass(frozen=True)
class WilcoxonResult:
    n: int  # pairs
    n_nonzero: int  # pairs with a non-zero difference (the ones the 'wilcox' zero method ranks)
    statistic: float
    p_value: float
    median_diff: float  # median of other - base
    mean_diff: float

    def to_dict(self) -> dict:
        return asdict(self)


def wilcoxon_paired(
    base: Sequence[float],
    other: Sequence[float],
    *,
    zero_method: str = "wilcox",
    alternative: str = "two-sided",
) -> WilcoxonResult:
    """Signed-rank test of `other - base` (scipy.stats.wilcoxon); all-zero differences give p = 1."""
    x = np.asarray(base, dtype=float)
    y = np.asarray(other, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise CodequantError(f"paired metrics differ in length ({x.size} vs {y.size}); pair them first")
    if x.size == 0:
        raise CodequantError("no pairs to test")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CodequantError("paired metrics must be finite numbers")
    d = y - x
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        stat, p = 0.0, 1.0
    else:
        res = stats.wilcoxon(y, x, zero_method=zero_method, alternative=alternative)
        stat, p = float(res.statistic), float(res.pvalue)
    if math.isnan(p):
        p = 1.0
    return WilcoxonResult(
        n=int(x.size),
        n_nonzero=nonzero,
        statistic=stat,
        p_value=p,
        median_diff=float(np.median(d)),
        mean_diff=float(np.mean(d)),
    )


def wilcoxon_metric(
    base: Mapping[str, float], other: Mapping[str, float], *, common_only: bool = False, **kwargs
) -> WilcoxonResult:
    """Signed-rank test of two per-problem metrics keyed by task id, paired by task id."""
    only_base, only_other = sorted(set(base) - set(other)), sorted(set(other) - set(base))
    if (only_base or only_other) and not common_only:
        raise CodequantError(
            f"the metrics cover different problems ({len(only_base)} only in the baseline, e.g. "
            f"{(only_base or ['-'])[0]}; {len(only_other)} only in the other, e.g. {(only_other or ['-'])[0]}); "
            "pass common_only=True to test the shared ones"
        )
    keys = sorted(set(base) & set(other))
    return wilcoxon_paired([base[k] for k in keys], [other[k] for k in keys], **kwargs)
