import subprocess
import sys

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.python_program import prompt_preamble, solution_source

PROMPT = (
    "from typing import List\n\n\ndef helper(x):\n    return x * 2\n\n\n"
    "def double_all(xs: List[int]) -> List[int]:\n    \"\"\"Double each.\"\"\"\n"
)
TESTS = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
P = Problem("T/0", "python", PROMPT, TESTS, "double_all")


def _runs(program: str) -> bool:
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=20).returncode == 0


def test_base_completion_continues_prompt():
    program = build_program(P, "    return [helper(x) for x in xs]\n")
    assert program.startswith(PROMPT)
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
