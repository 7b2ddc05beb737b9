"""A tiny extra step kind, defined outside codequant: the mean length of the completions of every evaluation.

It is what docs/study.md says a new kind is: this one module (plan, run, ingest) plus one registry entry
(`LENGTHS`, added with `STEP_KINDS.with_kind`). tests/study/test_study_step_kinds.py plans and runs a study
through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codequant.study.kinds import StepKind
from codequant.study.plan import Planning, Step
from codequant.study.resources import Resources

LENGTHS = StepKind("lengths", __name__, Resources(cpus=1, memory_gb=1))


def plan(planning: Planning) -> None:
    """One step per evaluation of the model (the evaluate kind planned them before this one)."""
    for evals in planning.evaluations:
        for evaluation in evals.steps:
            planning.add(
                "lengths",
                evaluation.label,
                {"of": evaluation.key},
                [evaluation.key],
                {"variant": evaluation.meta["variant"]},
            )


def run(
    step: Step,
    workdir: Path,
    inputs: dict[str, Path],
    settings: dict[str, Any],
    metas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    (evaluation,) = [inputs[k] for k in step.deps]
    lines = (evaluation / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    completions = [json.loads(line)["completion"] for line in lines]
    return {"completions": len(completions), "mean_chars": sum(map(len, completions)) / len(completions)}


def ingest(store, step: Step, res: dict[str, Any], artifact: Path, conn) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS completion_lengths "
        "(step_key TEXT PRIMARY KEY, completions INTEGER, mean_chars REAL)"
    )
    store.upsert(
        "completion_lengths",
        {"step_key": step.key, "completions": res["completions"], "mean_chars": res["mean_chars"]},
        conn,
    )
