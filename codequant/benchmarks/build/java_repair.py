"""Build the HumanEval-X Java repair set: mutate each canonical solution, run the mutants, keep the ones caught.

Per problem: the canonical solution must pass. Operators are taken in a seeded order (by `TIERS`, the rarely
applicable first, as in `repair_build`); per operator, the mutants are drawn in the order of a generator seeded by
(set version, task, operator) and run one at a time, up to `MAX_TRIES`, until one fails with an AssertionError (a
wrong answer). The operator's mutant is that one, else the first that failed with another exception (a crash,
e.g. an IndexOutOfBoundsException). Mutants that do not compile, time out or are killed for memory are not kept
(the last two depend on the machine). A problem gets the first `PER_TASK` operators that kept a mutant, so its
bugs are of different kinds; trying stops there, which keeps a Java build (a JVM per run) to minutes. Kept
mutants are run a second time and dropped unless they fail with the same message; in that run the test also
prints which check of its `correct` list is false first (`failing_check`, the item's index), since HumanEval-X's
tests throw a bare AssertionError.

Every choice depends only on (version, task) and the sandbox's verdicts, never on which other tasks are built:
building a few tasks gives the same rows as the full build gives for them. Tasks advance in waves (each task's
next mutant, all run in parallel), so a build takes as many waves as the longest task needs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Generator
from dataclasses import replace

from codequant.benchmarks.build.java_mutations import Mutant, mutants
from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.repair.java import VERSION, source_hash
from codequant.sandbox import ExecResult, Limits, Status, run_programs

MAX_TRIES = 4
PER_TASK = 2
# `boolean` fits few solutions (24 of 164), so it goes first. Unlike the Python set, `wrong_return` is no catch-all
# here (a Java return of a literal or a local fits 63 solutions): last, it kept 3 rows of 299.
TIERS: tuple[tuple[str, ...], ...] = (
    ("boolean",),
    (
        "comparison",
        "off_by_one",
        "swapped_args",
        "wrong_variable",
        "negated_condition",
        "missing_condition",
        "wrong_return",
    ),
)
LIMITS = Limits(wall_timeout_s=8.0, cpu_s=8)
_KEPT = (Status.ASSERTION, Status.EXCEPTION)
_FRAME = re.compile(r"^\s*at\s+((?:Solution|Main)\b[\w$.<>]*)\([^)]*\)\s*$")
_EXC_LINE = re.compile(r'^Exception in thread "[^"]*" ([\w$.]+)(?::\s*(.*))?$')
_MAX_FRAMES = 4
_CASE = re.compile(r"^codequant-failing-check (-?\d+)$", re.MULTILINE)
_HARNESS_IF = "if (correct.contains(false))"
_MAX_CHARS = 200
QUOTE_CHARS = 20  # a message may not share this many consecutive characters with the solution


def seed_for(task_id: str, what: str) -> str:
    return f"humaneval-java-repair-v{VERSION}/{task_id}/{what}"


def operator_order(task_id: str) -> list[str]:
    rng = random.Random(seed_for(task_id, "operators"))
    return [op for tier in TIERS for op in rng.sample(list(tier), len(tier))]


def quotes(text: str, source: str, n: int = QUOTE_CHARS) -> bool:
    """True when `text` holds `n` consecutive characters of `source`."""
    return any(text[i : i + n] in source for i in range(len(text) - n + 1))


def failure_message(stderr: str, source: str) -> str:
    """What the failing run printed, reduced to what the test harness says and nothing of the solution's text:
    the `Exception in thread "main" X: detail` line and the `at Solution.../Main.main` frames (the JDK's and the
    sandbox runner's frames dropped, line numbers dropped since they depend on the prompt's length, repeats of a
    frame folded). The detail (e.g. "Index 3 out of bounds for length 3") is dropped when it quotes `source`
    (the solution), and so is a frame that does (`at Solution.greatestCommonDivisor(` is in a recursive solution)."""
    exc, detail, frames = None, None, []
    for line in stderr.splitlines():
        m = _EXC_LINE.match(line.strip())
        if m and exc is None:
            exc, detail = m.group(1), (m.group(2) or "").strip() or None
            continue
        f = _FRAME.match(line)
        if f and exc is not None:
            frame = f"at {f.group(1)}(Main.java)"
            if not frames or frames[-1] != frame:
                frames.append(frame)
    if exc is None:
        return "the program failed"
    if detail is not None:
        detail = re.sub(r"0x[0-9a-fA-F]+|@[0-9a-f]{4,}", "...", detail)
        if len(detail) > _MAX_CHARS:
            detail = detail[: _MAX_CHARS - 4] + " ..."
    head = f'Exception in thread "main" {exc}'
    if detail is not None and not quotes(detail, source):
        head += f": {detail}"
    frames = [f for f in frames if not quotes(f, source)][:_MAX_FRAMES]
    return "\n".join([head, *("    " + f for f in frames)])


def instrumented(p: Problem) -> Problem:
    """`p` with its test printing the index of the first false check before it throws (tests of the usual
    HumanEval-X shape: `List<Boolean> correct = Arrays.asList(...); if (correct.contains(false)) throw ...`)."""
    if _HARNESS_IF not in p.tests:
        return p
    probe = f'System.out.println("codequant-failing-check " + correct.indexOf(false)); {_HARNESS_IF}'
    return replace(p, tests=p.tests.replace(_HARNESS_IF, probe, 1))


Plan = Generator[Mutant, ExecResult, list[tuple[str, Mutant, ExecResult]]]


def _plan(p: Problem) -> Plan:
    """One task's trials: yields the mutants to run, is sent their results, returns the kept (operator, mutant,
    result) triples."""
    source, start = p.prompt + (p.canonical_solution or ""), len(p.prompt)
    kept: list[tuple[str, Mutant, ExecResult]] = []
    for op in operator_order(p.task_id):
        if len(kept) >= PER_TASK:
            break
        runs: list[tuple[Mutant, ExecResult]] = []
        for m in mutants(source, start, op, seed_for(p.task_id, op))[:MAX_TRIES]:
            res = yield m
            runs.append((m, res))
            if res.status == Status.ASSERTION:
                break
        best = next((x for x in runs if x[1].status == Status.ASSERTION), None) or next(
            (x for x in runs if x[1].status in _KEPT), None
        )
        if best is not None:
            kept.append((op, *best))
    return kept


def _run(items: list[tuple[Problem, str]], workers: int, progress: bool) -> list[ExecResult]:
    programs = [("java", build_program(p, code)) for p, code in items]
    return run_programs(programs, limits=LIMITS, workers=workers, progress=progress)


def build_rows(
    problems: list[Problem], workers: int = 1, progress: bool = False, log: Callable[[str], None] = print
) -> list[dict]:
    """The repair rows for `problems` (HumanEval-X Java problems), in their order."""
    canonical = _run([(p, p.canonical_solution or "") for p in problems], workers, progress)
    usable = [p for p, r in zip(problems, canonical, strict=True) if r.passed]
    for p, r in zip(problems, canonical, strict=True):
        if not r.passed:
            log(f"skip {p.task_id}: its canonical solution does not pass ({r.status})")

    plans = {p.task_id: _plan(p) for p in usable}
    pending: dict[str, Mutant] = {}
    kept: dict[str, list[tuple[str, Mutant, ExecResult]]] = {}
    for task, plan in plans.items():
        try:
            pending[task] = next(plan)
        except StopIteration as stop:
            kept[task] = stop.value
    by_id = {p.task_id: p for p in usable}
    wave = 0
    while pending:
        wave += 1
        tasks = list(pending)
        results = _run([(by_id[t], pending[t].text) for t in tasks], workers, progress)
        for t, res in zip(tasks, results, strict=True):
            try:
                pending[t] = plans[t].send(res)
            except StopIteration as stop:
                del pending[t]
                kept[t] = stop.value
        log(f"wave {wave}: ran {len(tasks)} mutants")

    chosen = [(p, op, m, res) for p in usable for op, m, res in kept.get(p.task_id, [])]
    # second run, with the test telling which check of its `correct` list is false (HumanEval-X's tests only say
    # AssertionError); the message without that line must be the first run's
    again = _run([(instrumented(p), m.text) for p, _, m, _ in chosen], workers, progress)
    rows = []
    for (p, op, m, res), res2 in zip(chosen, again, strict=True):
        solution = p.canonical_solution or ""
        message = failure_message(res.stderr, solution)
        if res2.status != res.status or failure_message(res2.stderr, solution) != message:
            log(f"drop {p.task_id}/{op}: its failure is not reproducible")
            continue
        case = _CASE.search(res2.stdout)
        number = p.task_id.rsplit("/", 1)[-1]
        rows.append(
            {
                "task_id": f"HumanEvalJavaRepair/{number}/{op}",
                "source_task_id": p.task_id,
                "operator": op,
                "site_index": m.site.index,
                "variant": m.site.variant if len(m.site.variant) < QUOTE_CHARS else "name",
                "change": m.change,
                "edits": [e.to_json() for e in m.edits],
                "status": str(res.status),
                "exception_type": res.exception_type,
                "message": message,
                "failing_check": int(case.group(1)) if case and res.status == Status.ASSERTION else None,
                "source_sha256": source_hash(p),
            }
        )
    return rows
