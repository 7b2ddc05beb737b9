"""The evalplus-style sanitiser: keep imports and what the entry point reaches, drop demos, prints, main blocks
and stray asserts; measured before/after on the same outputs with `resanitize`."""

from __future__ import annotations

import json
import shutil

import pytest

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs import build_program
from codequant.evaluation import EvalSettings, evaluate
from codequant.evaluation.resanitize import resanitize
from codequant.generation.sanitize import longest_parsable, sanitize, sanitize_python
from codequant.sandbox import Status, run_programs

CHAT = """Here is the solution:
```python
import math
from typing import List

SCALE = 2

def helper(x):
    return x * SCALE

def unused():
    return undefined_name

def double_all(xs: List[int]) -> List[int]:
    return [helper(x) for x in xs]

print(double_all([1, 2]))
assert double_all([1]) == [3]  # the model's own (wrong) test
if __name__ == "__main__":
    n = int(input())
```
It doubles every element because"""
PROMPT = 'from typing import List\n\n\ndef double_all(xs: List[int]) -> List[int]:\n    """Double each."""\n'
P = Problem(
    "T/0", "python", PROMPT, "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n", "double_all"
)


def test_python_keeps_what_the_entry_point_reaches():
    code = sanitize_python(CHAT, "double_all")
    assert code.startswith("import math\nfrom typing import List\n")
    for kept in ("SCALE = 2", "def helper", "def double_all"):
        assert kept in code
    for dropped in ("def unused", "print(", "assert", "__main__", "```", "Here is"):
        assert dropped not in code


def test_longest_parsable_block_and_no_entry_point():
    assert longest_parsable("prose first\ndef f():\n    return 1\nand a truncated tail (") == (
        "def f():\n    return 1\n"
    )
    assert (
        "def a" in sanitize_python("def a():\n    pass\n\n\na()\n", "missing")
        and "a()\n" not in (sanitize_python("def a():\n    pass\n\n\na()\n", "missing").split("pass")[1])
    )


def test_sanitised_answer_passes_where_the_raw_one_fails():
    raw_code = CHAT.split("```python\n")[1].split("```")[0]
    programs = [("python", build_program(P, raw_code)), ("python", build_program(P, sanitize(P, raw_code)))]
    before, after = run_programs(programs, progress=False)
    assert before.status == Status.ASSERTION and after.status == Status.OK, after.stderr


def test_base_continuation_is_sanitised_with_its_prompt():
    code = sanitize(P, "    return [2 * x for x in xs]\n\n\nprint(double_all([1]))\n")
    assert code.startswith("from typing import List") and "def double_all" in code and "print" not in code


@pytest.mark.java
@pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")
def test_java_drops_main_and_unreached_members():
    from codequant.generation.sanitize_java import sanitize_java

    answer = (
        "import java.util.*;\n\nclass Problem {\n    static long K = 1L;\n"
        "    public static long inc(long x) { return add(x); }\n"
        "    private static long add(long x) { return x + K; }\n"
        "    static void demo() { undefinedCall(); }\n"
        "    public static void main(String[] args) { System.out.println(inc(1)); }\n}\n"
    )
    code = sanitize_java(answer, "inc")
    assert "add(long x)" in code and "K = 1L" in code and "demo" not in code and "main" not in code
    p = Problem(
        "J/0",
        "java",
        "class Problem {\n    public static long inc(long x) {\n",
        "    }\n    public static void main(String[] args) {\n    assert(inc(1L) == 2L);\n    }\n\n}\n",
        "inc",
        extra={"format": "multipl-e"},
    )
    before, after = run_programs(
        [("java", build_program(p, answer)), ("java", build_program(p, code))], progress=False
    )
    assert before.status == Status.COMPILE_ERROR and after.status == Status.OK, after.stderr[-300:]


def test_resanitize_measures_the_same_outputs(tmp_path):
    rec = {
        "task_id": "Mini/0",
        "prompt": "def double(x):\n",
        "entry_point": "double",
        "canonical_solution": "    return 2 * x\n\n\nassert double(3) == 7\n",
        "test": "def check(candidate):\n    assert candidate(2) == 4\n",
    }
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(rec) + "\n")
    evaluate("canonical", "humaneval", EvalSettings(), data=data, out_dir=tmp_path / "raw", progress=False)
    res = resanitize(tmp_path / "raw", tmp_path / "san")
    assert (res["before"]["passed"], res["after"]["passed"]) == (0, 1)
    (row,) = [json.loads(x) for x in (tmp_path / "san" / "samples.jsonl").read_text().splitlines()]
    assert row["raw_output"] == rec["canonical_solution"] and "assert double(3)" in row["unsanitized"]
    assert json.loads((tmp_path / "san" / "config.json").read_text())["sanitize"] is True
