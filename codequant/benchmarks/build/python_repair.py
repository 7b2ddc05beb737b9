"""Build the HumanEval repair set: mutate each canonical solution, run the mutants, keep the ones the tests catch.

Per problem: the canonical solution must pass, and so must its `ast.unparse` rendering (a mutant is rendered the
same way, so it then differs from a passing function by its mutation only). Per operator, the mutants are drawn
in the order of a generator seeded by (set version, task, operator) and the first `MAX_TRIES` are run: the first
one failing with an AssertionError (a wrong answer) is kept, else the first failing with another exception (a
crash, e.g. an IndexError). Timeouts and memory-limit kills are not kept: their verdict depends on the machine.
Per problem, the operators are taken in a seeded order (by `TIERS`: the rarely applicable first) and the first
`PER_TASK` that kept a mutant are used, so a problem gets bugs of different kinds. Kept mutants are run a second time and dropped unless they fail the same
way, which guards against tests that draw random inputs.

Every choice depends only on (version, task) and on the sandbox's verdicts, never on which other tasks are
built: building a few tasks gives the same rows as the full build gives for them.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable

from codequant.benchmarks.build.mutations import OPERATORS, Mutant, mutants, unparse_body
from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.repair.python import VERSION, buggy_function, source_hash, split_problem
from codequant.sandbox import ExecResult, Limits, Status, run_programs

MAX_TRIES = 4
PER_TASK = 2
# Operators that fit few functions come first, the one that fits every function (a function always returns
# something) last: with one seeded order for all eight, `wrong_return` filled a quarter of the set and `boolean`
# (and/or occurs in 28 of 164 solutions) 5 rows.
TIERS: tuple[tuple[str, ...], ...] = (
    ("boolean",),
    ("comparison", "off_by_one", "swapped_args", "wrong_variable", "negated_condition", "missing_condition"),
    ("wrong_return",),
)
LIMITS = Limits(wall_timeout_s=5.0, cpu_s=5)
_KEPT = (Status.ASSERTION, Status.EXCEPTION)
_CHECK_FRAME = re.compile(r'File "[^"]*", line (\d+), in check\b')
_MAX_CHARS = 300


def seed_for(task_id: str, what: str) -> str:
    return f"humaneval-repair-v{VERSION}/{task_id}/{what}"


def operator_order(task_id: str) -> list[str]:
    """The order in which a task's operators are tried: tier by tier, seeded shuffle within a tier."""
    rng = random.Random(seed_for(task_id, "operators"))
    return [op for tier in TIERS for op in rng.sample(list(tier), len(tier))]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 4] + " ..."


def failure_message(program: str, stderr: str, entry_point: str) -> str:
    """The failing assert of `check` (as written in the tests, `candidate` renamed to the function) and the
    exception's last line: what a developer reads first in a failing test run. No paths or line numbers, so it
    does not depend on where or how the program ran."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    error = re.sub(r"0x[0-9a-fA-F]+", "0x...", lines[-1]) if lines else "failed"
    hits = _CHECK_FRAME.findall(stderr)
    statement = None
    if hits:
        line = int(hits[-1])
        check = next(
            (n for n in ast.walk(ast.parse(program)) if isinstance(n, ast.FunctionDef) and n.name == "check"),
            None,
        )
        inner = (
            [
                s
                for s in ast.walk(check)
                if isinstance(s, ast.stmt)
                and s is not check
                and s.lineno <= line <= (s.end_lineno or s.lineno)
            ]
            if check
            else []
        )
        if inner:
            stmt = min(inner, key=lambda s: (s.end_lineno or s.lineno) - s.lineno)
            text = " ".join(
                x.strip().removesuffix("\\").strip()
                for x in (ast.get_source_segment(program, stmt) or "").splitlines()
            )
            statement = re.sub(r"\bcandidate\b", entry_point, text)
    return "\n".join(_clip(x) for x in (statement, error) if x)


def _run(items: list[tuple[Problem, str]], workers: int, progress: bool) -> tuple[list, list[ExecResult]]:
    """(the (language, program) pairs, their results) for (problem, code) items."""
    programs = [("python", build_program(p, code)) for p, code in items]
    return programs, run_programs(programs, limits=LIMITS, workers=workers, progress=progress)


def build_rows(
    problems: list[Problem], workers: int = 1, progress: bool = False, log: Callable[[str], None] = print
) -> list[dict]:
    """The repair rows for `problems` (HumanEval problems), in their order."""
    parts = {p.task_id: split_problem(p) for p in problems}
    reference = [
        (p, buggy_function(parts[p.task_id], unparse_body(parts[p.task_id].stmts))) for p in problems
    ]
    _, ok_canonical = _run([(p, p.canonical_solution) for p in problems], workers, progress)
    _, ok_unparsed = _run(reference, workers, progress)
    usable = [p for p, a, b in zip(problems, ok_canonical, ok_unparsed, strict=True) if a.passed and b.passed]
    for p in problems:
        if p not in usable:
            log(f"skip {p.task_id}: its canonical solution (or its unparsed form) does not pass")

    # (task, operator) -> mutants to try, and the verdicts so far
    todo = {
        (p.task_id, op): mutants(parts[p.task_id].fn, parts[p.task_id].stmts, op, seed_for(p.task_id, op))[
            :MAX_TRIES
        ]
        for p in usable
        for op in OPERATORS
    }
    tried: dict[tuple[str, str], list[tuple[Mutant, str, ExecResult]]] = {k: [] for k in todo}
    by_id = {p.task_id: p for p in usable}
    for r in range(MAX_TRIES):
        wave = [
            k
            for k, ms in todo.items()
            if len(ms) > r and not any(res.status == Status.ASSERTION for _, _, res in tried[k])
        ]
        if not wave:
            break
        items = [(by_id[t], buggy_function(parts[t], todo[(t, op)][r].body)) for t, op in wave]
        programs, results = _run(items, workers, progress)
        for key, (_, program), res in zip(wave, programs, results, strict=True):
            tried[key].append((todo[key][r], program, res))
        log(f"round {r + 1}: ran {len(wave)} mutants")

    chosen: list[tuple[Problem, str, Mutant, str, ExecResult]] = []
    for p in usable:
        picked = 0
        for op in operator_order(p.task_id):
            runs = tried[(p.task_id, op)]
            best = next((x for x in runs if x[2].status == Status.ASSERTION), None) or next(
                (x for x in runs if x[2].status in _KEPT), None
            )
            if best is not None and picked < PER_TASK:
                chosen.append((p, op, *best))
                picked += 1

    # second run: a kept mutant must fail the same way again
    _, again = _run(
        [(p, buggy_function(parts[p.task_id], m.body)) for p, _, m, _, _ in chosen], workers, progress
    )
    rows = []
    for (p, op, m, program, res), res2 in zip(chosen, again, strict=True):
        message = failure_message(program, res.stderr, p.entry_point)
        if res2.status != res.status or failure_message(program, res2.stderr, p.entry_point) != message:
            log(f"drop {p.task_id}/{op}: its failure is not reproducible")
            continue
        rows.append(
            {
                "task_id": f"{p.task_id}/{op}",
                "source_task_id": p.task_id,
                "operator": op,
                "site_index": m.site.index,
                "variant": m.site.variant,
                "change": m.change,
                "buggy_function": buggy_function(parts[p.task_id], m.body),
                "status": str(res.status),
                "exception_type": res.exception_type,
                "message": message,
                "source_sha256": source_hash(p),
            }
        )
    return rows
