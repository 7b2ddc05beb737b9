"""Statistics of paired runs: exact McNemar with odds ratios, multiple-testing correction, Wilcoxon.

The public API is re-exported here so a study runner or report can `from codequant.stats import ...`.
"""

from codequant.stats.compare import (
    Comparison,
    compare_csv,
    compare_outcome_groups,
    compare_pair,
    compare_runs,
    correct,
    parse_pair,
)
from codequant.stats.correction import CORRECTIONS, adjust
from codequant.stats.mcnemar import McNemarResult, discordant, mcnemar, mcnemar_counts, odds_ratio_ci
from codequant.stats.pairing import Paired, pair_outcomes, pass_rates, problem_outcome
from codequant.stats.runs import Run, read_outcome_csv, read_run
from codequant.stats.wilcoxon import WilcoxonResult, wilcoxon_metric, wilcoxon_paired

__all__ = [
    "CORRECTIONS", "Comparison", "McNemarResult", "Paired", "Run", "WilcoxonResult", "adjust", "compare_csv",
    "compare_outcome_groups", "compare_runs", "correct", "discordant", "mcnemar", "mcnemar_counts",
    "odds_ratio_ci", "pair_outcomes", "parse_pair", "pass_rates", "problem_outcome", "read_outcome_csv",
    "read_run", "compare_pair", "wilcoxon_metric", "wilcoxon_paired",
]
