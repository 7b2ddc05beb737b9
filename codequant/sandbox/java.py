"""Run one Java program in the sandbox: `javac` into a scratch dir, then `java -ea`, and tell how it ended.

Same isolation as the Python sandbox (`codequant.sandbox.process`: own session and process group killed as a
whole, scratch dir, scrubbed env, rlimits, namespaces where allowed), with three Java-specific choices:

- Memory. A JVM reserves gigabytes of *virtual* address space at start (heap, code cache, class space), so
  RLIMIT_AS at the Python default (2 GiB) stops it from starting at all. Java runs with RLIMIT_AS off and the
  heap bounded by `-Xmx` (a quarter of `address_space_mb`, at least 256 MB) plus bounded metaspace, code cache
  and direct memory; exhausting them raises OutOfMemoryError -> `memory`. RLIMIT_NPROC is raised to at least
  512 because every JVM runs a dozen threads and the limit counts threads of all concurrent runs of the user.
- Start-up. Benchmark programs are tiny and run once, so both JVMs (javac's and the program's) use the C1 JIT
  only, the serial GC, class-data sharing and no perf-data file: about half the start-up time of the defaults.
- "Tests ran to the end". The program's own `main` is called from a generated runner class that prints a
  random marker afterwards; exit 0 without the marker (a `System.exit(0)` before the asserts) -> `killed`.
  The runner class name and the marker are separate random tokens (the class name is visible to the program,
  e.g. in `sun.java.command`), and the marker is in no file: the runner reads it from an inherited pipe
  (`/proc/self/fd/3`, see `launcher.MARKER_FD`) after `main` returned.
- Compiling is limited on its own: javac gets `JAVAC_TIMEOUT_S` wall and CPU seconds and `JAVAC_HEAP_MB` of heap
  (in a run memory limit of `JAVAC_MEMORY_MB`) whatever the program's limits; past the time limit the status
  is `compile_timeout`. The classes it writes are kept on the host and are read-only for the program's run.

The classpath is given with `-cp` and carries javatuples (MultiPL-E's Java problems use Pair/Triplet); the
scrubbed environment holds no CLASSPATH that could silently differ.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

from codequant.errors import CodequantError
from codequant.java_source import main_class, package_name, public_class
from codequant.sandbox.isolation import resolve_user
from codequant.sandbox.launcher import MARKER_FD
from codequant.sandbox.limits import Limits
from codequant.sandbox.process import ProcessOutcome, run_sandboxed, sandbox_env, scratch_dir
from codequant.sandbox.result import ExecResult, Status, captured_text, forced_status, split_marker

JAVATUPLES_CANDIDATES = ("/usr/share/java/javatuples.jar",)
JVM_FAST_START = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-XX:-UsePerfData")
JAVAC_TIMEOUT_S = 20.0  # javac's own limit (wall and CPU): a HumanEval-X unit compiles in ~1-3 s here
JAVAC_HEAP_MB = 512
JAVAC_MEMORY_MB = 1024  # javac's whole run (heap, metaspace, code cache, the JVM itself)
_EXC = re.compile(r'Exception in thread "[^"]*" ([\w$.]+)(?::|\s*$)', re.MULTILINE)


def java_tools() -> tuple[str, str]:
    """Absolute paths of `javac` and `java` ($JAVA_HOME/bin first, then PATH)."""
    found = []
    for tool in ("javac", "java"):
        home = os.environ.get("JAVA_HOME")
        path = (
            str(Path(home) / "bin" / tool)
            if home and (Path(home) / "bin" / tool).is_file()
            else shutil.which(tool)
        )
        if path is None:
            raise CodequantError(
                f"{tool} not found; install a JDK (Debian: apt-get install openjdk-17-jdk-headless)"
            )
        found.append(os.path.realpath(path))
    return found[0], found[1]


def javatuples_jar() -> str | None:
    """$CODEQUANT_JAVATUPLES_JAR, else the Debian libjavatuples-java jar, else None."""
    env = os.environ.get("CODEQUANT_JAVATUPLES_JAR")
    if env and Path(env).is_file():
        return env
    return next((p for p in JAVATUPLES_CANDIDATES if Path(p).is_file()), None)


def java_limits(limits: Limits) -> tuple[Limits, int]:
    """(limits for a JVM, heap MB): RLIMIT_AS off, more threads allowed; see the module docstring."""
    heap = max(256, (limits.address_space_mb or 2048) // 4)
    procs = None if limits.max_processes is None else max(limits.max_processes, 512)
    return replace(limits, address_space_mb=None, max_processes=procs), heap


def _runner_source(package: str | None, target: str, name: str) -> str:
    """The entry class: the program's `main`, then the marker read from its pipe (never in this source)."""
    head = f"package {package};\n\n" if package else ""
    return (
        f"{head}public class {name} {{\n    public static void main(String[] args) throws Throwable {{\n"
        f"        {target}.main(args);\n        System.out.flush();\n"
        f'        try (java.io.FileInputStream in = new java.io.FileInputStream("/proc/self/fd/{MARKER_FD}")) {{\n'
        f"            byte[] b = new byte[256];\n            for (int n; (n = in.read(b)) > 0; ) System.out.write(b, 0, n);\n"
        f"        }}\n"
        f"        System.out.flush();\n    }}\n}}\n"
    )


