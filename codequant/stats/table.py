"""How comparison rows look in a terminal: one rich table, numbers rounded for reading (JSON keeps them whole).

The title names the test behind `p` (and `p adj`); `p McNemar` is always the exact per-completion test, so
the study's numbers stay visible beside the clustered ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table

from codequant.stats.compare import Comparison
from codequant.stats.scores import ScoreComparison


def _num(x: float, digits: int = 3) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"


def _p(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.2e}" if x < 1e-3 else f"{x:.4f}"


AUTO_CLUSTERED_NOTE = (
    "n > 1 completions per problem: clustered McNemar (Durkalski); --test mcnemar gives the "
    "paper's per-completion test"
)


def describe_test(row: Comparison) -> str:
    """Which test gave a row's p-value, in words."""
    if row.test == "clustered":
        return "clustered McNemar (Durkalski), problems as clusters"
    if row.test == "permutation":
        return f"sign-flip permutation over problems ({row.method})"
    return f"McNemar ({row.method}) per completion"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:+.1f}"


def _mde(x: float) -> str:
    if math.isnan(x):
        return "-"
    return "none" if math.isinf(x) else f"{100 * x:.1f}"


def comparison_table(rows: Sequence[Comparison], alpha: float = 0.05, requested_test: str = "auto") -> Table:
    """Rows as a table; significant adjusted p-values are marked with *.

    `requested_test` is what the caller asked for: when "auto" chose the clustered test the caption says so,
    with how to get the paper's per-completion test.
    """
    correction = rows[0].correction if rows else "none"
    labels = sorted({describe_test(r) for r in rows})
    mixed = len(labels) > 1
    level = int(round((1 - alpha) * 100))
    table = Table(
        title=f"{labels[0] if len(labels) == 1 else 'tests per row'}, paired by "
        f"{rows[0].pairing if rows else 'completion'}, correction: {correction}; "
        "OR = b/c > 1: other is worse"
    )
    notes = [
        f"diff = pass@1 other - base in points, {level}% problem-bootstrap CI; MDE = smallest drop "
        f"detectable at 80% power (points, best case; codequant.stats.power)"
    ]
    if requested_test == "auto" and any(r.test == "clustered" for r in rows):
        notes.insert(0, AUTO_CLUSTERED_NOTE)
    keys = sorted({r.pairing_key for r in rows if r.pairing_key})
    if "order" in keys:
        notes.append("completions paired by their order within each problem (the CSV has no sample column)")
    table.caption = "\n".join(notes)
    columns = [
        "model",
        "language",
        "baseline",
        "other",
        "pass base",
        "pass other",
        "diff",
        f"{level}% CI",
        "MDE",
        "b",
        "c",
        "pairs",
        "OR",
        f"OR {level}% CI",
        *(["test"] if mixed else []),
        "p",
        "p McNemar",
        "p adj",
    ]
    for col in columns:
        table.add_column(
            col, justify="left" if col in ("model", "language", "baseline", "other", "test") else "right"
        )
    for r in rows:
        pairs = (
            f"{r.n_pairs} ({r.n_problems}x{r.samples_per_problem:g})"
            if r.n_problems and r.samples_per_problem != 1
            else str(r.n_pairs)
        )
        table.add_row(
            r.model,
            r.language,
            r.baseline,
            r.other,
            f"{100 * r.baseline_pass_rate:.1f}%",
            f"{100 * r.other_pass_rate:.1f}%",
            _pct(r.pass_diff),
            f"[{_pct(r.diff_ci_low)}, {_pct(r.diff_ci_high)}]",
            _mde(r.mde),
            str(r.b),
            str(r.c),
            pairs,
            _num(r.odds_ratio),
            f"[{_num(r.ci_low)}, {_num(r.ci_high)}]",
            *([r.test] if mixed else []),
            _p(r.p_value),
            _p(r.p_mcnemar),
            _p(r.p_adjusted) + (" *" if r.p_adjusted < alpha else ""),
        )
    return table


def score_table(rows: Sequence[ScoreComparison], alpha: float = 0.05) -> Table:
    """Text-scored runs (code summarization): per metric, the means, their difference and the Wilcoxon test."""
    correction = rows[0].correction if rows else "none"
    table = Table(
        title=f"Wilcoxon signed-rank test of per-problem mean scores, paired by problem, correction: "
        f"{correction} (per baseline and metric)"
    )
    table.caption = (
        "BLEU-4: sacrebleu sentence BLEU 0-100 (exp smoothing); ROUGE-L: F1 0-1 (rouge-score, stemmed); "
        "diff = other - base"
    )
    for col in (
        "model",
        "metric",
        "baseline",
        "other",
        "base",
        "other mean",
        "diff",
        "median diff",
        "problems",
        "differ",
        "p",
        "p adj",
    ):
        table.add_column(col, justify="left" if col in ("model", "metric", "baseline", "other") else "right")
    for r in rows:
        digits = 2 if r.metric == "bleu" else 4
        table.add_row(
            r.model,
            r.metric,
            r.baseline,
            r.other,
            f"{r.baseline_mean:.{digits}f}",
            f"{r.other_mean:.{digits}f}",
            f"{r.mean_diff:+.{digits}f}",
            f"{r.median_diff:+.{digits}f}",
            str(r.n_problems),
            str(r.n_nonzero),
            _p(r.p_value),
            _p(r.p_adjusted) + (" *" if r.p_adjusted < alpha else ""),
        )
    return table
