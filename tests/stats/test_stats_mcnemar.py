import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from codequant.errors import CodequantError
from codequant.stats.mcnemar import discordant, mcnemar, mcnemar_counts, odds_ratio_ci


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (3, 0, 2 * 0.5**3),  # both tails of Binomial(3, 1/2) at the extremes
        (5, 1, 2 * (1 + 6) / 64),  # P(X <= 1 | n = 6) doubled
        (2, 10, 2 * (1 + 12 + 66) / 4096),  # P(X <= 2 | n = 12) doubled; symmetric in b and c
        (7, 7, 1.0),
        (0, 0, 1.0),
    ],
)
def test_exact_p_matches_hand_computed_binomial(b, c, expected):
    assert mcnemar_counts(b, c).p_value == pytest.approx(expected, rel=1e-12)


def test_exact_and_asymptotic_agree_with_statsmodels():
    table = np.array([[40, 13], [4, 43]])  # b = 13 (base passes, other fails), c = 4
    exact = mcnemar_counts(13, 4, 100)
    assert exact.p_value == pytest.approx(sm_mcnemar(table, exact=True).pvalue, rel=1e-12)
    for continuity in (True, False):
        asym = mcnemar_counts(13, 4, 100, method="asymptotic", continuity=continuity)
        ref = sm_mcnemar(table, exact=False, correction=continuity)
        assert asym.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert asym.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert mcnemar_counts(13, 4, method="asymptotic").statistic == pytest.approx((9 - 1) ** 2 / 17)


def test_orientation_or_above_one_means_other_is_worse():
    base = [True, True, True, False, False, True]
    other = [False, False, True, True, False, True]
    assert discordant(base, other) == (2, 1, 6)
    worse = mcnemar(base, other)
    assert (worse.b, worse.c, worse.n_pairs) == (2, 1, 6)
    assert worse.odds_ratio == 2.0
    better = mcnemar(other, base)
    assert better.odds_ratio == 0.5


def test_exact_ci_is_clopper_pearson_mapped_to_odds():
    lo, hi = odds_ratio_ci(5, 1)
    p_lo = stats.beta.ppf(0.025, 5, 2)
    p_hi = 0.975 ** (1 / 6)  # upper Clopper-Pearson bound for 5 of 6 in closed form: Beta(6, 1) quantile
    assert lo == pytest.approx(p_lo / (1 - p_lo), rel=1e-9)
    assert hi == pytest.approx(p_hi / (1 - p_hi), rel=1e-9)
    assert lo < 5.0 < hi


def test_exact_ci_excludes_one_when_the_test_rejects():
    res = mcnemar_counts(40, 15)
    assert res.p_value < 0.05 and res.ci_low > 1
    res = mcnemar_counts(12, 10)
    assert res.p_value > 0.05 and res.ci_low < 1 < res.ci_high


def test_wald_ci_and_zero_cells():
    lo, hi = odds_ratio_ci(10, 2, method="wald")
    half = 1.959963984540054 * math.sqrt(1 / 10 + 1 / 2)
    assert (lo, hi) == pytest.approx((5 * math.exp(-half), 5 * math.exp(half)), rel=1e-9)
    one_sided = mcnemar_counts(6, 0)
    assert one_sided.odds_ratio == math.inf and one_sided.ci_high == math.inf and one_sided.ci_low > 0
    assert math.isnan(mcnemar_counts(0, 0, 10).odds_ratio)
    assert all(math.isfinite(x) for x in odds_ratio_ci(6, 0, method="wald"))  # Haldane-Anscombe 0.5


def test_bad_inputs_are_user_errors():
    with pytest.raises(CodequantError, match="length"):
        mcnemar([True], [True, False])
    with pytest.raises(CodequantError, match="method"):
        mcnemar_counts(1, 2, method="midp")
    with pytest.raises(CodequantError, match="n_pairs"):
        mcnemar_counts(5, 5, 3)
