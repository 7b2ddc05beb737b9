"""HumanEval program repair: the mutation operators, the shipped set, its prompts and its build."""

from __future__ import annotations

import ast
from collections import Counter

import pytest

from codequant.benchmarks.build import mutations as M
from codequant.benchmarks.build.python_repair import build_rows, failure_message
from codequant.benchmarks.listing import list_benchmarks
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.registry import benchmark_info, load_benchmark
from codequant.benchmarks.repair.python import read_rows
from codequant.benchmarks.sources.humaneval import load_humaneval
from codequant.generation.extract import extract_code
from codequant.generation.prompts import chat_instruction
from codequant.sandbox import Status, run_program, run_programs


def _mutants(src: str, operator: str) -> set[str]:
    """The mutated bodies (unparsed, one line each joined by ' | ') of the single function in `src`."""
    fn = ast.parse(src).body[0]
    return {
        " | ".join(x.strip() for x in m.body.strip().splitlines())
        for m in M.mutants(fn, fn.body, operator, "t")
    }


def test_comparison_swaps_each_operator_at_its_boundary():
    got = _mutants("def f(a, b):\n    return a < b and a != 0\n", "comparison")
    assert got == {"return a <= b and a != 0", "return a < b and a == 0"}


def test_boolean_flips_and_or():
    assert _mutants("def f(a, b):\n    return a and (b or a)\n", "boolean") == {
        "return a or (b or a)",
        "return a and (b and a)",
    }


def test_off_by_one_in_range_bounds_and_indices_only():
    got = _mutants("def f(xs, d, n):\n    for i in range(1, n):\n        xs[i - 1] = d['k']\n", "off_by_one")
    assert "for i in range(2, n): | xs[i - 1] = d['k']" in got
    assert "for i in range(0, n): | xs[i - 1] = d['k']" in got
    assert "for i in range(1, n + 1): | xs[i - 1] = d['k']" in got
    assert "for i in range(1, n): | xs[i] = d['k']" in got  # i - 1 + 1 folds to i
    assert "for i in range(1, n): | xs[i - 2] = d['k']" in got
    assert not any("'k' + 1" in g or "'k' - 1" in g for g in got)  # a string key is no index
    assert len(got) == 6
    assert _mutants("def f(s):\n    return s[:-1]\n", "off_by_one") == {"return s[:0]", "return s[:-2]"}
    assert (
        _mutants("def f(d, xs, j):\n    return [d[x] + xs[j] for x in xs]\n", "off_by_one") == set()
    )  # types unknown


def test_swapped_args_in_calls_and_non_commutative_operators():
    got = _mutants("def f(a, b):\n    return pow(a, b) - max(a, a) + a * b\n", "swapped_args")
    assert got == {"return pow(b, a) - max(a, a) + a * b", "return max(a, a) - pow(a, b) + a * b"}


def test_wrong_variable_uses_locals_of_the_function_only():
    src = "def f(xs, k):\n    n = len(xs)\n    return [x * k for x in xs] + [n, GLOBAL]\n"
    got = _mutants(src, "wrong_variable")
    assert "n = len(k) | return [x * k for x in xs] + [n, GLOBAL]" in got
    assert "n = len(xs) | return [x * n for x in xs] + [n, GLOBAL]" in got
    assert len(got) == 8 and all("GLOBAL]" in g for g in got)  # 4 loads x 2 other locals; globals stay
    assert not any(bad in g for g in got for bad in ("in x]", "len(x)", "len(f)", "len(GLOBAL)"))
    assert M.function_locals(ast.parse(src).body[0]) == ["k", "n", "xs"]


def test_negated_condition_in_if_ifexp_and_comprehension():
    got = _mutants(
        "def f(a):\n    if not a:\n        a = 1\n    return [x for x in a if x > 0] if a else a\n",
        "negated_condition",
    )
    assert "if a: | a = 1 | return [x for x in a if x > 0] if a else a" in got  # `not` removed
    assert "if not a: | a = 1 | return [x for x in a if x > 0] if not a else a" in got
    assert "if not a: | a = 1 | return [x for x in a if not x > 0] if a else a" in got
    assert len(got) == 3


def test_missing_condition_drops_a_check_a_guard_or_an_operand():
    got = _mutants(
        "def f(a, b):\n    if a and b:\n        return 1\n    else:\n        return 2\n", "missing_condition"
    )
    assert got == {
        "return 2",
        "return 1",
        "if b: | return 1 | else: | return 2",
        "if a: | return 1 | else: | return 2",
    }
    assert _mutants("def f(a):\n    if a:\n        a = 0\n", "missing_condition") == {"pass", "a = 0"}


def test_wrong_return_value():
    got = _mutants("def f(a):\n    b = a\n    if a:\n        return True\n    return b\n", "wrong_return")
    assert "b = a | if a: | return False | return b" in got
    assert "b = a | if a: | return | return b" in got
    assert "b = a | if a: | return True | return a" in got
    assert "b = a | if a: | return b | return b" in got


