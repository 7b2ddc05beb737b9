"""Hostile Java programs: contained with the expected status, no process left, no file outside changed."""

from __future__ import annotations

import shutil
import socket

import pytest
from hostile_kit import assert_runner_alive, leftovers

from codequant.sandbox import Limits, Status
from codequant.sandbox.isolation import namespace_support, python_for, resolve_user
from codequant.sandbox.java import run_java

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed"),
]

PROGRAM = """import java.io.*;
import java.nio.file.*;
import java.util.*;
public class Main {
    public static void main(String[] args) throws Exception {
        BODY
        if (1 + 1 != 2) throw new AssertionError("tests");
    }
}
"""


def run(body: str, limits: Limits | None = None):
    return run_java(PROGRAM.replace("BODY", body), limits or Limits(wall_timeout_s=6))


def test_thread_that_never_ends_times_out(token):
    body = (
        "Thread t = new Thread(() -> { while (true) { try { Thread.sleep(1000); } catch (InterruptedException e) {} } });"
        " t.start();"
    )
    r = run(body, Limits(wall_timeout_s=2))
    assert r.status == Status.TIMEOUT


@pytest.mark.parametrize("trick", ["System.exit(0);", "Runtime.getRuntime().halt(0);"])
def test_exit_0_before_the_asserts_is_not_a_pass(trick):
    r = run(trick + ' if (true) throw new AssertionError("never reached");')
    assert r.status == Status.KILLED and r.exit_code == 0


def test_huge_allocation_is_memory():
    r = run("long[] a = new long[Integer.MAX_VALUE - 8]; System.out.println(a.length);")
    assert (r.status, r.exception_type) == (Status.MEMORY, "OutOfMemoryError")


def test_spawned_daemon_is_killed(token):
    py = python_for(None, resolve_user(None))
    body = (
        f'new ProcessBuilder("{py}", "-c", "import os, time\\nos.setsid()\\ntime.sleep(600)", "{token}")'
        ".redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectErrorStream(true).start(); Thread.sleep(300);"
    )
    r = run(body)
    assert r.status == Status.OK, r.stderr
    assert leftovers(token) == []


def test_files_outside_the_sandbox_are_untouched(canaries):
    paths = ", ".join(f'"{p}"' for p in canaries)
    body = (
        f'for (String p : new String[]{{{paths}}}) {{ try {{ Files.writeString(Path.of(p), "pwned"); '
        'System.out.println("CHANGED " + p); } catch (Exception e) {} '
        'try { Files.delete(Path.of(p)); System.out.println("DELETED " + p); } catch (Exception e) {} }'
    )
    r = run(body)
    assert r.status == Status.OK, r.stderr
    assert "CHANGED" not in r.stdout and "DELETED" not in r.stdout


@pytest.mark.skipif(not namespace_support().net, reason="no network namespace on this machine")
def test_network_is_unreachable():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        r = run(f'new java.net.Socket("127.0.0.1", {port}).close();')
    assert r.status == Status.EXCEPTION and r.exception_type in ("SocketException", "ConnectException")


def test_output_flood_is_killed():
    r = run(
        'String s = "x".repeat(65536); while (args.length == 0) System.out.print(s);',
        Limits(wall_timeout_s=20, output_limit_bytes=8 * 1024 * 1024, output_cap_bytes=1024),
    )
    assert r.status == Status.KILLED and "output limit" in r.stderr
    assert_runner_alive()
