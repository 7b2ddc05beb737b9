"""compare: the paired tests of one model, benchmark and decoding (codequant.study.comparisons): McNemar-type
tests of pass/fail for code generation, the Wilcoxon signed-rank test per metric for code summarization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.study.plan import Planning, Step


def plan(planning: Planning) -> None:
    """One comparison per benchmark and decoding that has more than one version to pair."""
    config = planning.config
    for evals in planning.evaluations:
        if len(evals.steps) < 2:
            continue
        bench, dec = evals.run.benchmark.name, evals.decoding.name
        planning.add(
            "compare",
            f"{planning.name}-{bench}-{dec}",
            {
                "model": planning.model,
                "benchmark": bench,
                "decoding": dec,
                "correction": config.correction,
                "stats": config.stats.model_dump(),
            },  # another test, another key
            [e.key for e in evals.steps],
            {"model": planning.name, "benchmark": bench, "language": evals.run.language, "decoding": dec},
        )


def run(
    step: Step,
    workdir: Path,
    inputs: dict[str, Path],
    settings: dict[str, Any],
    metas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every version against fp; calibration kinds against each other; fine-tuned against not (per language)."""
    from codequant.stats import read_run
    from codequant.study.comparisons import study_comparisons, study_score_comparisons

    read = [
        ((metas or {})[key]["variant"], read_run(inputs[key], label=(metas or {})[key]["variant"]["label"]))
        for key in step.deps
    ]
    check_same_dtype(read)
    if all(run.scored for _, run in read):
        return {
            "rows": [],
            "score_rows": study_score_comparisons(
                [(v, run.scores) for v, run in read],
                model=step.meta["model"],
                correction=step.config["correction"],
            ),
        }
    runs = [(v, run.outcomes) for v, run in read]
    stats = step.config.get("stats") or {}
    rows = study_comparisons(
        runs,
        model=step.meta["model"],
        language=step.meta["language"],
        correction=step.config["correction"],
        test=stats.get("test", "auto"),
        resamples=stats.get("resamples", 10_000),
        seed=stats.get("seed", 0),
        alpha=stats.get("alpha", 0.05),
    )
    return {"rows": rows}


def check_same_dtype(read: list) -> None:
    """Versions are paired only when their weights computed in the same dtype: against an fp16 baseline an fp32 run
    differs by more than its quantization (runner.dtype `auto` resolves per worker, so a mixed CPU/GPU grid could
    otherwise pair float32 with float16 runs). Runs from before dtypes were recorded count as float32."""
    dtypes = {
        v["label"]: (run.summary.get("config") or {}).get("dtype", "float32")
        for v, run in read
        if (run.summary.get("config") or {}).get("model") != "canonical"
    }
    if len(set(dtypes.values())) > 1:
        found = ", ".join(f"{label}: {d}" for label, d in dtypes.items())
        raise CodequantError(
            f"cannot pair runs whose weights had different dtypes ({found}); set runner.dtype "
            "(float16, bfloat16 or float32) so that every step loads the same one"
        )


COLUMNS = (
    "kind",
    "model",
    "language",
    "baseline",
    "other",
    "b",
    "c",
    "n_pairs",
    "odds_ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "baseline_pass_rate",
    "other_pass_rate",
    "correction",
    "test",
    "p_mcnemar",
    "n_problems",
    "samples_per_problem",
    "pass_diff",
    "diff_ci_low",
    "diff_ci_high",
    "mde",
    "icc",
)


SCORE_COLUMNS = (
    "kind",
    "model",
    "metric",
    "baseline",
    "other",
    "n_problems",
    "baseline_mean",
    "other_mean",
    "mean_diff",
    "median_diff",
    "n_nonzero",
    "statistic",
    "p_value",
    "p_adjusted",
    "correction",
    "test",
)


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    conn.execute(
        "DELETE FROM comparisons WHERE step_key = ?", (step.key,)
    )  # a rerun's family replaces the old one
    conn.execute("DELETE FROM score_comparisons WHERE step_key = ?", (step.key,))
    where = {"step_key": step.key, "benchmark": step.meta["benchmark"], "decoding": step.meta["decoding"]}
    store.upsert_many("comparisons", [{**where, **{c: r.get(c) for c in COLUMNS}} for r in res["rows"]], conn)
    store.upsert_many(
        "score_comparisons",
        [{**where, **{c: r.get(c) for c in SCORE_COLUMNS}} for r in res.get("score_rows", [])],
        conn,
    )
