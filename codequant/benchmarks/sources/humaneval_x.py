"""HumanEval-X Java (THUDM/CodeGeeX, `THUDM/humaneval-x` on the hub): 164 problems, each a `class Solution`
whose method the model completes, tested by a separate `public class Main` that throws AssertionError.

Records: task_id, prompt, canonical_solution, test, declaration, example_test, text. The canonical solution
closes the method and the class, so a program is `prompt + completion + test` (format "humaneval-x").
"""

from __future__ import annotations

import re
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.records import read_records, require_fields, resolve
from codequant.benchmarks.translate.java_translate import JAVA_STOP
from codequant.errors import CodequantError
from codequant.java_source import mask, static_method_names

FIELDS = ("task_id", "prompt", "canonical_solution", "test")


def method_name(prompt: str) -> str:
    """The method HumanEval-X's prompt opens (instance methods: `public boolean f(...) {`)."""
    found = re.findall(
        r"\bpublic\s+(?:static\s+)?[\w$<>\[\],.? ]+?\s+([\w$]+)\s*\([^)]*\)\s*"
        r"(?:throws\s+[\w$.,\s]+)?\{",
        mask(prompt),
    )
    found = found or static_method_names(prompt)
    if not found:
        raise CodequantError("a HumanEval-X Java prompt declares no method")
    return found[-1]


def load_humaneval_x_java(data: Path | None = None) -> list[Problem]:
    path = resolve(
        data, "humaneval-x/humaneval_java.jsonl.gz", "THUDM/humaneval-x", ("java",), "HumanEval-X Java"
    )
    records = read_records(path)
    require_fields(path, records, FIELDS, "HumanEval-X")
    return [
        Problem(
            task_id=rec["task_id"],
            language="java",
            prompt=rec["prompt"],
            tests=rec["test"],
            entry_point=method_name(rec["prompt"]),
            stop=JAVA_STOP,
            canonical_solution=rec["canonical_solution"],
            benchmark="humaneval-x-java",
            extra={"format": "humaneval-x"},
        )
        for rec in records
    ]
