"""The harness check of a benchmark: do its published canonical solutions pass through `evaluate canonical`?

A benchmark's figure only means something when the harness runs its reference answers correctly, so this is
checked per benchmark, not assumed: `check_canonical` evaluates the canonical solutions (as given, never cut
by model-output extraction) into a run folder under the cache, keyed by the problems' content, and
`benchmarks list` shows the figure it left (`164/164`), or that it was not checked yet on this machine. A
re-check of unchanged problems resumes from the cached run and costs nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.registry import load_benchmark
from codequant.cache import cache_root
from codequant.evaluation.runner import EvalSettings, evaluate
from codequant.evaluation.text_task import is_text_task


@dataclass(frozen=True)
class CanonicalCheck:
    """What `evaluate canonical` gave on one benchmark: passed of total, and the tasks that failed."""

    benchmark: str
    passed: int
    total: int
    failed: tuple[str, ...]
    run_dir: str

    @property
    def figure(self) -> str:
        return f"{self.passed}/{self.total}"


def checkable(problems: list[Problem]) -> bool:
    """Executed benchmarks whose every problem has a canonical solution (text tasks are scored, not run)."""
    return bool(problems) and all(p.canonical_solution is not None and not is_text_task(p) for p in problems)


def _digest(problems: list[Problem]) -> str:
    text = json.dumps([p.to_dict() for p in problems], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir(benchmark: str, problems: list[Problem], root: Path | None = None) -> Path:
    """Where the canonical run of these exact problems lives (under `$CODEQUANT_CACHE/canonical` by default)."""
    return (root or cache_root() / "canonical") / f"{benchmark}-{_digest(problems)}"


def _from_summary(benchmark: str, folder: Path) -> CanonicalCheck | None:
    summary = folder / "summary.json"
    samples = folder / "samples.jsonl"
    if not (summary.is_file() and samples.is_file()):
        return None
    s = json.loads(summary.read_text())
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    failed = tuple(sorted(r["task_id"] for r in rows if not r.get("passed")))
    return CanonicalCheck(benchmark, int(s["passed"]), int(s["completions"]), failed, str(folder))


def cached_check(benchmark: str, problems: list[Problem], root: Path | None = None) -> CanonicalCheck | None:
    """The figure a finished `check_canonical` of these problems left, or None (never checked here)."""
    folder = run_dir(benchmark, problems, root)
    found = _from_summary(benchmark, folder)
    return found if found is not None and found.total == len(problems) else None


def check_canonical(
    benchmark: str,
    data: Path | str | None = None,
    *,
    root: Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> CanonicalCheck:
    """Evaluate the canonical solutions of `benchmark` (from `data` or its default source) and tell what passed."""
    problems = load_benchmark(benchmark, data)
    folder = run_dir(benchmark, problems, root)
    evaluate(
        "canonical", benchmark, EvalSettings(workers=workers), out_dir=folder, data=data, progress=progress
    )
    found = _from_summary(benchmark, folder)
    assert found is not None  # evaluate() has just written both files
    return found
