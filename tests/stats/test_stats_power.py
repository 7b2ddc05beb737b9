"""Power and minimum detectable drop of the clustered McNemar design, checked by simulation."""

import math

import numpy as np
import pytest

from codequant.errors import CodequantError
from codequant.stats.clustered import clustered_mcnemar
from codequant.stats.power import comparison_mde, estimate_icc, mde_sentence, minimum_detectable_drop, power


def _simulate_power(rng, problems, samples, mu, rho, delta, sims=400):
    """The power model itself: pi ~ Beta(mean mu, ICC rho), the other keeps (1 - delta / mu) of each pi."""
    a, b = mu * (1 - rho) / rho, (1 - mu) * (1 - rho) / rho
    clusters = np.repeat(np.arange(problems), samples)
    hits = 0
    for _ in range(sims):
        pi = rng.beta(a, b, size=problems)
        base = (rng.random((problems, samples)) < pi[:, None]).ravel()
        other = (rng.random((problems, samples)) < (pi * (1 - delta / mu))[:, None]).ravel()
        hits += clustered_mcnemar(base, other, clusters).p_value < 0.05
    return hits / sims


@pytest.mark.parametrize("problems,samples,rho,delta", [(40, 10, 0.4, 0.08), (160, 5, 0.7, 0.05)])
def test_power_formula_matches_simulation(problems, samples, rho, delta):
    rng = np.random.default_rng(11)
    predicted = power(delta, problems, samples, 0.5, rho)
    simulated = _simulate_power(rng, problems, samples, 0.5, rho, delta, sims=3000)
    assert 0.3 < predicted < 0.97  # a design in the informative range
    # Monte Carlo SE <= 0.009 at 3000 runs; without the delta-method term (Var S alone) the first design's
    # prediction is 0.718 against a simulated 0.754, outside this tolerance
    assert simulated == pytest.approx(predicted, abs=0.025)


def test_mde_reaches_the_target_power_and_shrinks_with_problems():
    mde = minimum_detectable_drop(40, 1, 0.3, 1.0)
    assert power(mde, 40, 1, 0.3, 1.0) == pytest.approx(0.8, abs=1e-6)
    assert minimum_detectable_drop(160, 1, 0.3, 1.0) < mde
    assert minimum_detectable_drop(40, 20, 0.3, 0.2) < minimum_detectable_drop(40, 1, 0.3, 0.2)
    # under the proportional-loss model ICC 1 is the best case (no discordance from problems both versions miss)
    assert (
        minimum_detectable_drop(40, 20, 0.3, 1.0)
        < minimum_detectable_drop(40, 20, 0.3, 0.8)
        < minimum_detectable_drop(40, 20, 0.3, 0.1)
    )
    assert math.isinf(minimum_detectable_drop(3, 1, 0.2, 1.0))
    assert math.isinf(minimum_detectable_drop(40, 1, 0.0, 1.0))


def test_icc_estimate_recovers_the_simulated_correlation():
    rng = np.random.default_rng(5)
    rho, mu = 0.5, 0.4
    pi = rng.beta(mu * (1 - rho) / rho, (1 - mu) * (1 - rho) / rho, size=2000)
    passes = rng.binomial(20, pi)
    assert estimate_icc(passes, [20] * 2000) == pytest.approx(rho, abs=0.03)
    assert math.isnan(estimate_icc([1, 0], [1, 1]))  # one completion each: not estimable
    mde, icc = comparison_mde([1, 0, 1, 1], [1, 1, 1, 1])
    assert icc == 1.0 and mde == pytest.approx(minimum_detectable_drop(4, 1, 0.75, 1.0))


def test_sentence_and_checks():
    text = mde_sentence(40, 1, 0.3, 1.0)
    assert text.startswith("40 problems x 1 sample cannot show a drop below ") and "80% power" in text
    assert "cannot show any drop" in mde_sentence(2, 1, 0.1, 1.0)
    with pytest.raises(CodequantError, match="at least 1 problem"):
        power(0.1, 0, 1, 0.5, 0.5)
    with pytest.raises(CodequantError, match="a drop must lie"):
        power(0.6, 10, 1, 0.5, 0.5)
