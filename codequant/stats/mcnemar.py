"""McNemar's test on paired pass/fail outcomes, with the odds ratio b/c and its confidence interval.

Only the discordant pairs carry information about a difference between two paired runs: b = baseline passes and
the other fails, c = the other passes and the baseline fails. Under H0 (no difference) each discordant pair is
b-or-c with probability 1/2, so the exact test is a two-sided binomial test of b out of b + c (what the study used;
R's `mcnemar.exact`). The asymptotic chi-square form is offered for comparison with tools that use it.

Orientation: OR = b / c, so OR > 1 means the second run loses more completions than it gains (it is worse).

The default confidence interval is the *exact conditional* one: a Clopper-Pearson interval for b / (b + c),
mapped through p -> p / (1 - p). It is consistent with the exact test (the interval excludes 1 exactly when the
exact p-value is below alpha, up to the binomial's discreteness), it needs no large-sample assumption, and it
stays defined when b or c is 0 (one end then is 0 or infinity). The Wald interval on log OR is available as
`ci="wald"`; it needs both b and c > 0, and adds 0.5 to each (Haldane-Anscombe) when either is 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats

from codequant.errors import CodequantError

METHODS = ("exact", "asymptotic")
CI_METHODS = ("exact", "wald")


@dataclass(frozen=True)
class McNemarResult:
    """One paired comparison: discordant counts, p-value, OR = b/c with its (1 - alpha) interval."""

    b: int  # baseline passes, other fails
    c: int  # other passes, baseline fails
    n_pairs: int  # all pairs, concordant included
    p_value: float
    odds_ratio: float  # b / c; inf when c == 0 < b, nan when b == c == 0
    ci_low: float
    ci_high: float
    method: str
    ci_method: str
    statistic: float | None = None  # chi-square statistic (asymptotic method only)

    def to_dict(self) -> dict:
        return asdict(self)


def discordant(base: Sequence[bool], other: Sequence[bool]) -> tuple[int, int, int]:
    """(b, c, n_pairs) of two equally long outcome sequences, already aligned pair by pair."""
    if len(base) != len(other):
        raise CodequantError(
            f"paired outcomes differ in length ({len(base)} vs {len(other)}); pair them first"
        )
    b = sum(1 for x, y in zip(base, other, strict=True) if x and not y)
    c = sum(1 for x, y in zip(base, other, strict=True) if y and not x)
    return b, c, len(base)


def odds_ratio_ci(b: int, c: int, *, alpha: float = 0.05, method: str = "exact") -> tuple[float, float]:
    """(low, high) confidence interval of the conditional odds ratio b / c."""
    if method not in CI_METHODS:
        raise CodequantError(f"unknown CI method {method!r}; use one of {', '.join(CI_METHODS)}")
    if b + c == 0:
        return 0.0, math.inf
    if method == "exact":
        ci = stats.binomtest(b, b + c, 0.5).proportion_ci(confidence_level=1 - alpha, method="exact")
        lo, hi = ci.low, ci.high
        return lo / (1 - lo), (math.inf if hi >= 1 else hi / (1 - hi))
    bb, cc = (b + 0.5, c + 0.5) if b == 0 or c == 0 else (float(b), float(c))
    z = stats.norm.ppf(1 - alpha / 2)
    centre, half = math.log(bb / cc), z * math.sqrt(1 / bb + 1 / cc)
    return math.exp(centre - half), math.exp(centre + half)


def mcnemar_counts(
    b: int,
    c: int,
    n_pairs: int | None = None,
    *,
    method: str = "exact",
    continuity: bool = True,
    ci: str = "exact",
    alpha: float = 0.05,
) -> McNemarResult:
    """McNemar's test from the discordant counts (b, c); `n_pairs` defaults to b + c.

    `continuity` applies Edwards' correction (|b - c| - 1)^2 / (b + c) to the asymptotic statistic.
    """
    if method not in METHODS:
        raise CodequantError(f"unknown McNemar method {method!r}; use one of {', '.join(METHODS)}")
    if b < 0 or c < 0:
        raise CodequantError(f"discordant counts must be non-negative (b={b}, c={c})")
    n_pairs = b + c if n_pairs is None else int(n_pairs)
    if n_pairs < b + c:
        raise CodequantError(f"n_pairs={n_pairs} is smaller than the discordant pairs b + c = {b + c}")
    statistic = None
    if b + c == 0:
        p = 1.0
    elif method == "exact":
        p = float(stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    else:
        diff = abs(b - c) - (1 if continuity else 0)
        statistic = max(diff, 0) ** 2 / (b + c)
        p = float(stats.chi2.sf(statistic, df=1))
    if c == 0:
        odds = math.nan if b == 0 else math.inf
    else:
        odds = b / c
    lo, hi = odds_ratio_ci(b, c, alpha=alpha, method=ci)
    return McNemarResult(
        b=b,
        c=c,
        n_pairs=n_pairs,
        p_value=min(p, 1.0),
        odds_ratio=odds,
        ci_low=lo,
        ci_high=hi,
        method=method,
        ci_method=ci,
        statistic=statistic,
    )


def mcnemar(base: Sequence[bool], other: Sequence[bool], **kwargs) -> McNemarResult:
    """McNemar's test of two aligned outcome sequences (see `mcnemar_counts` for the options)."""
    b, c, n = discordant(base, other)
    return mcnemar_counts(b, c, n, **kwargs)