def javac_limits(limits: Limits) -> Limits:
    """javac's own limits (time, memory), whatever the program's: compiling is not the program's budget."""
    jvm, _ = java_limits(limits)
    return replace(jvm, memory_mb=JAVAC_MEMORY_MB if limits.memory_mb is not None else None).with_timeout(
        JAVAC_TIMEOUT_S
    )


def run_java(source: str, limits: Limits | None = None) -> ExecResult:
    """Compile and run `source` (one compilation unit with a `main`) under `limits` (defaults: `Limits()`)."""
    limits = limits or Limits()
    start = time.monotonic()
    target = main_class(source)
    if target is None:
        return ExecResult(
            Status.COMPILE_ERROR,
            None,
            0.0,
            "",
            "codequant: no top-level class declares public static void main(String[] args)",
        )
    javac, java = java_tools()
    marker = f"__codequant_done_{secrets.token_hex(12)}__"
    runner = f"CodequantRun{secrets.token_hex(8)}"  # its own token: the class name does not reveal the marker
    package = package_name(source)
    jvm_limits, heap = java_limits(limits)
    run_as = resolve_user(limits.user)
    jar = javatuples_jar()
    with scratch_dir(run_as) as work:
        (work / "classes").mkdir()
        unit = work / f"{public_class(source) or target}.java"
        unit.write_text(source, encoding="utf-8")
        (work / f"{runner}.java").write_text(_runner_source(package, target, runner), encoding="utf-8")
        if run_as is not None:
            for p in (work / "classes", unit, work / f"{runner}.java"):
                os.chown(p, run_as.uid, run_as.gid)
        cp = "classes" + (f":{jar}" if jar else "")
        javac_argv = [
            javac,
            *(f"-J{o}" for o in JVM_FAST_START),
            f"-J-Xmx{JAVAC_HEAP_MB}m",
            "-encoding",
            "UTF8",
            "-proc:none",
            "-nowarn",
            "-Xlint:none",
            "-d",
            "classes",
            "-cp",
            cp,
            unit.name,
            f"{runner}.java",
        ]
        built = run_sandboxed(
            javac_argv, work, javac_limits(limits), sandbox_env(work), run_as, shared={"classes": "rw"}
        )
        if built.timed_out or built.returncode != 0:
            err = captured_text(built.stderr, built.stderr_total)
            timed_out = built.timed_out or built.returncode == -signal.SIGXCPU
            if timed_out:
                err += f"\n[codequant: javac ran past its {JAVAC_TIMEOUT_S:g} s limit]"
            status = Status.COMPILE_TIMEOUT if timed_out else Status.COMPILE_ERROR
            return ExecResult(
                status,
                built.returncode,
                round(time.monotonic() - start, 4),
                captured_text(built.stdout, built.stdout_total),
                err,
                None,
            )
        main = f"{package}.{runner}" if package else runner
        java_argv = [
            java,
            "-ea",
            *JVM_FAST_START,
            f"-Xmx{heap}m",
            "-Xss8m",
            "-XX:MaxMetaspaceSize=256m",
            "-XX:ReservedCodeCacheSize=64m",
            f"-XX:MaxDirectMemorySize={heap}m",
            "-Dfile.encoding=UTF-8",
            "-cp",
            cp,
            main,
        ]
        outcome = run_sandboxed(
            java_argv, work, jvm_limits, sandbox_env(work), run_as, marker=marker, shared={"classes": "ro"}
        )
    result = classify_java(outcome, marker)
    result.duration_s = round(time.monotonic() - start, 4)
    return result


def exception_type(stderr: str) -> str | None:
    """Simple class name of the exception that ended `main` ('Exception in thread "main" java.lang.X: ...')."""
    found = _EXC.findall(stderr)
    return found[-1].rsplit(".", 1)[-1] if found else None


def classify_java(outcome: ProcessOutcome, marker: str) -> ExecResult:
    """Status from how the JVM ended; strips the end marker from stdout."""
    out_text, err_text, finished = split_marker(outcome, marker)
    code = outcome.returncode
    exc: str | None = None
    status = forced_status(outcome, finished)
    if status is None:
        exc = exception_type(err_text)
        if exc is None:
            if "OutOfMemoryError" in err_text or "Could not reserve enough space" in err_text:
                status, exc = Status.MEMORY, "OutOfMemoryError"
            else:
                status, exc = Status.EXCEPTION, "SystemExit"  # System.exit(n != 0) without a stack trace
        elif exc == "AssertionError":
            status = Status.ASSERTION
        elif exc == "OutOfMemoryError":
            status = Status.MEMORY
        else:
            status = Status.EXCEPTION
    return ExecResult(status, code, round(outcome.duration_s, 4), out_text, err_text, exc)
