"""The Java sandbox: every way a program can end maps to its status."""

from __future__ import annotations

import shutil

import pytest

from codequant.sandbox import Limits, Status, run_program
from codequant.sandbox.java import java_limits, run_java

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed"),
]

PROGRAM = """import java.util.*;
import org.javatuples.*;
class Problem {
    public static long inc(long x) { return x + 1; } // a { in a comment
    public static void main(String[] args) {
        String braces = "}{";
        BODY
    }
}
"""


def run(body: str, limits: Limits | None = None):
    return run_java(PROGRAM.replace("BODY", body), limits)


def test_ok_with_javatuples_on_the_classpath():
    r = run('assert inc(1) == 2; System.out.println("pair " + Pair.with(1l, "a"));')
    assert r.status == Status.OK, r.stderr
    assert r.stdout == "pair [1, a]\n"  # the end marker is stripped


def test_assertion_needs_ea_and_is_reported():
    r = run("assert inc(1) == 3;")
    assert r.status == Status.ASSERTION and r.exception_type == "AssertionError"


def test_exception_compile_error_and_exit_codes():
    r = run("int[] a = null; a[0] = 1;")
    assert (r.status, r.exception_type) == (Status.EXCEPTION, "NullPointerException")
    r = run('long x = "a";')
    assert r.status == Status.COMPILE_ERROR and "incompatible types" in r.stderr
    r = run("System.exit(3);")
    assert (r.status, r.exit_code, r.exception_type) == (Status.EXCEPTION, 3, "SystemExit")


def test_exit_zero_before_the_tests_end_is_killed():
    r = run("System.exit(0);")
    assert r.status == Status.KILLED and r.exit_code == 0


def test_timeout_and_memory():
    r = run("while (inc(0) > 0) {}", Limits().with_timeout(2))
    assert r.status == Status.TIMEOUT
    r = run("List<long[]> keep = new ArrayList<>(); while (true) keep.add(new long[1 << 20]);")
    assert (r.status, r.exception_type) == (Status.MEMORY, "OutOfMemoryError")


def test_public_main_class_and_runner_dispatch():
    src = "public class Main {\n    public static void main(String[] a) {\n        System.out.print(6 * 7);\n    }\n}\n"
    r = run_program("java", src)
    assert r.status == Status.OK and r.stdout == "42"
    assert run_java("class A { int f() { return 1; } }").status == Status.COMPILE_ERROR


def test_jvm_limits_drop_rlimit_as_and_bound_the_heap():
    limits, heap = java_limits(Limits(address_space_mb=2048, max_processes=64))
    assert limits.address_space_mb is None and heap == 512 and limits.max_processes == 512
