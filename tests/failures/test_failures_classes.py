"""The failure taxonomy on real sandbox runs: every class in Python and in Java, from programs written to fail
that way, plus the precedence rules (degenerate before syntax, scope bugs and missing imports are not
hallucinations)."""

from __future__ import annotations

import shutil

import pytest

from codequant.failures import Failure, classify
from codequant.sandbox.java import run_java
from codequant.sandbox.limits import Limits
from codequant.sandbox.python import run_python

needs_java = pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK (javac) on this machine")


def record(
    language: str,
    completion: str,
    program: str | None = None,
    stop_reason: str = "stop",
    limits: Limits | None = None,
) -> dict:
    """A samples.jsonl record as the evaluation writes it, executed for real."""
    program = program if program is not None else completion
    res = (run_java if language == "java" else run_python)(program, limits)
    return {
        "task_id": "t",
        "sample_index": 0,
        "language": language,
        "completion": completion,
        "program": program,
        "stop_reason": stop_reason,
        "passed": res.passed,
        **{k: v for k, v in res.to_dict().items() if k != "stdout"},
        "stderr_tail": res.stderr,
    }


def py(body: str, test: str = "assert f(2) == 4\n", **kw) -> dict:
    completion = body
    return record("python", completion, "def f(x):\n" + body + "\n" + test, **kw)


PY_CASES = [
    ("    return x * 2\n", None, None),
    ("    return x + 3\n", Failure.ASSERTION, "wrong answer"),
    ("    return x *\n", Failure.SYNTAX, "SyntaxError"),
    ("  return x\n    y = 1\n", Failure.SYNTAX, "IndentationError"),
    ("    return [1][x]\n", Failure.RUNTIME, "IndexError"),
    ("    return None + x\n", Failure.RUNTIME, "TypeError"),
    ("    return fancy_double(x)\n", Failure.HALLUCINATED_API, "name fancy_double"),
    ("    import math\n    return math.double(x)\n", Failure.HALLUCINATED_API, "math.double"),
    ("    return [x].push(x)\n", Failure.HALLUCINATED_API, "list.push"),
    (
        "    import numpy_but_not_installed\n    return x\n",
        Failure.HALLUCINATED_API,
        "module numpy_but_not_installed",
    ),
    ("    from math import double\n    return double(x)\n", Failure.HALLUCINATED_API, "math.double"),
    # names the standard library defines: a missing import, not a hallucination
    ("    return int(sqrt(x * x)) * 2\n", Failure.RUNTIME, "NameError"),
    ("    return math.floor(x) * 2\n", Failure.RUNTIME, "NameError"),
    # a name the program binds elsewhere: a scope bug, not a hallucination
    ("    def g():\n        y = 1\n    return y\n", Failure.RUNTIME, "NameError"),
    # AttributeError on None or on the program's own objects: runtime
    ("    return None.real_part\n", Failure.RUNTIME, "AttributeError"),
    ("    while True:\n        pass\n", Failure.TIMEOUT, "time limit"),
    ("    return bytearray(10**10)\n", Failure.MEMORY, "MemoryError"),
    ("    # TODO\n    pass\n", Failure.DEGENERATE, "no_code"),
    ("    y = x\n" + "    y = y + 0\n" * 6 + "    return y\n", Failure.DEGENERATE, "repetition"),
]


@pytest.mark.parametrize("body, failure, detail", PY_CASES)
def test_python_failures_are_classified_from_real_runs(body, failure, detail):
    limits = Limits(wall_timeout_s=2.0, cpu_s=2) if failure == Failure.TIMEOUT else None
    found = classify(py(body, limits=limits))
    if failure is None:
        assert found is None
    else:
        assert (found.failure, found.detail) == (failure, detail)


