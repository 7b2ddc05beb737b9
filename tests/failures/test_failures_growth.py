"""Counting failure classes and testing their growth from fp: orientation (new vs gone), the test each design
gets (exact McNemar with one completion per problem, Durkalski with several, computed here by hand), BH across
every (version, class) row, and clear errors; plus the degenerate-output detectors on hand-written text."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from codequant.errors import CodequantError
from codequant.failures import counts
from codequant.failures.degenerate import no_code, repetitive
from codequant.stats.growth import growth_tests


def design(
    problems: int, samples: int, rates: dict[str, float], seed: int
) -> dict[str, dict[int, str | None]]:
    """Random runs: each completion draws a class with the given probabilities (rest: passed); each problem has
    its own difficulty so that completions of one problem are correlated."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in range(problems):
        hard = rng.uniform(0.2, 1.8)
        row = {}
        for i in range(samples):
            u, acc, found = rng.uniform(), 0.0, None
            for cls, rate in rates.items():
                acc += min(rate * hard, 0.45)
                if u < acc:
                    found = cls
                    break
            row[i] = found
        out[f"P/{p}"] = row
    return out


def test_counts_cover_every_class_with_zeros():
    n = counts({"a": {0: None, 1: "syntax"}, "b": {0: "syntax", 1: "assertion"}})
    assert n["completions"] == 4 and n["passed"] == 1 and n["failed"] == 3
    assert n["syntax"] == 2 and n["assertion"] == 1 and n["timeout"] == 0 and n["hallucinated_api"] == 0


def test_a_growing_class_is_found_and_its_clustered_p_is_durkalskis():
    base = design(40, 5, {"assertion": 0.2, "syntax": 0.02}, seed=1)
    other = {t: dict(s) for t, s in base.items()}
    rng = np.random.default_rng(2)
    for s in other.values():  # the quantized version breaks the syntax of a third of the passing completions
        for i, c in s.items():
            if c is None and rng.uniform() < 0.33:
                s[i] = "syntax"
    rows = {r.failure: r for r in growth_tests(base, {"q": other})}
    syntax = rows["syntax"]
    assert syntax.test == "clustered" and syntax.grows and syntax.other_count > syntax.base_count
    assert syntax.new == syntax.other_count - syntax.base_count and syntax.gone == 0
    # Durkalski by hand: d_p = (new - gone) in problem p, X^2 = (sum d)^2 / sum d^2
    d = np.array([sum((other[t][i] == "syntax") - (base[t][i] == "syntax") for i in base[t]) for t in base])
    x2 = d.sum() ** 2 / (d**2).sum()
    assert syntax.p_value == pytest.approx(stats.chi2.sf(x2, 1), rel=1e-9)
    # the assertion class did not change at all: no difference, p = 1, not growing
    assert rows["assertion"].new == rows["assertion"].gone == 0 and rows["assertion"].p_value == 1.0
    assert not rows["assertion"].grows
    # the other way round, syntax errors fell: never "grows"
    back = {r.failure: r for r in growth_tests(other, {"fp": base})}
    assert back["syntax"].gone == syntax.new and not back["syntax"].grows


def test_one_completion_per_problem_gets_the_exact_mcnemar_and_bh_covers_every_row():
    base = design(120, 1, {"assertion": 0.3, "runtime": 0.05}, seed=3)
    others = {
        "q4": design(120, 1, {"assertion": 0.32, "runtime": 0.06}, seed=4),
        "q2": design(120, 1, {"assertion": 0.3, "runtime": 0.1, "degenerate": 0.15}, seed=5),
    }
    rows = growth_tests(base, others)
    assert {r.test for r in rows} == {"mcnemar"}
    for r in rows:
        n = r.new + r.gone
        exact = stats.binomtest(r.new, n, 0.5).pvalue if n else 1.0
        assert r.p_value == pytest.approx(min(1.0, exact), rel=1e-9)
    bh = multipletests([r.p_value for r in rows], method="fdr_bh")[1]
    assert [r.p_adjusted for r in rows] == pytest.approx(list(bh), rel=1e-12)
    assert {(r.other, r.failure) for r in rows if r.grows} >= {("q2", "degenerate")}


def test_runs_of_different_completions_are_an_error_unless_common_only():
    base = {"a": {0: None, 1: "syntax"}, "b": {0: None}}
    other = {"a": {0: "syntax", 1: "syntax"}}
    with pytest.raises(CodequantError, match="common-only"):
        growth_tests(base, {"q": other})
    rows = growth_tests(base, {"q": other}, common_only=True)
    assert [(r.failure, r.n_pairs, r.new, r.gone) for r in rows] == [("syntax", 2, 1, 0)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", True),
        ("   \n\n", True),
        ("    # TODO: implement\n    pass\n", True),
        ('    """Return the answer."""\n    ...\n', True),
        ("    return 42\n", False),
        ("    # compute\n    x = 1\n", False),
    ],
)
def test_no_code_in_python(text, expected):
    assert no_code(text, "python") is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("  // later\n  }\n", True),
        ("/* nothing */ ;", True),
        ("        return x * 2;\n    }\n", False),
    ],
)
def test_no_code_in_java(text, expected):
    assert no_code(text, "java") is expected


def test_repetition_flags_loops_and_not_ordinary_code():
    ordinary = (
        "    result = []\n    for i in range(len(numbers)):\n        for j in range(i + 1, len(numbers)):\n"
        "            if abs(numbers[i] - numbers[j]) < threshold:\n                return True\n"
        "    if not numbers:\n        return False\n    if len(numbers) == 1:\n        return False\n"
        "    total = sum(numbers)\n    mean = total / len(numbers)\n    return mean > threshold\n"
    )
    assert not repetitive(ordinary)
    braces = "            }\n        }\n    }\n}\n" * 2  # closing braces repeat in any nested Java code
    assert not repetitive(braces)
    assert repetitive("    x = x + 1\n" * 4)
    loop = "    if n == 1:\n        return 1\n    if n == 2:\n        return 2\n"
    assert repetitive(
        "".join(loop.replace("1", str(k)).replace("2", str(k + 1)) for k in range(2)) + loop * 8
    )
