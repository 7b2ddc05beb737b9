"""HumanEval-X Java program repair (`humaneval-java-repair`, `humaneval-java-repair-msg`): fix a seeded bug.

The Java twin of `repair`: each problem is a HumanEval-X Java method with one seeded bug (see `java_mutations`)
that the sandbox showed failing the problem's tests (a separate `class Main` throwing AssertionError) while the
canonical solution passes. The set is fixed and versioned in `data/humaneval_java_repair_v1.jsonl.gz`, built by
`scripts/build_java_repair.py`.

Licensing: HumanEval-X may be read from `../shared` (or `--data`, or `$CODEQUANT_BENCHMARKS_DIR`) but its text
may not be copied into this repository. So a row holds no code: only the task ids, the operator, the *edits* that
turn the canonical solution into the buggy one (character offset and length within the canonical solution, plus
either short new text such as `<=`, `!(` or a local's name, or the offset and length of another span of the
solution, for swapped arguments), the failing run's message (the exception line and the `at Solution.../Main.main`
frames, line numbers dropped, vetted at build time to quote no solution text), the index of the test's first false
check (HumanEval-X tests collect their checks in a `correct` list and throw a bare AssertionError; the `-msg`
prompt shows that check, taken from the test at load time) and a hash of the HumanEval-X record.
The loader joins each row with HumanEval-X and applies the edits; a different HumanEval-X file fails loudly.

The prompt is code, as in the Python set: the HumanEval-X prompt (imports, `class Solution {`, the Javadoc) with,
right before the method's signature line, comments saying the method has a bug, the buggy method (commented out,
since Java does not allow two methods of one signature), in `-msg` the failing run's message, and a request for the
fixed method; then the signature line. A base model continues with the body; a chat model answers with the whole
method or class, which `java_program.build_java_program` puts in place of the prompt's declaration (comments are
masked, so the commented-out buggy method is never taken for a declaration). The canonical solution continues the
signature, so `codequant evaluate canonical` checks the harness on this set too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.repair import rows as repair_set
from codequant.benchmarks.repair.edits import Edit, apply_edits
from codequant.benchmarks.repair.rows import write_rows
from codequant.benchmarks.sources.humaneval_x import load_humaneval_x_java
from codequant.errors import CodequantError
from codequant.java_source import call_arguments, mask

VERSION = 1
DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # codequant/benchmarks/data (package data)
DATA_FILE = DATA_DIR / f"humaneval_java_repair_v{VERSION}.jsonl.gz"
FIELDS = ("task_id", "source_task_id", "operator", "edits", "message", "source_sha256")
BUILD_SCRIPT = "scripts/build_java_repair.py"
_MAX_CHECK = 300
# `correct` declared (after its type) as the value of a method call: `List<Boolean> correct = Arrays.asList(`
_CORRECT = re.compile(r"[\w$>\]]\s+correct\s*=(?!=)\s*[\w$.]+\s*\(")

__all__ = [
    "DATA_FILE",
    "VERSION",
    "apply_row",
    "buggy_method",
    "load_humaneval_java_repair",
    "load_humaneval_java_repair_msg",
    "read_rows",
    "repair_prompt",
    "shown_message",
    "source_hash",
    "harness_checks",
    "write_rows",
]


def source_hash(p: Problem) -> str:
    """Identifies the HumanEval-X record a row was built from (task id, prompt, canonical solution, tests)."""
    text = "\0".join((p.task_id, p.prompt, p.canonical_solution or "", p.tests))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def signature_start(prompt: str) -> int:
    """Offset of the prompt's last line (HumanEval-X prompts end with the method's `public ... {` line)."""
    body = prompt.rstrip("\n")
    start = body.rfind("\n") + 1
    if "{" not in mask(body[start:]) or "(" not in body[start:]:
        raise CodequantError("a HumanEval-X Java prompt does not end with the method's signature line")
    return start


def buggy_method(p: Problem, buggy_solution: str) -> str:
    """The whole buggy method: the signature line, then the buggy solution without the class's closing brace."""
    code = p.prompt[signature_start(p.prompt) :] + buggy_solution
    body = code.rstrip()
    if not body.endswith("}"):
        raise CodequantError(f"{p.task_id}: the solution does not close the class")
    return body[:-1].rstrip() + "\n"


def _commented(text: str, indent: str, extra: str = "") -> str:
    lines = text.rstrip("\n").splitlines()
    common = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return "".join(f"{indent}// {extra}{x[common:]}".rstrip() + "\n" for x in lines)


