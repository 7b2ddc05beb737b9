"""McNemar's test when pairs come in clusters: n completions of one problem are not independent.

The study pairs completion i of problem p across two versions and tests all P x n pairs as if independent. But a
problem that one version finds hard makes all n of its completions fail together, so the discordant pairs of one
problem are correlated and the per-completion test is too confident. The unit of replication is the problem.

Durkalski et al. (2003, Statistics in Medicine 22:1417-1428) keep the McNemar numerator and replace its variance
by the empirical between-cluster variance of the per-cluster discordance:

    X^2 = (B - C)^2 / sum_p (b_p - c_p)^2,   chi-square with 1 df,

with b_p, c_p the discordant counts of problem p and B, C their totals. Why this form: under H0 each cluster's
d_p = b_p - c_p has mean 0 whatever its size or internal correlation, the d_p are independent across clusters, so
sum_p d_p^2 estimates Var(B - C) without modelling the correlation. With one pair per cluster d_p^2 = |d_p| and the
statistic is McNemar's chi-square without continuity correction, (b - c)^2 / (b + c).

Edge cases: B == C == 0 gives p = 1 (no discordant pair, no evidence). The denominator is 0 only when every
d_p = 0, and then B - C = sum_p d_p = 0 as well, so "denominator 0 with B != C" cannot happen; 0/0 is p = 1.

Obuchowski (1998, Statistics in Medicine 17:1495-1507) is offered as a second method (`method="obuchowski"`): a
ratio-estimator variance of the difference of the two clustered proportions. `permutation_test` is the
assumption-light check: under H0 the two versions are exchangeable within a problem, so each d_p's sign is a
fair coin; it enumerates all sign patterns when few problems are discordant and resamples otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from codequant.errors import CodequantError

METHODS = ("durkalski", "obuchowski")
EXACT_MAX_CLUSTERS = 16  # 2^16 sign patterns: exact enumeration is still instant


@dataclass(frozen=True)
class ClusteredResult:
    """A clustered paired test: totals B, C over n_pairs pairs in n_clusters problems; `method` names the test."""

    b: int  # baseline passes, other fails (all clusters)
    c: int  # other passes, baseline fails
    n_pairs: int
    n_clusters: int
    statistic: float
    p_value: float
    method: str  # "durkalski" / "obuchowski" / "permutation"
    n_resamples: int = 0  # permutation only: random sign patterns drawn; 0 = all 2^k enumerated (exact p)


@dataclass(frozen=True)
class ClusterCounts:
    """Per-cluster tallies in first-seen cluster order: discordant b_p, c_p, pairs n_p, passes of each side."""

    labels: list[Hashable]
    b: np.ndarray
    c: np.ndarray
    n: np.ndarray
    base_pass: np.ndarray
    other_pass: np.ndarray


def cluster_counts(
    base: Sequence[bool], other: Sequence[bool], clusters: Sequence[Hashable]
) -> ClusterCounts:
    """Tally aligned outcomes by cluster (problem); the sequences are pairwise aligned, clusters label each pair."""
    if not len(base) == len(other) == len(clusters):
        raise CodequantError(
            f"base, other and clusters differ in length ({len(base)}, {len(other)}, "
            f"{len(clusters)}); pair the outcomes first"
        )
    if not len(base):
        raise CodequantError("no pairs to test")
    index: dict[Hashable, int] = {}
    ids = np.fromiter(
        (index.setdefault(k, len(index)) for k in clusters), dtype=np.int64, count=len(clusters)
    )
    x = np.asarray(base, dtype=bool)
    y = np.asarray(other, dtype=bool)
    k = len(index)

    def tally(mask: np.ndarray) -> np.ndarray:
        return np.bincount(ids, weights=mask, minlength=k).astype(np.int64)

    return ClusterCounts(
        labels=list(index),
        b=tally(x & ~y),
        c=tally(y & ~x),
        n=np.bincount(ids, minlength=k),
        base_pass=tally(x),
        other_pass=tally(y),
    )


def _chi2(num: float, var: float) -> tuple[float, float]:
    if var <= 0:  # only when every cluster is balanced, so num == 0 too (see the module docstring)
        return 0.0, 1.0
    stat = num * num / var
    return float(stat), float(stats.chi2.sf(stat, df=1))


def durkalski(counts: ClusterCounts) -> tuple[float, float]:
    """(X^2, p) of Durkalski et al. (2003) from per-cluster discordant counts."""
    d = (counts.b - counts.c).astype(float)
    return _chi2(d.sum(), float((d * d).sum()))


def obuchowski(counts: ClusterCounts) -> tuple[float, float]:
    """(X^2, p) of Obuchowski (1998): difference of clustered proportions, ratio-estimator variances.

    p1 = sum x_p / N and p2 = sum y_p / N (x_p, y_p: passes of each side in cluster p, N = sum n_p). With K
    clusters and mean size m = N / K, Var(p1) = K / (K - 1) / N^2 * sum (x_p - n_p p1)^2 (likewise p2),
    Cov = K / (K - 1) / N^2 * sum (x_p - n_p p1)(y_p - n_p p2), and X^2 = (p1 - p2)^2 / (V1 + V2 - 2 Cov).
    """
    k = len(counts.n)
    if k < 2:
        raise CodequantError("the Obuchowski test needs at least 2 clusters")
    n = counts.n.astype(float)
    total = n.sum()
    p1, p2 = counts.base_pass.sum() / total, counts.other_pass.sum() / total
    r1, r2 = counts.base_pass - n * p1, counts.other_pass - n * p2
    scale = k / (k - 1) / total**2
    var = scale * float(((r1 - r2) ** 2).sum())  # V1 + V2 - 2 Cov in one sum
    return _chi2(float(p1 - p2), var)


def clustered_mcnemar(
    base: Sequence[bool], other: Sequence[bool], clusters: Sequence[Hashable], *, method: str = "durkalski"
) -> ClusteredResult:
    """McNemar's test of aligned pairs grouped in clusters (completions of one problem): Durkalski by default."""
    if method not in METHODS:
        raise CodequantError(f"unknown clustered method {method!r}; use one of {', '.join(METHODS)}")
    counts = cluster_counts(base, other, clusters)
    b, c = int(counts.b.sum()), int(counts.c.sum())
    if b == c == 0:
        stat, p = 0.0, 1.0
    else:
        stat, p = (durkalski if method == "durkalski" else obuchowski)(counts)
    return ClusteredResult(
        b=b,
        c=c,
        n_pairs=int(counts.n.sum()),
        n_clusters=len(counts.labels),
        statistic=stat,
        p_value=min(p, 1.0),
        method=method,
    )


