"""How paired runs are compared, as one frozen settings object, and what a comparison row is labelled with.

`codequant compare`, a study's compare steps (`stats:` and `correction:` of the YAML), the report's failure growth
and the re-test of the published tables all build one `CompareOptions`; `compare_runs`, `compare_csv`,
`compare_outcome_groups`, `compare_pair` and `stats.growth.growth_tests` take it instead of a dozen loose keywords.
It is checked once, here, so a bad `--alpha` or `--test` fails before any run is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from codequant.errors import CodequantError
from codequant.stats.correction import normalize
from codequant.stats.mcnemar import CI_METHODS, METHODS
from codequant.stats.pairing import PAIRINGS, PROBLEM_RULES

TESTS = ("auto", "mcnemar", "clustered", "permutation")


@dataclass(frozen=True)
class CompareOptions:
    """The test settings of a comparison (docs/statistics.md).

    by: pair "completion" i against completion i, or by "problem" (one outcome per problem, by `rule`).
    rule: with by="problem": "majority" (more than half pass; a tie fails) | "any" | "all".
    method: McNemar's p: "exact" (binomial) | "asymptotic" (chi-square).
    ci: the odds-ratio interval: "exact" (Clopper-Pearson) | "wald".
    alpha: 1 - the confidence level of every interval; also the level of the power statement and the * mark.
    correction: multiple-testing correction within a family: "bh" | "holm" | "bonferroni" | "none" (aliases
        such as "BH" are normalised).
    test: the test whose p is corrected: "auto" (McNemar with one completion per problem, else clustered) |
        "mcnemar" | "clustered" | "permutation".
    resamples: permutation-test and bootstrap resamples.
    seed: seed of the permutation test and the bootstrap (None: fresh randomness).
    """

    by: str = "completion"
    rule: str = "majority"
    method: str = "exact"
    ci: str = "exact"
    alpha: float = 0.05
    correction: str = "bh"
    test: str = "auto"
    resamples: int = 10_000
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.by not in PAIRINGS:
            raise CodequantError(f"unknown pairing {self.by!r}; use one of {', '.join(PAIRINGS)}")
        if self.rule not in PROBLEM_RULES:
            raise CodequantError(f"unknown problem rule {self.rule!r}; use one of {', '.join(PROBLEM_RULES)}")
        if self.method not in METHODS:
            raise CodequantError(f"unknown McNemar method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.ci not in CI_METHODS:
            raise CodequantError(f"unknown CI method {self.ci!r}; use one of {', '.join(CI_METHODS)}")
        if not 0 < self.alpha < 1:
            raise CodequantError("--alpha must lie strictly between 0 and 1")
        if self.test not in TESTS:
            raise CodequantError(f"unknown test {self.test!r}; use one of {', '.join(TESTS)}")
        if self.resamples < 1:
            raise CodequantError("--resamples must be at least 1")
        object.__setattr__(self, "correction", normalize(self.correction))


@dataclass(frozen=True)
class PairLabels:
    """What one comparison row names: the model, where it was measured (the language; for text scores, the
    benchmark), the baseline's and the other version's labels, and the correction family the row belongs to."""

    model: str = ""
    language: str = ""
    baseline: str = "base"
    other: str = "other"
    family: str = ""
