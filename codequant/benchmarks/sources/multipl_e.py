"""MultiPL-E's HumanEval in Python and Java (`nuprl/MultiPL-E`, configs `humaneval-py` (161 problems) and
`humaneval-java` (158), the "reworded" prompts the study scored) and codequant's own offline translation of
HumanEval in the same layout (`humaneval-java`).

A MultiPL-E record has name, language, prompt, doctests, original, prompt_terminology, tests, stop_tokens; there
is no canonical solution. MultiPL-E's program is `prompt + completion + "\n" + tests` (the tests call
themselves: Python's end with `test_check()`, Java's `main` holds `assert`s run with `java -ea`), executed with
a 15 s limit per process (its `safe_subprocess.run` default, for `javac` and `java` each), so the problems carry
`extra["time_limit_s"] = 15`. Upstream quirks are kept: Java HumanEval_136 cannot be passed by a correct
solution (its asserts compare with `Optional.of(Optional.empty())`), HumanEval_23's doctest names `stringLength`.
"""

from __future__ import annotations

import re
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.records import read_records, require_fields, resolve
from codequant.benchmarks.sources.humaneval import load_humaneval
from codequant.benchmarks.translate.java_translate import JAVA_STOP, translate_humaneval
from codequant.errors import CodequantError
from codequant.java_source import static_method_names

FIELDS = ("name", "prompt", "tests", "stop_tokens")
TIME_LIMIT_S = 15.0  # MultiPL-E's per-process limit (evaluation/src/safe_subprocess: timeout_seconds=15)
_PY_CHECK = re.compile(r"^\s*check\(\s*([\w.]+)\s*\)", re.MULTILINE)
_PY_DEF = re.compile(r"^def\s+(\w+)\s*\(", re.MULTILINE)


def method_name(prompt: str) -> str:
    """The last static method the prompt declares (the one the completion continues)."""
    found = static_method_names(prompt)
    if not found:
        raise CodequantError("a MultiPL-E Java prompt declares no static method")
    return found[-1]


def python_entry_point(prompt: str, tests: str) -> str:
    """The function the tests check (`check(name)` in `test_check`), else the prompt's last top-level `def`."""
    found = _PY_CHECK.findall(tests) or _PY_DEF.findall(prompt)
    if not found:
        raise CodequantError("a MultiPL-E Python record names no function (no check(...) call, no def)")
    return found[-1]


def _records(data: Path | None, config: str, languages: tuple[str, ...]) -> tuple[Path, list[dict]]:
    """The records of MultiPL-E `config` (JSON/JSONL/parquet) from --data, the benchmark folders
    (`multipl-e/<config>.jsonl`), or the hub; records of other languages are dropped."""
    path = resolve(data, f"multipl-e/{config}.jsonl", "nuprl/MultiPL-E", (config,), f"MultiPL-E {config}")
    records = read_records(path)
    require_fields(path, records, FIELDS, "MultiPL-E")
    kept = [r for r in records if r.get("language", languages[0]) in languages]
    if not kept:
        raise CodequantError(f"{path} holds no {languages[0]} problems")
    return path, kept


def _extra(rec: dict) -> dict:
    return {
        "format": "multipl-e",
        "doctests": rec.get("doctests"),
        "original": rec.get("original"),
        "time_limit_s": TIME_LIMIT_S,
    }


def load_multipl_e_java(data: Path | None = None) -> list[Problem]:
    """MultiPL-E humaneval-java: 158 problems, `class Problem`, javatuples on the class path."""
    _, records = _records(data, "humaneval-java", ("java", "Java"))
    return [
        Problem(
            task_id=rec["name"],
            language="java",
            prompt=rec["prompt"],
            tests=rec["tests"],
            entry_point=method_name(rec["prompt"]),
            stop=tuple(rec["stop_tokens"] or JAVA_STOP),
            canonical_solution=None,
            benchmark="multipl-e-java",
            extra=_extra(rec),
        )
        for rec in records
    ]


def load_multipl_e_py(data: Path | None = None) -> list[Problem]:
    """MultiPL-E humaneval-py: 161 problems (HumanEval without the 3 that do not translate), reworded docstrings,
    stop tokens `\\ndef`, `\\n#`, `\\nif`, `\\nclass`."""
    _, records = _records(data, "humaneval-py", ("py", "python", "Python"))
    return [
        Problem(
            task_id=rec["name"],
            language="python",
            prompt=rec["prompt"],
            tests=rec["tests"],
            entry_point=python_entry_point(rec["prompt"], rec["tests"]),
            stop=tuple(rec["stop_tokens"]),
            canonical_solution=None,
            benchmark="multipl-e-py",
            extra=_extra(rec),
        )
        for rec in records
    ]


def load_humaneval_java(data: Path | None = None) -> list[Problem]:
    """HumanEval translated to Java offline (157 of 164); `data` is a HumanEval-format file to translate."""
    problems, _skipped = translate_humaneval(load_humaneval(data))
    return problems
