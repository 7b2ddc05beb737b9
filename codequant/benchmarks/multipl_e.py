"""MultiPL-E's HumanEval-Java (`nuprl/MultiPL-E`, config `humaneval-java`, 158 problems) and codequant's own
offline translation of HumanEval in the same layout (`humaneval-java`).

A MultiPL-E record has name, language, prompt, doctests, original, prompt_terminology, tests, stop_tokens; the
program is `prompt + completion + tests` (see `codequant.benchmarks.java_program`, format "multipl-e").
"""

from __future__ import annotations

import re
from pathlib import Path

from codequant.benchmarks.java_source import mask
from codequant.benchmarks.java_translate import JAVA_STOP, translate_humaneval
from codequant.benchmarks.problem import Problem
from codequant.benchmarks.records import read_records, require_fields, resolve
from codequant.errors import CodequantError

FIELDS = ("name", "prompt", "tests", "stop_tokens")
_METHOD = re.compile(r"\b(?:public|private|protected)?\s*static\s+[\w$<>\[\],.? ]+?\s+([\w$]+)\s*\(")


def method_name(prompt: str) -> str:
    """The last static method the prompt declares (the one the completion continues)."""
    found = _METHOD.findall(mask(prompt))
    if not found:
        raise CodequantError("a MultiPL-E Java prompt declares no static method")
    return found[-1]


def load_multipl_e_java(data: Path | None = None) -> list[Problem]:
    """MultiPL-E records (JSON/JSONL/parquet) from --data, $CODEQUANT_BENCHMARKS_DIR/multipl-e/, or the hub."""
    path = resolve(data, "multipl-e/humaneval-java.jsonl", "nuprl/MultiPL-E", ("humaneval-java",),
                   "MultiPL-E humaneval-java")
    records = read_records(path)
    require_fields(path, records, FIELDS, "MultiPL-E")
    problems = []
    for rec in records:
        if rec.get("language", "java") not in ("java", "Java"):
            continue
        problems.append(Problem(
            task_id=rec["name"], language="java", prompt=rec["prompt"], tests=rec["tests"],
            entry_point=method_name(rec["prompt"]), stop=tuple(rec["stop_tokens"] or JAVA_STOP),
            canonical_solution=None, benchmark="multipl-e-java",
            extra={"format": "multipl-e", "doctests": rec.get("doctests"), "original": rec.get("original")},
        ))
    if not problems:
        raise CodequantError(f"{path} holds no Java problems")
    return problems


def load_humaneval_java(data: Path | None = None) -> list[Problem]:
    """HumanEval translated to Java offline (157 of 164); `data` is a HumanEval-format file to translate."""
    from codequant.benchmarks.humaneval import load_humaneval

    problems, _skipped = translate_humaneval(load_humaneval(data))
    return problems
