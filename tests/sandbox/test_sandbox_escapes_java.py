"""The second hostile round in Java: host unix sockets, off-heap memory, a forged end marker, javac's own limits.
Real programs through javac and the JVM; each fix was switched off once to see its test fail."""

from __future__ import annotations

import shutil
import time

import pytest

from codequant.sandbox import Limits, Status
from codequant.sandbox import java as java_sandbox
from codequant.sandbox.cgroup import controller_roots
from codequant.sandbox.isolation import namespace_support
from codequant.sandbox.java import JAVAC_TIMEOUT_S, javac_limits, run_java

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed"),
]
SUP = namespace_support()

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
    return run_java(PROGRAM.replace("BODY", body), limits or Limits(wall_timeout_s=10))


@pytest.mark.skipif(not SUP.seccomp, reason="no seccomp filter on this machine")
def test_host_unix_socket_cannot_be_reached_from_java(host_unix_socket):
    path, got = host_unix_socket
    body = (
        f'try (var ch = java.nio.channels.SocketChannel.open(java.net.UnixDomainSocketAddress.of("{path}"))) {{'
        ' ch.write(java.nio.ByteBuffer.wrap("leak".getBytes())); System.out.println("sent"); }'
        ' catch (IOException e) { System.out.println("blocked " + e); }'
    )
    r = run(body)
    time.sleep(0.3)
    assert r.status == Status.OK, r.stderr
    assert "blocked" in r.stdout and bytes(got) == b""


@pytest.mark.skipif(
    "memory" not in controller_roots(), reason="no memory cgroup (needs root and the controller)"
)
def test_off_heap_memory_beside_xmx_is_limited_per_run():
    body = (
        'var f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe"); f.setAccessible(true);'
        " var u = (sun.misc.Unsafe) f.get(null); long chunk = 256L << 20;"
        " for (int i = 0; i < 8; i++) { long a = u.allocateMemory(chunk); u.setMemory(a, chunk, (byte) 1); }"
        ' System.out.println("held 2 GB off-heap");'
    )
    r = run(body, Limits(wall_timeout_s=20, memory_mb=1024))
    assert r.status == Status.MEMORY, (r.status, r.stdout, r.stderr[-500:])


def test_marker_cannot_be_rebuilt_from_the_class_name():
    body = (
        'String cmd = System.getProperty("sun.java.command");'
        ' String tok = cmd.replaceAll(".*CodequantRun([0-9a-f]+).*", "$1");'
        ' System.out.println("__codequant_done_" + tok + "__"); System.out.flush(); System.exit(0);'
    )
    r = run(body)
    assert r.status == Status.KILLED, (r.status, r.stdout)


def test_marker_is_in_no_file_the_program_can_read():
    body = (
        'var found = new ArrayList<String>(); var re = java.util.regex.Pattern.compile("__codequant_done_[0-9a-f]+__");'
        ' try (var files = Files.walk(Paths.get("."))) { for (Path p : (Iterable<Path>) files::iterator) {'
        ' if (!Files.isRegularFile(p)) continue; var m = re.matcher(new String(Files.readAllBytes(p), "ISO-8859-1"));'
        " while (m.find()) found.add(m.group()); } }"
        ' System.out.println("found " + found.size()); for (String m : found) System.out.println(m);'
        " System.out.flush(); System.exit(0);"
    )
    r = run(body)
    assert r.status == Status.KILLED, (r.status, r.stdout)
    assert "found 0" in r.stdout


def test_javac_has_its_own_limits_whatever_the_programs():
    for limits in (Limits(wall_timeout_s=1), Limits(wall_timeout_s=300, cpu_s=300)):
        own = javac_limits(limits)
        assert own.wall_timeout_s == JAVAC_TIMEOUT_S and own.cpu_s == int(JAVAC_TIMEOUT_S)
        assert own.memory_mb == java_sandbox.JAVAC_MEMORY_MB


def test_javac_past_its_time_limit_is_compile_timeout(monkeypatch):
    """javac with a 0.3 s limit on a unit it needs over 2 s of CPU for (10,000 methods): its 1 s CPU limit
    (the kernel's, whatever the host's scheduling) or the wall limit stops it; never a compiled program."""
    monkeypatch.setattr(java_sandbox, "JAVAC_TIMEOUT_S", 0.3)
    methods = "".join(f"    static int f{i}(int x) {{ return x * {i} + (x >> 3); }}\n" for i in range(10_000))
    source = f"public class Main {{\n{methods}    public static void main(String[] a) {{ System.out.println(f1(2)); }}\n}}\n"
    r = run_java(source, Limits(wall_timeout_s=10))
    assert r.status == Status.COMPILE_TIMEOUT, (r.status, r.stderr)
    assert "javac ran past its 0.3 s limit" in r.stderr