def _sign_patterns(k: int) -> np.ndarray:
    """All 2^k sign vectors as a (2^k, k) array of +-1."""
    return np.array(list(itertools.product((1.0, -1.0), repeat=k))) if k else np.ones((1, 0))


def permutation_test(
    base: Sequence[bool],
    other: Sequence[bool],
    clusters: Sequence[Hashable],
    *,
    n_resamples: int = 10_000,
    seed: int | None = 0,
    exact_max: int = EXACT_MAX_CLUSTERS,
) -> ClusteredResult:
    """Paired sign-flip permutation test over clusters; statistic |sum_p (b_p - c_p)|.

    Under H0 swapping the two versions' outcomes inside a problem leaves the joint distribution unchanged, which
    flips the sign of d_p = b_p - c_p; problems are independent, so the signs flip independently. Only problems
    with d_p != 0 matter. With at most `exact_max` of them all 2^k patterns are enumerated (exact p); otherwise
    `n_resamples` random patterns give p = (1 + #{|T*| >= |T|}) / (1 + R), which is never 0 and is a valid
    p-value for a Monte Carlo test.
    """
    if n_resamples < 1:
        raise CodequantError(f"n_resamples must be at least 1 (got {n_resamples})")
    counts = cluster_counts(base, other, clusters)
    b, c = int(counts.b.sum()), int(counts.c.sum())
    d = (counts.b - counts.c).astype(float)
    d = d[d != 0]
    observed = abs(d.sum())
    tol = 1e-9  # integer statistics; guards only against float summation order
    if d.size <= exact_max:
        null = np.abs(_sign_patterns(d.size) @ d)
        p = float(np.mean(null >= observed - tol))
        drawn = 0
    else:
        rng = np.random.default_rng(seed)
        signs = rng.integers(0, 2, size=(n_resamples, d.size), dtype=np.int8) * 2 - 1
        null = np.abs(signs @ d)
        p = float((1 + np.count_nonzero(null >= observed - tol)) / (1 + n_resamples))
        drawn = n_resamples
    return ClusteredResult(
        b=b,
        c=c,
        n_pairs=int(counts.n.sum()),
        n_clusters=len(counts.labels),
        statistic=float(observed),
        p_value=min(p, 1.0),
        method="permutation",
        n_resamples=drawn,
    )
