"""McEval (MCEVAL/McEval, `Multilingual-Multimodal-NLP/McEval` on the hub), its Java and Python generation sets.

Records: task_id, prompt, canonical_solution, test, entry_point, signature, docstring, instruction, level.
Java: the prompt ends at the method's signature inside `class Solution`, the canonical solution is the method
body with its braces, the test is a `main` (plain `assert`s, hence `java -ea`) plus the class's `}` (format
"mceval"). Python: the prompt ends at the docstring's closing quotes and the canonical body starts on a new
line, so the prompt gets its final newline; the test is either `def check(...)` (called by the test itself or not) or top-level asserts;
the Python program builder appends `check(entry_point)`, so a test that defines no `check` gets a no-op one:
its top-level asserts already ran. `unittest.main()` becomes `assert unittest.main(exit=False).result.
wasSuccessful()`: same verdict, without the sys.exit that would hide whether the tests finished. Upstream data is used as published, broken tests included.
"""

from __future__ import annotations

import re
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.records import read_records, require_fields, resolve
from codequant.benchmarks.translate.java_translate import JAVA_STOP

FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
PYTHON_STOP: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
_NOOP_CHECK = "\n\n\ndef check(candidate):  # codequant: the asserts above are the tests\n    pass\n"


def _records(data: Path | None, language: str) -> tuple[Path, list[dict]]:
    path = resolve(
        data,
        f"mceval/{language}.jsonl",
        "Multilingual-Multimodal-NLP/McEval",
        ("generation", language.lower()),
        f"McEval {language}",
    )
    records = read_records(path)
    require_fields(path, records, FIELDS, "McEval")
    return path, records


def load_mceval_java(data: Path | None = None) -> list[Problem]:
    _, records = _records(data, "Java")
    return [
        Problem(
            task_id=rec["task_id"],
            language="java",
            prompt=rec["prompt"],
            tests=rec["test"],
            entry_point=rec["entry_point"],
            stop=JAVA_STOP,
            canonical_solution=rec["canonical_solution"],
            benchmark="mceval-java",
            extra={"format": "mceval", "level": rec.get("level")},
        )
        for rec in records
    ]


def load_mceval_python(data: Path | None = None) -> list[Problem]:
    _, records = _records(data, "Python")
    problems = []
    for rec in records:
        tests = rec["test"]
        # unittest.main() ends with sys.exit(0), which the sandbox rightly reads as "stopped before the end"
        tests = re.sub(
            r"\bunittest\.main\(\)", "assert unittest.main(exit=False).result.wasSuccessful()", tests
        )
        if not re.search(r"^def\s+check\s*\(", tests, re.MULTILINE):
            tests = tests.rstrip() + _NOOP_CHECK
        problems.append(
            Problem(
                task_id=rec["task_id"],
                language="python",
                prompt=rec["prompt"].rstrip(" ") + "\n"
                if not rec["prompt"].endswith("\n")
                else rec["prompt"],
                tests=tests,
                entry_point=rec["entry_point"],
                stop=PYTHON_STOP,
                canonical_solution=rec["canonical_solution"],
                benchmark="mceval-python",
                extra={"level": rec.get("level")},
            )
        )
    return problems
