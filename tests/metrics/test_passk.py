import math

import pytest

from codequant.metrics.passk import mean_pass_at_k, pass_at_k, pass_at_ks


def _comb_form(n, c, k):
    return 1 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (20, 1, 10), (200, 7, 100)])
def test_matches_binomial_form(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_comb_form(n, c, k), abs=1e-12)


def test_pass_at_1_is_fraction_and_edges():
    assert pass_at_k(20, 5, 1) == pytest.approx(0.25)
    assert pass_at_k(10, 8, 5) == 1.0  # fewer than k failures: some correct sample is always drawn
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 6)


def test_large_n_is_stable():
    v = pass_at_k(10_000, 3, 1000)
    assert 0 < v < 1 and v == pytest.approx(1 - (9000 / 10000) ** 3, rel=1e-3)


def test_average_over_problems():
    assert mean_pass_at_k([(2, 1), (2, 0)], 1) == pytest.approx(0.25)
    res = pass_at_ks({"a": [True] + [False] * 9, "b": [False] * 10})
    assert set(res) == {"pass@1", "pass@5", "pass@10"}
    assert res["pass@1"] == pytest.approx(0.05) and res["pass@10"] == pytest.approx(0.5)
