"""The unbiased pass@k estimator of Chen et al. (2021).

pass@k = 1 - C(n-c, k) / C(n, k) for one problem with n samples of which c pass; computed as the product
prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials and stays exact in floating point for any n.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) passes."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of pass@k over problems given as (n, c) pairs."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no problems")
    return sum(values) / len(values)


def ks_for(n: int, candidates: Iterable[int] = (1, 5, 10, 20, 50, 100)) -> list[int]:
    """The usual k values that `n` samples per problem allow."""
    return [k for k in candidates if k <= n]


def pass_at_ks(per_problem: Mapping[str, list[bool]]) -> dict[str, float]:
    """{"pass@1": ..., "pass@5": ...} over problems, each with its list of per-sample outcomes.

    k runs over the usual values up to the smallest sample count, so every problem supports every k.
    """
    if not per_problem:
        return {}
    n_min = min(len(v) for v in per_problem.values())
    counts = [(len(v), sum(bool(x) for x in v)) for v in per_problem.values()]
    return {f"pass@{k}": mean_pass_at_k(counts, k) for k in ks_for(n_min)}