def test_a_cut_completion_that_does_not_parse_is_degenerate_and_one_that_parses_is_judged_by_its_run():
    cut = py("    return (x *", stop_reason="length")
    assert cut["status"] == "syntax_error"
    assert (classify(cut).failure, classify(cut).detail) == (Failure.DEGENERATE, "token_limit")
    assert classify(py("    return (x *", stop_reason="stop")).failure == Failure.SYNTAX
    parses = py("    return x + 1\n", stop_reason="length")
    assert classify(parses).failure == Failure.ASSERTION


def java_program(method_body: str, imports: str = "import java.util.*;\n") -> str:
    return (
        f"{imports}class Solution {{\n    public int f(int x) {{\n{method_body}\n    }}\n}}\n"
        "public class Main {\n    public static void main(String[] args) {\n"
        "        if (new Solution().f(2) != 4) throw new AssertionError();\n    }\n}\n"
    )


JAVA_CASES = [
    ("        return x * 2;", "import java.util.*;\n", None, None),
    ("        return x + 3;", "import java.util.*;\n", Failure.ASSERTION, "wrong answer"),
    ("        return x * 2", "import java.util.*;\n", Failure.SYNTAX, "';' expected"),
    (
        "        int[] a = new int[1];\n        return a[x];",
        "",
        Failure.RUNTIME,
        "ArrayIndexOutOfBoundsException",
    ),
    ("        String s = x;\n        return 1;", "", Failure.COMPILE, "incompatible types"),
    ("        return y;", "", Failure.COMPILE, "undefined variable y"),
    (
        "        List<Integer> l = new ArrayList<>();\n        return x * 2;",
        "",
        Failure.COMPILE,
        "missing import List",
    ),
    (
        "        return MathUtils.twice(x);",
        "import java.util.*;\n",
        Failure.HALLUCINATED_API,
        "class MathUtils",
    ),
    (
        "        return doubleIt(x);",
        "import java.util.*;\n",
        Failure.HALLUCINATED_API,
        "Solution.doubleIt(int)",
    ),
    (
        "        List<Integer> l = new ArrayList<>();\n        return l.length() + x * 2;",
        "import java.util.*;\n",
        Failure.HALLUCINATED_API,
        "List.length()",
    ),
    (
        "        return 2 * x;",
        "import org.apache.commons.math3.util.FastMath;\n",
        Failure.HALLUCINATED_API,
        "package org.apache.commons.math3.util",
    ),
]


@needs_java
@pytest.mark.parametrize("body, imports, failure, detail", JAVA_CASES)
def test_java_failures_are_classified_from_real_runs(body, imports, failure, detail):
    found = classify(record("java", body, java_program(body, imports)))
    if failure is None:
        assert found is None
    else:
        assert (found.failure, found.detail) == (failure, detail)


@needs_java
def test_java_timeout_memory_and_repetition():
    spin = "        while (true) { x++; }"
    found = classify(record("java", spin, java_program(spin), limits=Limits(wall_timeout_s=4.0, cpu_s=4)))
    assert (found.failure, found.detail) == (Failure.TIMEOUT, "time limit")
    hog = "        long[][] a = new long[1 << 20][];\n        for (int i = 0; i < a.length; i++) a[i] = new long[1 << 16];\n        return a.length;"
    found = classify(record("java", hog, java_program(hog)))
    assert (found.failure, found.detail) == (Failure.MEMORY, "OutOfMemoryError")
    loop = "        x = x + 1;\n" * 5 + "        return x;"
    found = classify(record("java", loop, java_program(loop)))
    assert (found.failure, found.detail) == (Failure.DEGENERATE, "repetition")


@needs_java
def test_java_degenerate_outputs():
    cut = java_program("        return (x *")
    assert classify(record("java", "        return (x *", cut, stop_reason="length")).detail == "token_limit"
    empty = record("java", "  // nothing here\n  ", java_program("        // nothing here"))
    assert (classify(empty).failure, classify(empty).detail) == (Failure.DEGENERATE, "no_code")
