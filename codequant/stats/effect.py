"""How big is the difference: pass@1(other) - pass@1(base) with intervals that respect problems as clusters.

A p-value says whether a difference exists; a report also needs its size and how well it is known. The point
estimate is the difference of the two pass@1 over the paired completions, sum_p e_p / sum_p n_p with
e_p = (passes of other) - (passes of base) in problem p and n_p its paired completions: a ratio estimator.

Two intervals, both treating the problem (not the completion) as the unit that was sampled:

- **Cluster bootstrap** (percentile): resample problems with replacement, recompute the ratio; the 2.5% and
  97.5% quantiles of R resamples. Seeded and vectorised (one (R, P) index array).
- **Clustered standard error** (the ratio estimator's sandwich variance):
  Var = K / (K - 1) * sum_p (e_p - diff * n_p)^2 / N^2 (K problems, N = sum n_p); interval diff +- z SE.
  With one completion per problem this is the usual paired-difference standard error s_D / sqrt(K).

Negative values: the other version solves fewer (a drop).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from codequant.errors import CodequantError
from codequant.stats.clustered import cluster_counts


@dataclass(frozen=True)
class PassDiff:
    """pass@1(other) - pass@1(base) with a cluster-bootstrap interval and a clustered-SE interval."""

    diff: float
    ci_low: float  # bootstrap percentile interval
    ci_high: float
    se: float  # clustered (sandwich) standard error
    se_low: float  # diff -+ z * se
    se_high: float
    n_problems: int
    n_resamples: int
    confidence: float


def bootstrap_ratio(
    num: np.ndarray, den: np.ndarray, *, n_resamples: int, seed: int | None, confidence: float
) -> tuple[float, float]:
    """Percentile interval of sum(num) / sum(den) when whole clusters (rows of num, den) are resampled."""
    rng = np.random.default_rng(seed)
    k = len(num)
    idx = rng.integers(0, k, size=(n_resamples, k))
    ratios = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [tail, 1 - tail])
    return float(lo), float(hi)


def pass_diff(
    base: Sequence[bool],
    other: Sequence[bool],
    clusters: Sequence[Hashable],
    *,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> PassDiff:
    """pass@1 difference (other - base) of aligned pairs grouped by problem, with both intervals."""
    if not 0 < confidence < 1:
        raise CodequantError(f"confidence must lie strictly between 0 and 1 (got {confidence})")
    if n_resamples < 1:
        raise CodequantError(f"n_resamples must be at least 1 (got {n_resamples})")
    counts = cluster_counts(base, other, clusters)
    e = (counts.other_pass - counts.base_pass).astype(float)
    n = counts.n.astype(float)
    k, total = len(n), float(n.sum())
    diff = float(e.sum() / total)
    if k > 1:
        se = math.sqrt(k / (k - 1) * float(((e - diff * n) ** 2).sum())) / total
    else:
        se = math.nan  # one problem: nothing tells how much another problem would differ
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    lo, hi = bootstrap_ratio(e, n, n_resamples=n_resamples, seed=seed, confidence=confidence)
    return PassDiff(
        diff=diff,
        ci_low=lo,
        ci_high=hi,
        se=se,
        se_low=diff - z * se,
        se_high=diff + z * se,
        n_problems=k,
        n_resamples=n_resamples,
        confidence=confidence,
    )
