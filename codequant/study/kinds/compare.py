"""compare: the paired tests of one model, benchmark and decoding (codequant.study.comparisons)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codequant.study.plan import Step


def run(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any],
        metas: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every version against fp; calibration kinds against each other; fine-tuned against not (per language)."""
    from codequant.stats import read_run
    from codequant.study.comparisons import study_comparisons

    runs = []
    for key in step.deps:
        variant = (metas or {})[key]["variant"]
        run = read_run(inputs[key], label=variant["label"])
        runs.append((variant, run.outcomes))
    stats = step.config.get("stats") or {}
    rows = study_comparisons(runs, model=step.meta["model"], language=step.meta["language"],
                             correction=step.config["correction"], test=stats.get("test", "auto"),
                             resamples=stats.get("resamples", 10_000), seed=stats.get("seed", 0),
                             alpha=stats.get("alpha", 0.05))
    return {"rows": rows}


COLUMNS = ("kind", "model", "language", "baseline", "other", "b", "c", "n_pairs", "odds_ratio", "ci_low", "ci_high",
           "p_value", "p_adjusted", "baseline_pass_rate", "other_pass_rate", "correction", "test", "p_mcnemar",
           "n_problems", "samples_per_problem", "pass_diff", "diff_ci_low", "diff_ci_high", "mde", "icc")


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    conn.execute("DELETE FROM comparisons WHERE step_key = ?", (step.key,))  # a rerun's family replaces the old one
    store.upsert_many("comparisons", [
        {"step_key": step.key, "benchmark": step.meta["benchmark"], "decoding": step.meta["decoding"],
         **{c: r.get(c) for c in COLUMNS}} for r in res["rows"]], conn)
