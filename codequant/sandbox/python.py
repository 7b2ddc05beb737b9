"""Run one Python program in the sandbox and tell how it ended.

"Passed" must mean that the tests ran to their end, not merely that the process exited 0: a completion that calls
`sys.exit(0)` or `os._exit(0)` before the asserts would otherwise pass. So a fresh random end marker is printed
by a line appended after the program; the status is `ok` only when the exit code is 0 AND stdout ends with that
marker. The marker is in no file the program can read (not in program.py, its argv or environment): the
appended epilogue reads it from an inherited pipe (`launcher.MARKER_FD`), once, after the tests. The epilogue
prints it only when asserts are on (`__debug__` and `sys.flags.optimize == 0`): a program that re-executes
itself with `python -O` (every assert stripped) never gets `ok`.

Syntax errors are found by compiling in the parent first (cheap, and exact: same interpreter), so that a
`SyntaxError` raised at run time by `exec`/`eval`/an import counts as an ordinary exception.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
import traceback
import warnings

from codequant.errors import CodequantError
from codequant.sandbox.isolation import python_for, resolve_user
from codequant.sandbox.launcher import LAUNCH_FAILED, MARKER_FD
from codequant.sandbox.limits import Limits
from codequant.sandbox.process import ProcessOutcome, run_sandboxed, sandbox_env, scratch_dir
from codequant.sandbox.result import ExecResult, Status, forced_status, split_marker

PROGRAM_NAME = "program.py"
_SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")
_COMPILE_LOCK = threading.Lock()  # warnings.catch_warnings() swaps global state: one compile at a time
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s.*|:)?$")
_TRACEBACK = "Traceback (most recent call last):"
# after the tests: the marker from its pipe, only while asserts are on (no -O re-exec, no optimized compile)
EPILOGUE = (
    f'if __debug__ and not __import__("sys").flags.optimize:\n'
    f'    print(__import__("os").read({MARKER_FD}, 256).decode(), end="", flush=True)\n'
)


def run_python(source: str, limits: Limits | None = None) -> ExecResult:
    """Run `source` as a fresh `python -I program.py` under `limits` (defaults: `Limits()`)."""
    limits = limits or Limits()
    marker = f"__codequant_done_{secrets.token_hex(12)}__"
    program = source + ("" if source.endswith("\n") or not source else "\n") + EPILOGUE
    start = time.monotonic()
    syntax = _syntax_error(program)
    if syntax is not None:
        exc_type, message = syntax
        return ExecResult(Status.SYNTAX_ERROR, None, time.monotonic() - start, "", message, exc_type)
    run_as = resolve_user(limits.user)
    python = python_for(limits.python, run_as)
    with scratch_dir(run_as) as work:
        path = work / PROGRAM_NAME
        path.write_text(program, encoding="utf-8")
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)
        outcome = run_sandboxed(
            [python, "-I", PROGRAM_NAME], work, limits, sandbox_env(work), run_as, marker=marker
        )
    if (
        outcome.returncode == LAUNCH_FAILED
        and outcome.stderr.startswith(b"codequant-sandbox: cannot start")
        and b"[Errno 11]" not in outcome.stderr
    ):  # EAGAIN: the user's RLIMIT_NPROC is full right now
        # (another run's fork bomb), a failure of this run only -> `killed`, not of the interpreter
        # the interpreter itself could not start (e.g. not executable by the sandbox user): every run would fail
        why = outcome.stderr.decode(errors="replace").strip()
        raise CodequantError(f"{why}; give Limits(python=...) an interpreter the sandbox user can run")
    return classify(outcome, marker)


def _syntax_error(program: str) -> tuple[str, str] | None:
    """(exception type, Python-style message) when `program` does not compile, else None."""
    try:
        with _COMPILE_LOCK, warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # SyntaxWarning/DeprecationWarning of user code: not ours to print
            compile(program, PROGRAM_NAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        name = type(exc).__name__ if isinstance(exc, SyntaxError) else "SyntaxError"
        return name, "".join(traceback.format_exception_only(exc))
    except (RecursionError, MemoryError):
        return None  # too deeply nested for the parent's compiler: let the child decide
    return None


def exception_type(stderr: str) -> str | None:
    """The class name of the uncaught exception, from the last line of the (last) traceback in `stderr`."""
    lines = stderr.splitlines()
    start = max((i for i, line in enumerate(lines) if line == _TRACEBACK), default=-1) + 1
    for line in reversed(lines[start:]):
        m = _EXC_LINE.match(line)
        if m and not line.startswith(" "):
            return m.group(1).rsplit(".", 1)[-1]
    return None


def classify(outcome: ProcessOutcome, marker: str) -> ExecResult:
    """Status from how the process ended; strips the end marker from stdout."""
    out_text, err_text, finished = split_marker(outcome, marker)
    code = outcome.returncode
    exc: str | None = None
    status = forced_status(outcome, finished)
    if status is None and code == LAUNCH_FAILED and "codequant-sandbox:" in err_text:
        status = Status.KILLED  # the launcher could not set the sandbox up: nothing of the program ran
    if status is None:
        exc = exception_type(err_text)
        if exc is None:
            status, exc = Status.EXCEPTION, "SystemExit"  # exit(n) / os._exit(n) with n != 0, no traceback
        elif exc == "AssertionError":
            status = Status.ASSERTION
        elif exc.endswith("MemoryError"):
            status = Status.MEMORY
        else:
            status = Status.EXCEPTION
    return ExecResult(status, code, round(outcome.duration_s, 4), out_text, err_text, exc)
