"""Paired comparison of text-scored runs (code summarization): Wilcoxon signed-rank per metric over problems.

A summarization run has no pass/fail, so McNemar does not apply. Each problem gets one number per metric, the
mean of its samples' scores (sentence BLEU-4, ROUGE-L F1; with one sample per problem the sample's own score),
and two runs are compared by the Wilcoxon signed-rank test of the per-problem differences `other - baseline`
(codequant.stats.wilcoxon: two-sided, zero differences dropped as in Wilcoxon's original method, all-zero
differences give p = 1). Problems pair by task id; a problem only one run has is an error unless `common_only`.

Families for multiple-testing correction: one per (baseline, metric) - every other run's BLEU test against the
same baseline is one family, its ROUGE-L tests another - mirroring the pass@1 family of every version against
one baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from codequant.errors import CodequantError
from codequant.stats.correction import adjust, normalize
from codequant.stats.options import PairLabels
from codequant.stats.runs import Run, read_run
from codequant.stats.wilcoxon import wilcoxon_metric

Scores = Mapping[str, Mapping[int, float]]  # {task_id: {sample_index: score}}


@dataclass(frozen=True)
class ScoreComparison:
    """One metric of one run against a baseline; `p_adjusted` is corrected within `family`."""

    model: str
    benchmark: str
    metric: str
    baseline: str
    other: str
    n_problems: int
    baseline_mean: float  # mean over problems of the per-problem means
    other_mean: float
    mean_diff: float  # other - baseline, over problems
    median_diff: float
    n_nonzero: int  # problems whose scores differ (the ones the test ranks)
    statistic: float
    p_value: float
    p_adjusted: float
    correction: str = "none"
    family: str = ""
    test: str = "wilcoxon"

    def to_dict(self) -> dict:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def problem_means(scores: Scores) -> dict[str, float]:
    """Each problem's mean score over its samples."""
    return {t: sum(s.values()) / len(s) for t, s in scores.items() if s}


def compare_scores(
    base: Scores, other: Scores, labels: PairLabels | None = None, *, metric: str, common_only: bool = False
) -> ScoreComparison:
    """Wilcoxon signed-rank test of one metric's per-problem means (uncorrected: p_adjusted = p_value).
    `labels.language` is the row's benchmark."""
    labels = labels or PairLabels()
    b, o = problem_means(base), problem_means(other)
    res = wilcoxon_metric(b, o, common_only=common_only)
    keys = sorted(set(b) & set(o))
    return ScoreComparison(
        model=labels.model,
        benchmark=labels.language,
        metric=metric,
        baseline=labels.baseline,
        other=labels.other,
        n_problems=res.n,
        baseline_mean=sum(b[k] for k in keys) / len(keys),
        other_mean=sum(o[k] for k in keys) / len(keys),
        mean_diff=res.mean_diff,
        median_diff=res.median_diff,
        n_nonzero=res.n_nonzero,
        statistic=res.statistic,
        p_value=res.p_value,
        p_adjusted=res.p_value,
        family=labels.family,
    )


def correct_scores(rows: Sequence[ScoreComparison], correction: str = "bh") -> list[ScoreComparison]:
    """Rows with `p_adjusted` corrected within each `family`."""
    correction = normalize(correction)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.family, []).append(i)
    out = list(rows)
    for idx in groups.values():
        for i, p in zip(idx, adjust([rows[i].p_value for i in idx], correction), strict=True):
            out[i] = replace(rows[i], p_adjusted=p, correction=correction)
    return out


def compare_score_runs(
    baseline: str | Path | Run,
    others: Iterable[str | Path | Run],
    *,
    correction: str = "bh",
    common_only: bool = False,
) -> list[ScoreComparison]:
    """Each other text-scored run against the baseline run, one test per metric (families: module docstring)."""
    items = [baseline, *others]
    if len(items) < 2:
        raise CodequantError("compare needs a baseline run and at least one other run")
    runs = [i if isinstance(i, Run) else read_run(i) for i in items]
    names = [r.label for r in runs]
    labels = [n if names.count(n) == 1 else str(r.path) for n, r in zip(names, runs, strict=True)]
    base = runs[0]
    rows = []
    for run, label in zip(runs[1:], labels[1:], strict=True):
        if not (base.scored and run.scored):
            raise CodequantError(
                f"{labels[0]} and {label}: one run is scored by text and the other by execution; "
                "compare runs of the same benchmark"
            )
        if base.benchmark and run.benchmark and base.benchmark != run.benchmark:
            raise CodequantError(
                f"{labels[0]} ran {base.benchmark} but {label} ran {run.benchmark}; "
                "compare runs of the same benchmark"
            )
        for metric in sorted(base.scores):
            pair = PairLabels(
                model=base.model or labels[0],
                language=base.benchmark or "",
                baseline=labels[0],
                other=label,
                family=f"{labels[0]}/{metric}",
            )
            rows.append(
                compare_scores(
                    base.scores[metric],
                    run.scores.get(metric, {}),
                    pair,
                    metric=metric,
                    common_only=common_only,
                )
            )
    return correct_scores(rows, correction)