def test_mutants_are_seeded_valid_and_differ_from_the_original():
    fn = load_humaneval()[0]  # has_close_elements: a function with loops, an if and comparisons
    src = fn.prompt + fn.canonical_solution
    f = ast.parse(src).body[-1]
    stmts = f.body[1:]
    original = M.unparse_body(stmts)
    for op in M.OPERATORS:
        a, b = M.mutants(f, stmts, op, "seed-1"), M.mutants(f, stmts, op, "seed-1")
        assert [m.body for m in a] == [m.body for m in b]
        assert sorted(m.body for m in a) == sorted(m.body for m in M.mutants(f, stmts, op, "seed-2"))
        for m in a:
            assert m.body != original and m.site.operator == op
            compile("def f():\n" + m.body, "<mutant>", "exec")
    shuffled = [m.body for m in M.mutants(f, stmts, "wrong_variable", "seed-1")]
    assert shuffled != [m.body for m in M.mutants(f, stmts, "wrong_variable", "seed-2")]


def test_failure_message_names_the_assert_and_the_error():
    program = (
        "def inc(x):\n    return x\n\n\ndef check(candidate):\n    assert candidate(1) == 1\n"
        "    for v in (2, 3):\n        assert candidate(v) == \\\n            v + 1, 'off'\n\n\ncheck(inc)\n"
    )
    res = run_program("python", program)
    assert res.status == Status.ASSERTION
    assert failure_message(program, res.stderr, "inc") == "assert inc(v) == v + 1, 'off'\nAssertionError: off"


# ---- the shipped set ----


@pytest.fixture(scope="module")
def repair():
    return load_benchmark("humaneval-repair")


@pytest.fixture(scope="module")
def repair_msg():
    return load_benchmark("humaneval-repair-msg")


def test_shipped_set_shape(repair, repair_msg):
    rows = read_rows()
    assert len(repair) == len(rows) == len(repair_msg) >= 250
    assert [p.task_id for p in repair] == [p.task_id for p in repair_msg] == [r["task_id"] for r in rows]
    assert len({p.task_id for p in repair}) == len(repair)
    per_task = Counter(r["source_task_id"] for r in rows)
    assert max(per_task.values()) <= 2 and len(per_task) >= 150
    for task in per_task:  # two bugs of one problem are of different kinds
        ops = [r["operator"] for r in rows if r["source_task_id"] == task]
        assert len(set(ops)) == len(ops)
    by_op = Counter(r["operator"] for r in rows)
    assert set(by_op) == set(M.OPERATORS) and min(by_op.values()) >= 5


def test_prompts_hold_the_buggy_function_and_in_msg_the_message(repair, repair_msg):
    for p, q in zip(repair, repair_msg, strict=True):
        buggy, message = p.extra["buggy_function"], p.extra["message"]
        assert buggy.rstrip() in p.prompt and buggy.rstrip() in q.prompt
        shown = "\n".join(f"#     {line}".rstrip() for line in message.splitlines())
        assert shown in q.prompt and shown not in p.prompt
        assert p.prompt.rstrip().endswith(":") or "import math" in p.prompt.splitlines()[-1]
        assert p.tests and p.canonical_solution and p.benchmark == "humaneval-repair"
    assert "```python\n" in chat_instruction(repair[0]) and repair[0].extra[
        "buggy_function"
    ] in chat_instruction(repair[0])


def test_canonical_passes_and_buggy_fails_in_the_sandbox(repair):
    """Every 6th problem (the whole set: tests marked slow below); canonical passes, chat-style whole fixed function
    passes, buggy function fails the way the build recorded."""
    _check_in_sandbox(repair[::6])


@pytest.mark.slow
def test_every_repair_problem_in_the_sandbox(repair):
    _check_in_sandbox(repair)


def _check_in_sandbox(problems):
    items = []
    for p in problems:
        fixed = (
            p.prompt.rsplit("same name and signature):\n", 1)[1] + p.canonical_solution
        )  # chat: whole function
        answer = extract_code(p, f"Here is the fix:\n```python\n{fixed}```\n", "chat")
        items += [
            ("python", build_program(p, p.canonical_solution)),
            ("python", build_program(p, p.extra["buggy_function"])),
            ("python", build_program(p, answer)),
        ]
    results = run_programs(items, workers=1, progress=False)
    for i, p in enumerate(problems):
        canonical, buggy, chat = results[3 * i : 3 * i + 3]
        assert canonical.passed, (p.task_id, canonical.stderr[-500:])
        assert str(buggy.status) == p.extra["status"], (p.task_id, buggy.status, buggy.stderr[-300:])
        assert chat.passed, (p.task_id, chat.stderr[-500:])


def test_rebuilding_a_few_problems_gives_the_shipped_rows():
    wanted = ("HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/115")
    problems = [p for p in load_humaneval() if p.task_id in wanted]
    rows = build_rows(problems, workers=1, log=lambda _: None)
    shipped = [r for r in read_rows() if r["source_task_id"] in wanted]
    assert rows == shipped and len(rows) >= 6


def test_listed_with_their_sizes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = {r["name"]: r for r in list_benchmarks()}
    n = len(read_rows())
    assert rows["humaneval-repair"]["problems"] == n and rows["humaneval-repair-msg"]["problems"] == n
    assert rows["humaneval-repair"]["language"] == "python"
    assert "repair" in benchmark_info("humaneval-repair").description
