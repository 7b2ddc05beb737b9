"""Which pairs of a study's runs are tested, and how they are grouped for multiple-testing correction.

Three questions, each answered by a paired test of completions (codequant.stats; `test`: auto is McNemar's
test with one completion per problem and the clustered McNemar with several, docs/statistics.md):
- vs_fp: every quantized version against the fp model (the study's RQ1); one correction family per
  (model, language) over all versions, as the study's rq1_stats.csv.
- calibration: the calibration kinds of one (method, bits, fine-tuned) against each other ("code" is the
  baseline when present); one family per (model, language).
- finetune: each fine-tuned version against the same version without fine-tuning, uncorrected, with the
  fine-tuned model as baseline (the orientation of the study's rq1-finetuned_stats.csv): OR > 1 means
  fine-tuning helped.

Text tasks (code summarization) have no pass/fail: `study_score_comparisons` tests every version against fp
with the Wilcoxon signed-rank test of per-problem mean scores, one family per metric (codequant.stats.scores).
"""

from __future__ import annotations

import math
from typing import Any

from codequant.stats import CompareOptions, PairLabels, compare_outcome_groups, compare_scores, correct_scores
from codequant.stats.pairing import Outcomes


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def study_comparisons(
    runs: list[tuple[dict[str, Any], Outcomes]],
    *,
    model: str,
    language: str,
    correction: str = "bh",
    test: str = "auto",
    resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Rows (dicts of codequant.stats.Comparison plus `kind`) for one model, benchmark and decoding."""
    groups = {(model, v["label"], language): o for v, o in runs}
    variants = {v["label"]: v for v, _ in runs}
    out: list[dict[str, Any]] = []

    def add(kind: str, correction: str, **kwargs: Any) -> None:
        options = CompareOptions(
            test=test, resamples=resamples, seed=seed, alpha=alpha, correction=correction
        )
        for c in compare_outcome_groups(groups, options, pairing_key="sample_index", **kwargs):
            out.append(_clean({**c.to_dict(), "kind": kind}))

    if "fp" in variants and len(variants) > 1:
        add("vs_fp", correction, baseline="fp")
    by_setting: dict[tuple, list[str]] = {}
    for label, v in variants.items():
        if v["method"] != "fp":
            by_setting.setdefault((v["method"], v["bits"], v["finetuned"]), []).append(label)
    cal_pairs = []
    for labels in by_setting.values():
        if len(labels) > 1:
            # baseline: Code calibration at the study's size, else Code at any size, else the first
            code = [x for x in labels if str(variants[x]["calibration"]).split(" ")[0] == "code"]
            base = next(
                (x for x in code if not variants[x].get("calibration_size")), code[0] if code else labels[0]
            )
            cal_pairs += [(base, x) for x in labels if x != base]
    if cal_pairs:
        add("calibration", correction, pairs=cal_pairs)
    ft_pairs = []
    for label, v in variants.items():
        if v["finetuned"]:
            plain = next(
                (
                    x
                    for x, w in variants.items()
                    if not w["finetuned"]
                    and w["method"] == v["method"]
                    and w["bits"] == v["bits"]
                    and w["calibration"] == v["calibration"]
                ),
                None,
            )
            if plain:
                ft_pairs.append((label, plain))
    if ft_pairs:
        add("finetune", "none", pairs=ft_pairs)
    return out


def study_score_comparisons(
    runs: list[tuple[dict[str, Any], dict[str, dict[str, dict[int, float]]]]],
    *,
    model: str,
    correction: str = "bh",
) -> list[dict[str, Any]]:
    """Rows (dicts of codequant.stats.ScoreComparison plus `kind` "vs_fp") of every version against fp, per
    metric; each metric's tests form one correction family. Without fp (or with fp alone) there are none."""
    fp = next((scores for v, scores in runs if v["label"] == "fp"), None)
    if fp is None:
        return []
    rows = [
        compare_scores(
            fp[metric],
            scores.get(metric, {}),
            PairLabels(model=model, baseline="fp", other=v["label"], family=metric),
            metric=metric,
        )
        for v, scores in runs
        if v["label"] != "fp"
        for metric in sorted(fp)
    ]
    return [_clean({**r.to_dict(), "kind": "vs_fp"}) for r in correct_scores(rows, correction)]
