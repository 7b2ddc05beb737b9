"""Assembling Java programs from prompt + completion + tests, and extracting Java from model output."""

from __future__ import annotations

import shutil

import pytest

from codequant.benchmarks.programs.java import build_java_program, declares_method
from codequant.benchmarks.translate.java_translate import translate_problem
from codequant.generation.extract import extract_code
from codequant.generation.extract_java import cut_at_method_end, extract_java
from codequant.java_source import brace_balance, main_class, mask, public_class
from codequant.sandbox import Status
from codequant.sandbox.java import run_java

PROMPT = 'def add(x: int, y: int) -> int:\n    """Add x and y.\n    >>> add(2, 3)\n    5\n    """\n'
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
BODY = "        return x + y;\n"


@pytest.fixture(scope="module")
def problem():
    return translate_problem("HumanEval/999", PROMPT, TESTS, "add")


def test_masking_ignores_braces_in_comments_and_strings():
    src = "class A { // }\n  String s = \"}}\"; char c = '{'; /* { */ }\n"
    assert brace_balance(src) == 0 and len(mask(src)) == len(src)
    assert main_class("class B {}\nclass C { public static void main(String[] a) {} }") == "C"
    assert public_class("class B {}\npublic class Main {}") == "Main"


def test_declaration_is_not_a_call():
    assert declares_method("public static long add(long x, long y) {\n", "add")
    assert not declares_method("return add(x - 1, y) + 1;\n", "add")


def test_continuation_open_or_closed_gives_the_same_program(problem):
    open_prog = build_java_program(problem, BODY)
    closed_prog = build_java_program(problem, BODY + "    }\n")
    assert open_prog == closed_prog
    assert brace_balance(open_prog) == 0


def test_whole_method_and_whole_class_replace_the_declaration(problem):
    method = "public static long add(long x, long y) {\n    return x + y;\n}"
    whole = (
        "import java.util.*;\npublic class Solution {\n"
        + method
        + "\n    public static void main(String[] a) { System.out.println(1); }\n}\n"
    )
    for completion in (method, whole):
        prog = build_java_program(problem, completion)
        assert prog.count("long add(") == 1 and prog.count("void main(") == 1
        assert brace_balance(prog) == 0


def test_base_extraction_cuts_at_the_method_end(problem):
    raw = "        if (x > 0) { return x + y; }\n        return y + x;\n}\n\nclass Junk {}\n"
    code = extract_java(raw, "base", problem)
    assert code.endswith("return y + x;\n}") and "Junk" not in code
    assert cut_at_method_end("    {\n  return 1;\n    }\n}\n", 0) == "    {\n  return 1;\n    }"
    chat = "Here:\n```java\npublic static long add(long x, long y) { return x + y; }\n```\nbye"
    assert extract_code(problem, chat, "chat") == "public static long add(long x, long y) { return x + y; }"


@pytest.mark.java
@pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")
def test_translated_problem_runs_right_and_wrong(problem):
    assert run_java(build_java_program(problem, BODY)).status == Status.OK
    assert run_java(build_java_program(problem, "        return x - y;\n")).status == Status.ASSERTION
    chat = "```java\nclass Problem {\n    public static long add(long x, long y) {\n        return y + x;\n    }\n}\n```"
    assert run_java(build_java_program(problem, extract_code(problem, chat, "chat"))).status == Status.OK


def test_imports_of_a_truncated_answer_move_to_the_top(problem):
    prog = build_java_program(problem, "import java.util.stream.IntStream;\n        return x + y;\n")
    assert prog.startswith("import java.util.stream.IntStream;\n") and prog.count("IntStream") == 1
