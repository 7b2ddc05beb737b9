"""What a design can see: the smallest pass@1 drop detectable at 80% power with P problems x n samples.

A non-significant comparison means little unless the design could have detected a drop worth caring about. This
module answers "40 problems x 1 sample cannot show a drop below X points at 80% power" for the clustered
McNemar test (Durkalski; with n = 1 it is McNemar's chi-square).

Model (stated, because the answer depends on it). Problem p has a baseline pass probability pi_p drawn from a
Beta law with mean mu (the baseline pass rate) and intra-problem correlation rho = Var(pi) / (mu (1 - mu)), the
ICC of a binary outcome: two completions of one problem agree more than two completions of different problems.
The other version keeps a fixed share of each problem's pass probability, pi'_p = (1 - k) pi_p with
k = delta / mu, so its pass rate is mu - delta. Given pi_p the 2n completions are independent, so
d_p = (base passes) - (other passes) = b_p - c_p is a difference of two binomials; its first four moments are
polynomials in pi_p (from the binomial cumulants) and their Beta expectations need only E[pi^j], j <= 4:
E[pi^j] = prod_{i<j} (mu (1 - rho) + i rho) / (1 - rho + i rho). In particular E[d] = n delta and Var[d] is
n times the per-completion discordance variance times the design effect 1 + (n - 1) rho_d, rho_d being the
correlation of paired differences within a problem, which the model derives from rho.

Durkalski's Z = S / sqrt(Q), S = sum_p d_p, Q = sum_p d_p^2, over P independent problems. First-order delta
method around (E S, E Q) = (P E[d], P E[d^2]), with a = E S / (2 E Q):

    mean(Z) = E S / sqrt(E Q),   Var(Z) = Var(S - a Q) / E Q = P (Var d - 2 a Cov(d, d^2) + a^2 Var d^2) / E Q
    power(delta) = Phi((mean(Z) - z_{1-alpha/2}) / sd(Z)) + Phi((-mean(Z) - z_{1-alpha/2}) / sd(Z))

Why the delta method and not plain Var(S): Q grows with S (a problem with a large loss adds to both), which
narrows Z; ignoring it under-states power by ~3 points at 40 problems x 10 samples, ICC 0.4 (0.72 against a
simulated 0.75; tests/stats/test_stats_power.py). The MDE is the delta in (0, mu] where power(delta) = 0.8
(solved numerically; inf when even delta = mu, every pass lost, falls short). rho = 0: every completion independent (the most discordance); rho = 1 with n = 1: the other
version never gains a problem (the least discordance, hence the smallest MDE). With one completion per problem
rho cannot be estimated from a run, and `comparison_mde` then uses rho = 1, so the stated MDE is a best case: the
design cannot show a smaller drop under any rho. The model has no problem-specific noise in the effect (a real
quantization helps some problems and hurts others, which adds discordance), so for any design the stated MDE is
optimistic: a drop below it cannot be shown, one above it is not guaranteed to be. The normal approximation is rough when fewer than ~10 discordant
problems are expected; there the discrete test has some more power than stated (tests/stats/test_stats_power.py
checks it by simulation where it holds).

For a per-test alpha after correction, pass e.g. alpha = 0.05 / m (Bonferroni; BH's first rank).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import Polynomial
from scipy import optimize, stats

from codequant.errors import CodequantError


def _beta_moments(mu: float, rho: float, upto: int = 4) -> np.ndarray:
    """E[pi^j], j = 0..upto, of the Beta law with mean mu and ICC rho (rho = 0: a point mass; 1: Bernoulli)."""
    if rho >= 1:
        return np.array([1.0] + [mu] * upto)
    out = [1.0]
    for i in range(upto):
        out.append(out[-1] * (mu * (1 - rho) + i * rho) / (1 - rho + i * rho))
    return np.array(out)


def _binomial_cumulants(n: int, scale: float) -> list[Polynomial]:
    """The first four cumulants of Binomial(n, scale * pi), as polynomials in pi."""
    p = Polynomial([0.0, scale])
    q = p * (1 - p)
    return [n * p, n * q, n * q * (1 - 2 * p), n * q * (1 - 6 * q)]


def _d_moments(delta: float, n: int, mu: float, rho: float) -> np.ndarray:
    """E[d^j], j = 1..4, of one problem's d_p = x_p - y_p under the model in the module docstring."""
    kx = _binomial_cumulants(n, 1.0)
    ky = _binomial_cumulants(n, 1 - delta / mu)
    k1, k2, k3, k4 = (a + (-1) ** j * b for j, (a, b) in enumerate(zip(kx, ky, strict=True), 1))
    raw = [k1, k2 + k1**2, k3 + 3 * k2 * k1 + k1**3, k4 + 4 * k3 * k1 + 3 * k2**2 + 6 * k2 * k1**2 + k1**4]
    e_pi = _beta_moments(mu, rho)
    return np.array([float(np.dot(m.coef, e_pi[: len(m.coef)])) for m in raw])


