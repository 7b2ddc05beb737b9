"""Evaluation of text tasks (code summarization): score each completion against its reference, no sandbox.

A text task's sample row keeps the fields of an executed one where they mean the same (prompt, raw_output,
stop_reason, tokens, timings), with `completion` the docstring taken from the output, `summary` the part of it
that is scored (the benchmark's reference rule), `reference`, and the per-sample metrics `bleu` (sentence BLEU-4,
0-100) and `rouge_l` (ROUGE-L F1, 0-1) of `codequant.metrics.text`. Nothing is executed, so `status` is "scored"
and `passed` is null: there is no pass/fail to report, and readers of runs (`codequant.stats.read_run`) take the
scores instead.
"""

from __future__ import annotations

from collections import Counter

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.sources.summarize import is_summarize
from codequant.generation.extract_summary import extract_docstring, summary_text
from codequant.metrics.text import METRICS, corpus_bleu, text_scores

STATUS = "scored"


def is_text_task(problem: Problem) -> bool:
    return is_summarize(problem)


def text_completion(problem: Problem, raw: str, style: str) -> str:
    """The docstring in the model's output (what `completion` holds for a text task)."""
    return extract_docstring(problem, raw, style)


def score_row(problem: Problem, row: dict) -> dict:
    """`row` (a sample of a text task) with its summary, reference, scores and the text task's status."""
    summary = summary_text(problem, row["completion"])
    reference = problem.extra["reference"]
    row.update(
        {
            "summary": summary,
            "reference": reference,
            **text_scores(summary, reference),
            "status": STATUS,
            "passed": None,
        }
    )
    return row


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_text(rows: list[dict], problems: list[Problem], samples: int) -> dict:
    """Mean per-problem scores (each problem's mean over its samples, then the mean over problems), corpus
    BLEU over every scored completion, and the counts, over the completions in scope."""
    ids = {p.task_id for p in problems}
    scoped = sorted(
        (r for r in rows if r["task_id"] in ids and r["sample_index"] < samples),
        key=lambda r: (r["task_id"], r["sample_index"]),
    )
    per_problem: dict[str, list[dict]] = {}
    for r in scoped:
        per_problem.setdefault(r["task_id"], []).append(r)
    complete = {t: v for t, v in per_problem.items() if len(v) == samples}
    done = [r for v in complete.values() for r in v]
    means = {m: _mean([_mean([r[m] for r in v]) for v in complete.values()]) for m in METRICS}
    new_tokens = sum(r.get("new_tokens") or 0 for r in scoped)
    return {
        "task": "summarize",
        "problems": len(complete),
        "problems_listed": len(problems),
        "samples": samples,
        "completions": len(done),
        **means,
        "corpus_bleu": corpus_bleu([r["summary"] for r in done], [r["reference"] for r in done])
        if done
        else None,
        "empty_summaries": sum(not r["summary"] for r in done),
        "status_counts": dict(sorted(Counter(r["status"] for r in scoped).items())),
        "stop_reasons": dict(sorted(Counter(str(r.get("stop_reason")) for r in scoped).items())),
        "new_tokens": new_tokens,
        "mean_new_tokens": round(new_tokens / len(scoped), 2) if scoped else 0.0,
        "sum_gen_seconds": round(sum(r.get("gen_seconds") or 0.0 for r in scoped), 3),
    }
