import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from codequant.errors import CodequantError
from codequant.stats.correction import adjust


def test_bh_and_holm_hand_values():
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust(p, "none") == p


@pytest.mark.parametrize(
    ("ours", "theirs"), [("bh", "fdr_bh"), ("holm", "holm"), ("bonferroni", "bonferroni")]
)
def test_matches_statsmodels_on_random_families(ours, theirs):
    rng = np.random.default_rng(7)
    for m in (1, 2, 5, 17):
        p = np.concatenate([rng.uniform(0, 0.05, m // 2), rng.uniform(0, 1, m - m // 2)])
        p[0] = p[-1] if m > 1 else p[0]  # a tie
        assert adjust(p, ours) == pytest.approx(multipletests(p, method=theirs)[1].tolist(), rel=1e-12)


def test_caps_at_one_and_keeps_order():
    assert adjust([0.9, 0.8], "holm") == [1.0, 1.0]
    assert adjust([], "bh") == []


def test_unknown_method_and_bad_p():
    with pytest.raises(CodequantError, match="unknown correction"):
        adjust([0.1], "sidak")
    with pytest.raises(CodequantError, match=r"\[0, 1\]"):
        adjust([1.5], "bh")