def power(
    delta: float, n_problems: int, samples: int, base_rate: float, icc: float, *, alpha: float = 0.05
) -> float:
    """Approximate power of the two-sided clustered McNemar test to detect a pass@1 drop of `delta`."""
    _check(n_problems, samples, base_rate, icc, alpha)
    if not 0 < delta <= base_rate:
        raise CodequantError(f"a drop must lie in (0, base_rate={base_rate}] (got {delta})")
    m1, m2, m3, m4 = _d_moments(delta, samples, base_rate, icc)
    z = float(stats.norm.ppf(1 - alpha / 2))
    mean_s, mean_q = n_problems * m1, n_problems * m2
    a = mean_s / (2 * mean_q)
    var = n_problems * ((m2 - m1**2) - 2 * a * (m3 - m1 * m2) + a * a * (m4 - m2**2)) / mean_q
    mean_z = mean_s / math.sqrt(mean_q)
    if var <= 1e-15:  # every d_p equals its mean: Z is a constant
        return 1.0 if mean_z > z else 0.0
    sd = math.sqrt(var)
    return float(stats.norm.cdf((mean_z - z) / sd) + stats.norm.cdf((-mean_z - z) / sd))


def minimum_detectable_drop(
    n_problems: int, samples: int, base_rate: float, icc: float, *, alpha: float = 0.05, target: float = 0.8
) -> float:
    """Smallest pass@1 drop (a fraction, 0.05 = 5 points) detected with probability `target`; inf if none is."""
    _check(n_problems, samples, base_rate, icc, alpha)
    if not 0 < target < 1:
        raise CodequantError(f"target power must lie strictly between 0 and 1 (got {target})")
    if base_rate == 0:
        return math.inf  # nothing to lose

    def gap(delta: float) -> float:
        return power(delta, n_problems, samples, base_rate, icc, alpha=alpha) - target

    if gap(base_rate) < 0:
        return math.inf
    lo = base_rate * 1e-9
    if gap(lo) >= 0:
        return lo
    return float(optimize.brentq(gap, lo, base_rate, xtol=1e-10))


def estimate_icc(passes: Sequence[int], sizes: Sequence[int]) -> float:
    """ANOVA estimate of the intra-problem correlation from per-problem pass counts; nan if not estimable.

    rho = (MSB - MSW) / (MSB + (n0 - 1) MSW), with between- and within-problem mean squares of the 0/1 outcomes
    and n0 the (unbalanced) average problem size; clipped to [0, 1]. Needs more than one completion somewhere
    and some variation (all-pass or all-fail data give nan).
    """
    x = np.asarray(passes, dtype=float)
    n = np.asarray(sizes, dtype=float)
    k, total = len(n), float(n.sum())
    if k < 2 or total <= k:
        return math.nan
    rate = x / n
    mean = x.sum() / total
    msb = float((n * (rate - mean) ** 2).sum()) / (k - 1)
    msw = float((n * rate * (1 - rate)).sum()) / (total - k)
    n0 = (total - float((n * n).sum()) / total) / (k - 1)
    den = msb + (n0 - 1) * msw
    if den <= 0:
        return math.nan
    return float(min(max((msb - msw) / den, 0.0), 1.0))


def mde_sentence(
    n_problems: int, samples: int, base_rate: float, icc: float, *, alpha: float = 0.05, target: float = 0.8
) -> str:
    """'40 problems x 1 sample cannot show a drop below 12.3 points at 80% power (...)'."""
    mde = minimum_detectable_drop(n_problems, samples, base_rate, icc, alpha=alpha, target=target)
    design = f"{n_problems} problems x {samples} sample{'s' if samples != 1 else ''}"
    where = f"baseline pass@1 {100 * base_rate:.1f}%, ICC {icc:.2f}, alpha {alpha:g} two-sided"
    if math.isinf(mde):
        return f"{design} cannot show any drop at {100 * target:.0f}% power, not even to 0% pass@1 ({where})"
    return f"{design} cannot show a drop below {100 * mde:.1f} points at {100 * target:.0f}% power ({where})"


def _check(n_problems: int, samples: int, base_rate: float, icc: float, alpha: float) -> None:
    if n_problems < 1 or samples < 1:
        raise CodequantError(f"a design needs at least 1 problem and 1 sample (got {n_problems} x {samples})")
    if not 0 <= base_rate <= 1:
        raise CodequantError(f"base_rate must lie in [0, 1] (got {base_rate})")
    if not 0 <= icc <= 1:
        raise CodequantError(f"icc must lie in [0, 1] (got {icc})")
    if not 0 < alpha < 1:
        raise CodequantError(f"alpha must lie strictly between 0 and 1 (got {alpha})")


def comparison_mde(
    base_passes: Sequence[int], sizes: Sequence[int], *, alpha: float = 0.05, target: float = 0.8
) -> tuple[float, float]:
    """(MDE, ICC used) of a run's design from its baseline's per-problem pass counts and completion counts.

    The design is len(sizes) problems x round(mean size) samples at the baseline's pass rate. The ICC is
    estimated from the baseline when problems have several completions; with one each (or no variation to
    estimate it from) it is 1, the best case, so the MDE is a lower bound (see the module docstring).
    """
    n = np.asarray(sizes, dtype=float)
    if not len(n):
        raise CodequantError("no problems to plan with")
    total = float(n.sum())
    rate = float(np.sum(base_passes)) / total
    icc = estimate_icc(base_passes, sizes) if n.max() > 1 else math.nan
    icc = 1.0 if math.isnan(icc) else icc
    samples = max(1, round(total / len(n)))
    return minimum_detectable_drop(len(n), samples, rate, icc, alpha=alpha, target=target), icc
