import pytest
from scipy import stats

from codequant.errors import CodequantError
from codequant.stats.wilcoxon import wilcoxon_metric, wilcoxon_paired


def test_exact_small_sample_hand_value():
    # other - base = -1..-5: every rank is negative, W+ = 0; exact two-sided p = 2 / 2^5.
    res = wilcoxon_paired([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert res.statistic == 0
    assert res.p_value == pytest.approx(2 / 32)
    assert res.median_diff == -3 and res.mean_diff == -3
    assert (res.n, res.n_nonzero) == (5, 5)


def test_agrees_with_scipy_and_handles_zero_differences():
    base = [0.1, 0.5, 0.3, 0.9, 0.2, 0.4, 0.8, 0.7]
    other = [0.0, 0.6, 0.1, 0.5, 0.2, 0.1, 0.75, 0.4]
    res = wilcoxon_paired(base, other)
    ref = stats.wilcoxon(other, base, zero_method="wilcox")
    assert res.p_value == pytest.approx(ref.pvalue) and res.n_nonzero == 7
    same = wilcoxon_paired(base, base)
    assert same.p_value == 1.0 and same.n_nonzero == 0


def test_metric_pairs_by_task_and_refuses_mismatch():
    base = {"a": -10.0, "b": -12.0, "c": -9.0, "d": -20.0, "e": -7.0, "f": -8.0}
    other = {k: v - 1.0 - 0.1 * i for i, (k, v) in enumerate(base.items())}
    assert wilcoxon_metric(base, other).p_value == pytest.approx(2 / 64)
    with pytest.raises(CodequantError, match="different problems"):
        wilcoxon_metric(base, {"a": 1.0, "z": 2.0})
    assert wilcoxon_metric(base, {**other, "z": 0.0}, common_only=True).n == 6
