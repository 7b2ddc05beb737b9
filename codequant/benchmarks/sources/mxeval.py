"""MXEval's multilingual HumanEval, Java part (amazon-science/mxeval, `mxeval/multi-humaneval` on the hub).

Records: task_id, prompt, entry_point, test, description, language, canonical_solution. Each problem is its
own class (`class HasCloseElements`) with a static method; the tests are a separate `class Main` that compares
results and throws `java.lang.Exception` on a mismatch. Completions close the method and the class (format
"mxeval"). The published file has no canonical solutions for Java (the field is null).
"""

from __future__ import annotations

from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.records import read_records, require_fields, resolve
from codequant.benchmarks.translate.java_translate import JAVA_STOP

FIELDS = ("task_id", "prompt", "entry_point", "test")


def load_mxeval_java(data: Path | None = None) -> list[Problem]:
    path = resolve(
        data, "mxeval/HumanEval_java_v1.1.jsonl", "mxeval/multi-humaneval", ("java",), "MXEval Java"
    )
    records = read_records(path)
    require_fields(path, records, FIELDS, "MXEval")
    return [
        Problem(
            task_id=rec["task_id"],
            language="java",
            prompt=rec["prompt"],
            tests=rec["test"],
            entry_point=rec["entry_point"],
            stop=JAVA_STOP,
            canonical_solution=rec.get("canonical_solution") or None,
            benchmark="mxeval-java",
            extra={"format": "mxeval"},
        )
        for rec in records
    ]