def repair_prompt(p: Problem, buggy: str, message: str | None) -> str:
    start = signature_start(p.prompt)
    signature = p.prompt[start:]
    indent = signature[: len(signature) - len(signature.lstrip())]
    text = p.prompt[:start]
    text += f"{indent}// This version of `{p.entry_point}` has a bug: it fails its tests.\n"
    text += _commented(buggy, indent, "    ")
    if message is not None:
        text += f"{indent}//\n{indent}// Running its tests fails:\n" + _commented(message, indent, "    ")
    text += (
        f"{indent}//\n{indent}// The same method with the bug fixed (complete, same name and signature):\n"
    )
    return text + signature


def harness_checks(tests: str) -> list[str] | None:
    """The checks of a HumanEval-X test: the items of its `List<Boolean> correct = Arrays.asList(...)`, each on
    one line; None for a test of another shape. Read with the lexer (`codequant.java_source`), not a parser, so
    loading the set needs no tree-sitter."""
    m = _CORRECT.search(mask(tests))
    spans = call_arguments(tests, m.end() - 1) if m else None
    if spans is None:
        return None
    return [" ".join(x.strip() for x in tests[a:b].splitlines()) for a, b in spans]


def shown_message(row: dict, tests: str) -> str:
    """The row's message, and when the build recorded which check of the test is false first, that check (joined
    from the test at load time: the shipped file holds only its index)."""
    k = row.get("failing_check")
    checks = harness_checks(tests) if k is not None else None
    if not checks or not 0 <= k < len(checks):
        return row["message"]
    check = checks[k] if len(checks[k]) <= _MAX_CHECK else checks[k][: _MAX_CHECK - 4] + " ..."
    return (
        row["message"]
        + f"\nThe first check of the test that is false (item {k + 1} of {len(checks)}):\n    {check}"
    )


def apply_row(p: Problem, row: dict) -> str:
    """The buggy solution (`p`'s canonical solution with the row's edits)."""
    try:
        return apply_edits(p.canonical_solution or "", [Edit.from_json(e) for e in row["edits"]])
    except (ValueError, TypeError, IndexError) as exc:
        raise CodequantError(
            f"{row['task_id']}: its edits do not apply ({exc}); rebuild the set with {BUILD_SCRIPT}"
        ) from None


def read_rows(path: Path | None = None) -> list[dict]:
    return repair_set.read_rows(
        Path(path) if path is not None else DATA_FILE, FIELDS, "Java repair set", BUILD_SCRIPT
    )


def repair_problems(
    rows: list[dict], sources: list[Problem], with_message: bool, benchmark: str
) -> list[Problem]:
    """The rows joined with their HumanEval-X Java problems."""
    by_id = {p.task_id: p for p in sources}
    problems = []
    for r in rows:
        src = by_id.get(r["source_task_id"])
        if src is None or source_hash(src) != r["source_sha256"]:
            raise CodequantError(
                f"{r['task_id']}: the HumanEval-X Java file differs from the one the Java repair set "
                f"was built from ({r['source_task_id']} is missing or changed); rebuild the set "
                f"with {BUILD_SCRIPT}"
            )
        buggy = buggy_method(src, apply_row(src, r))
        message = shown_message(r, src.tests)
        prompt = repair_prompt(src, buggy, message if with_message else None)
        extra = {k: r[k] for k in r if k not in ("task_id", "source_sha256", "edits")}
        extra |= {
            "set_version": VERSION,
            "format": "humaneval-x",
            "buggy_method": buggy,
            "shown_message": message,
        }
        problems.append(
            Problem(
                task_id=r["task_id"],
                language="java",
                prompt=prompt,
                tests=src.tests,
                entry_point=src.entry_point,
                stop=src.stop,
                canonical_solution=src.canonical_solution,
                benchmark=benchmark,
                extra=extra,
            )
        )
    if not problems:
        raise CodequantError("the Java repair set holds no problems")
    return problems


def _load(data: Path | None, with_message: bool, benchmark: str) -> list[Problem]:
    """`data` is a HumanEval-X Java file (as for `humaneval-x-java`): the set's rows are always the shipped ones."""
    rows = read_rows()
    return repair_problems(rows, load_humaneval_x_java(data), with_message, benchmark)


def load_humaneval_java_repair(data: Path | None = None) -> list[Problem]:
    """The shipped Java repair set joined with HumanEval-X Java (`data`, else where `humaneval-x-java` finds it)."""
    return _load(data, with_message=False, benchmark="humaneval-java-repair")


def load_humaneval_java_repair_msg(data: Path | None = None) -> list[Problem]:
    """The same problems with the failing run's message in the prompt."""
    return _load(data, with_message=True, benchmark="humaneval-java-repair-msg")
