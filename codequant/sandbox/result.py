"""The outcome of running one program, shared by the Python and Java sandboxes."""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codequant.sandbox.process import ProcessOutcome


class Status(StrEnum):
    OK = "ok"  # the program ran to its end (tests completed) and exited 0
    ASSERTION = "assertion"  # a test assertion failed
    EXCEPTION = "exception"  # any other uncaught exception (see `exception_type`)
    SYNTAX_ERROR = "syntax_error"  # the program does not parse
    COMPILE_ERROR = "compile_error"  # javac rejected it (Java only)
    TIMEOUT = "timeout"  # wall or CPU time limit hit; the whole process group was killed
    MEMORY = "memory"  # address-space limit hit (MemoryError / OutOfMemoryError / allocation failure)
    KILLED = "killed"  # killed by a signal, or exited before the tests ran to the end
    COMPILE_TIMEOUT = "compile_timeout"  # javac ran past its own time limit (Java only)
    HARNESS_ERROR = "harness_error"  # the sandbox itself failed on this program (the reason in stderr)


@dataclass
class ExecResult:
    status: Status
    exit_code: int | None
    duration_s: float
    stdout: str = ""  # tail, capped
    stderr: str = ""  # tail, capped
    exception_type: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == Status.OK

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = str(self.status)
        return d


def captured_text(tail: bytes, total: int) -> str:
    """A captured tail as text, saying how much was cut before it."""
    text = tail.decode("utf-8", errors="replace")
    cut = total - len(tail)
    return f"[codequant: first {cut} bytes cut]\n{text}" if cut > 0 else text


def split_marker(outcome: ProcessOutcome, marker: str) -> tuple[str, str, bool]:
    """(stdout without the end marker, stderr, whether the marker arrived): the marker line is printed after the
    tests, so only a program whose tests ran to their end has it. A run killed for its output says so in stderr."""
    stdout = outcome.stdout
    done = (marker + "\n").encode()
    finished = stdout.endswith(done)
    if finished:
        stdout = stdout[: -len(done)]
    out_text = captured_text(stdout, outcome.stdout_total - (len(done) if finished else 0))
    err_text = captured_text(outcome.stderr, outcome.stderr_total)
    if outcome.output_exceeded:
        err_text += "\n[codequant: killed: output limit exceeded]"
    return out_text, err_text, finished


def forced_status(outcome: ProcessOutcome, finished: bool) -> Status | None:
    """The status decided by how the run ended, before any traceback is read; None when the program failed on its
    own (a non-zero exit code) and its stderr must tell why. Same rules for every language."""
    code = outcome.returncode
    if outcome.memory_exceeded and not (code == 0 and finished):  # the run's memory cgroup OOM-killed it
        return Status.MEMORY
    if outcome.timed_out or code == -signal.SIGXCPU:
        return Status.TIMEOUT
    if outcome.output_exceeded:
        return Status.KILLED
    if code == 0:  # exit 0 without the marker: sys.exit(0) / System.exit(0) before the tests ended
        return Status.OK if finished else Status.KILLED
    if code is None or code < 0:
        return Status.KILLED
    return None
