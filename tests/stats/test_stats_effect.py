"""pass@1 difference with problem-level intervals (bootstrap and clustered standard error)."""

import numpy as np
import pytest

from codequant.errors import CodequantError
from codequant.stats.effect import pass_diff


def test_one_completion_per_problem_se_is_the_paired_difference_se():
    rng = np.random.default_rng(0)
    base = rng.random(300) < 0.6
    other = rng.random(300) < 0.45
    res = pass_diff(base, other, range(300), n_resamples=4000, seed=1)
    d = other.astype(float) - base.astype(float)
    assert res.diff == pytest.approx(d.mean())
    assert res.se == pytest.approx(d.std(ddof=1) / np.sqrt(300), rel=1e-12)
    assert res.se_low == pytest.approx(res.diff - 1.959964 * res.se, rel=1e-6)
    # bootstrap percentile interval ~ the normal one when 300 problems are resampled
    assert res.ci_low == pytest.approx(res.se_low, abs=0.01) and res.ci_high == pytest.approx(
        res.se_high, abs=0.01
    )


def test_clustered_interval_is_wider_than_the_per_completion_one_and_covers():
    """20 completions of a problem share its difficulty: the interval must reflect 40 problems, not 800 pairs."""
    rng = np.random.default_rng(2)
    covered = 0
    widths = []
    for _ in range(60):
        pi = rng.beta(0.5, 0.5, size=40)
        pi_other = np.where(rng.random(40) < 0.5, rng.beta(0.5, 0.5, size=40), pi)
        base = (rng.random((40, 20)) < pi[:, None]).ravel()
        other = (rng.random((40, 20)) < pi_other[:, None]).ravel()
        res = pass_diff(base, other, np.repeat(np.arange(40), 20), n_resamples=1000, seed=0)
        covered += res.ci_low <= 0.0 <= res.ci_high  # the true difference is 0 (exchangeable versions)
        naive = np.std(other.astype(float) - base, ddof=1) / np.sqrt(800)
        widths.append((res.ci_high - res.ci_low) / (2 * 1.96 * naive))
    assert covered / 60 >= 0.85  # nominal 0.95
    assert np.median(widths) > 1.5  # a per-completion interval would be far too narrow


def test_seeded_and_checked():
    base, other, clusters = [True, True, False, True], [False, True, False, False], ["a", "a", "b", "c"]
    assert pass_diff(base, other, clusters, seed=3) == pass_diff(base, other, clusters, seed=3)
    assert pass_diff(base, other, clusters).diff == pytest.approx(-0.5)
    assert np.isnan(pass_diff([True], [False], ["a"]).se)
    with pytest.raises(CodequantError, match="confidence"):
        pass_diff(base, other, clusters, confidence=1.0)
    with pytest.raises(CodequantError, match="n_resamples"):
        pass_diff(base, other, clusters, n_resamples=0)
