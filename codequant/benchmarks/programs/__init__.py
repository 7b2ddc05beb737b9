"""Assemble the program that the sandbox runs from a problem and a model's completion.

Each language has its own builder (`fn(problem, completion) -> str`), imported lazily by language name.
"""

from __future__ import annotations

import importlib

from codequant.benchmarks.problem import Problem
from codequant.errors import CodequantError

_BUILDERS: dict[str, str] = {
    "python": "codequant.benchmarks.programs.python:build_python_program",
    "java": "codequant.benchmarks.programs.java:build_java_program",
}


def build_program(problem: Problem, completion: str, python_main: str = "skip") -> str:
    """`completion` is the code taken from the model's output (or the canonical solution); `python_main` is how
    a Python program treats main blocks (`codequant.benchmarks.programs.python`: "skip" or "run")."""
    target = _BUILDERS.get(problem.language)
    if target is None:
        raise CodequantError(f"no program builder for language {problem.language!r}")
    module, func = target.split(":")
    build = getattr(importlib.import_module(module), func)
    return (
        build(problem, completion, python_main)
        if problem.language == "python"
        else build(problem, completion)
    )
