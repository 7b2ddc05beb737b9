"""Statistics of paired runs: McNemar per completion or clustered by problem (Durkalski, sign-flip permutation),
pass@1 differences with problem-level intervals, minimum detectable drops, multiple-testing correction, Wilcoxon.

The public API is re-exported here so a study runner or report can `from codequant.stats import ...`.
"""

from codequant.stats.clustered import ClusteredResult, clustered_mcnemar, permutation_test
from codequant.stats.compare import (
    TESTS,
    Comparison,
    choose_test,
    compare_csv,
    compare_outcome_groups,
    compare_pair,
    compare_runs,
    correct,
    parse_pair,
)
from codequant.stats.correction import CORRECTIONS, adjust
from codequant.stats.effect import PassDiff, pass_diff
from codequant.stats.mcnemar import McNemarResult, discordant, mcnemar, mcnemar_counts, odds_ratio_ci
from codequant.stats.options import CompareOptions, PairLabels
from codequant.stats.pairing import Paired, pair_outcomes, pass_rates, problem_outcome
from codequant.stats.power import comparison_mde, estimate_icc, mde_sentence, minimum_detectable_drop, power
from codequant.stats.runs import OutcomeTable, Run, read_outcome_csv, read_outcome_table, read_run
from codequant.stats.scores import ScoreComparison, compare_score_runs, compare_scores, correct_scores
from codequant.stats.wilcoxon import WilcoxonResult, wilcoxon_metric, wilcoxon_paired

__all__ = [
    "CORRECTIONS",
    "TESTS",
    "ClusteredResult",
    "CompareOptions",
    "Comparison",
    "McNemarResult",
    "OutcomeTable",
    "PairLabels",
    "Paired",
    "PassDiff",
    "Run",
    "ScoreComparison",
    "WilcoxonResult",
    "adjust",
    "choose_test",
    "clustered_mcnemar",
    "compare_csv",
    "compare_outcome_groups",
    "compare_pair",
    "compare_runs",
    "compare_score_runs",
    "compare_scores",
    "comparison_mde",
    "correct",
    "correct_scores",
    "discordant",
    "estimate_icc",
    "mcnemar",
    "mcnemar_counts",
    "mde_sentence",
    "minimum_detectable_drop",
    "odds_ratio_ci",
    "pair_outcomes",
    "parse_pair",
    "pass_diff",
    "pass_rates",
    "permutation_test",
    "power",
    "problem_outcome",
    "read_outcome_csv",
    "read_outcome_table",
    "read_run",
    "wilcoxon_metric",
    "wilcoxon_paired",
]
