"""Clustered McNemar (Durkalski, Obuchowski) and the sign-flip permutation test over problems."""

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from codequant.errors import CodequantError
from codequant.stats.clustered import cluster_counts, clustered_mcnemar, permutation_test
from codequant.stats.mcnemar import mcnemar


def _clustered_null(rng, problems, samples, rho, effect=0.0, redraw=0.5):
    """Outcomes of two versions with problem difficulty from a Beta law of ICC rho.

    The other version redraws a problem's pass probability with probability `redraw` (quantization helps some
    problems and hurts others: the source of correlated discordance); the pair (pi, pi') is exchangeable, so
    H0 holds exactly when `effect` (a proportional loss of the other) is 0.
    """
    mu = 0.5
    a, b = mu * (1 - rho) / rho, (1 - mu) * (1 - rho) / rho
    pi = rng.beta(a, b, size=problems)
    pi_other = np.where(rng.random(problems) < redraw, rng.beta(a, b, size=problems), pi)
    base = rng.random((problems, samples)) < pi[:, None]
    other = rng.random((problems, samples)) < (pi_other * (1 - effect))[:, None]
    clusters = np.repeat(np.arange(problems), samples)
    return base.ravel(), other.ravel(), clusters


def test_one_pair_per_cluster_is_mcnemar_chi_square():
    rng = np.random.default_rng(1)
    base = rng.random(200) < 0.6
    other = rng.random(200) < 0.5
    res = clustered_mcnemar(base, other, range(200))
    table = [[np.sum(base & other), np.sum(base & ~other)], [np.sum(~base & other), np.sum(~base & ~other)]]
    ref = sm_mcnemar(table, exact=False, correction=False)  # statsmodels: the uncorrected chi-square
    assert (res.b, res.c) == (table[0][1], table[1][0])
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.n_clusters == res.n_pairs == 200


def test_hand_computed_durkalski_and_edge_cases():
    # problem A: b=3, c=0; problem B: b=1, c=1; problem C: b=0, c=1 -> (4-2)^2 / (9 + 0 + 1) = 0.4
    base = [1, 1, 1, 1, 1, 0, 0, 0, 0]
    other = [0, 0, 0, 0, 1, 1, 0, 0, 1]
    clusters = ["A", "A", "A", "B", "B", "B", "C", "C", "C"]
    res = clustered_mcnemar(np.array(base, bool), np.array(other, bool), clusters)
    assert (res.b, res.c, res.n_clusters) == (4, 2, 3)
    assert res.statistic == pytest.approx(0.4)
    same = clustered_mcnemar([True, False], [True, False], ["a", "b"])
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    balanced = clustered_mcnemar([True, False], [False, True], ["a", "a"])  # B == C, every d_p == 0
    assert balanced.p_value == 1.0
    with pytest.raises(CodequantError, match="differ in length"):
        cluster_counts([True], [True, False], ["a", "a"])
    with pytest.raises(CodequantError, match="unknown clustered method"):
        clustered_mcnemar([True], [False], ["a"], method="nope")


def test_per_completion_test_is_too_confident_when_completions_share_difficulty():
    """Type-I error under H0 with correlated completions: McNemar per completion far above alpha, clustered near it."""
    rng = np.random.default_rng(0)
    sims, alpha = 300, 0.05
    naive = durk = obu = 0
    for _ in range(sims):
        base, other, clusters = _clustered_null(rng, problems=60, samples=10, rho=0.6)
        naive += mcnemar(base, other).p_value < alpha
        durk += clustered_mcnemar(base, other, clusters).p_value < alpha
        obu += clustered_mcnemar(base, other, clusters, method="obuchowski").p_value < alpha
    assert naive / sims > 0.15  # the study's design over-rejects
    assert durk / sims < 0.09 and obu / sims < 0.09  # nominal 0.05, Monte Carlo SE ~0.013


def test_clustered_test_still_detects_a_real_drop():
    rng = np.random.default_rng(3)
    base, other, clusters = _clustered_null(rng, problems=150, samples=10, rho=0.5, effect=0.3)
    assert clustered_mcnemar(base, other, clusters).p_value < 1e-3
    assert clustered_mcnemar(base, other, clusters, method="obuchowski").p_value < 1e-3


def test_exact_permutation_by_enumeration():
    # d_p = +2, +1, -1: |sum| = 2; sign patterns with |±2 ±1 ±1| >= 2: (+,+,+)=4 (+,+,-)=2 (+,-,+)=2 (-,+,+)=0
    # (+,-,-)=0 and mirrors -> 6 of 8
    base = [1, 1, 1, 0]
    other = [0, 0, 0, 1]
    res = permutation_test(np.array(base, bool), np.array(other, bool), ["a", "a", "b", "c"])
    assert res.n_resamples == 0 and res.p_value == pytest.approx(6 / 8)
    none = permutation_test([True, True], [True, True], ["a", "b"])
    assert none.p_value == 1.0
    with pytest.raises(CodequantError, match="n_resamples"):
        permutation_test([True], [False], ["a"], n_resamples=0)


def test_monte_carlo_permutation_agrees_with_clustered_p_and_is_seeded():
    rng = np.random.default_rng(7)
    base, other, clusters = _clustered_null(rng, problems=120, samples=8, rho=0.4, effect=0.12)
    clustered = clustered_mcnemar(base, other, clusters).p_value
    perm = permutation_test(base, other, clusters, n_resamples=20_000, seed=1)
    assert perm.n_resamples == 20_000
    se = np.sqrt(perm.p_value * (1 - perm.p_value) / perm.n_resamples)
    # the chi-square approximation and the randomisation law agree to a few Monte Carlo SEs plus 15%
    assert abs(perm.p_value - clustered) < 4 * se + 0.15 * clustered
    assert permutation_test(base, other, clusters, n_resamples=500, seed=1) == permutation_test(
        base, other, clusters, n_resamples=500, seed=1
    )
    assert 0 < permutation_test(base, other, clusters, n_resamples=50, seed=1, exact_max=0).p_value
