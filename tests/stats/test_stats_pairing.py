import pytest

from codequant.errors import CodequantError
from codequant.stats.pairing import pair_outcomes, pass_rates, problem_outcome

BASE = {"t/1": {0: True, 1: False, 2: True}, "t/0": {0: False, 1: False, 2: True}}
OTHER = {"t/0": {2: False, 0: True, 1: False}, "t/1": {0: True, 1: True, 2: False}}


def test_by_completion_aligns_index_with_index():
    p = pair_outcomes(BASE, OTHER)
    assert p.keys == [("t/0", 0), ("t/0", 1), ("t/0", 2), ("t/1", 0), ("t/1", 1), ("t/1", 2)]
    assert p.base == [False, False, True, True, False, True]
    assert p.other == [True, False, False, True, True, False]


def test_by_problem_rules():
    assert problem_outcome({0: True, 1: False}, "majority") is False  # a tie is not a majority
    assert problem_outcome({0: True, 1: True, 2: False}, "majority") is True
    assert problem_outcome({0: True, 1: False, 2: False}, "majority") is False
    assert problem_outcome({0: True, 1: False, 2: False}, "any") is True
    assert problem_outcome({0: True, 1: False}, "all") is False
    p = pair_outcomes(BASE, OTHER, by="problem")
    assert p.keys == [("t/0", -1), ("t/1", -1)]
    assert p.base == [False, True] and p.other == [False, True]
    assert pair_outcomes(BASE, OTHER, by="problem", rule="all").base == [False, False]


def test_mismatch_is_a_clear_error_unless_common_only():
    short = {"t/0": {0: True, 1: True}, "t/9": {0: True}}
    with pytest.raises(CodequantError, match=r"4 only in base.*\('t/1', 0\).*1 only in short.*t/9"):
        pair_outcomes(BASE, short, labels=("base", "short"))
    p = pair_outcomes(BASE, short, common_only=True)
    assert p.keys == [("t/0", 0), ("t/0", 1)]
    with pytest.raises(CodequantError, match="share no"):
        pair_outcomes(BASE, {"x": {0: True}}, common_only=True)
    with pytest.raises(CodequantError, match="pairing"):
        pair_outcomes(BASE, OTHER, by="sample")


def test_pass_rates():
    assert pass_rates(BASE) == {"t/1": pytest.approx(2 / 3), "t/0": pytest.approx(1 / 3)}
