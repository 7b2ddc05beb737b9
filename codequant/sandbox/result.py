"""The outcome of running one program, shared by the Python and Java sandboxes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"  # the program ran to its end (tests completed) and exited 0
    ASSERTION = "assertion"  # a test assertion failed
    EXCEPTION = "exception"  # any other uncaught exception (see `exception_type`)
    SYNTAX_ERROR = "syntax_error"  # the program does not parse
    COMPILE_ERROR = "compile_error"  # javac rejected it (Java only)
    TIMEOUT = "timeout"  # wall or CPU time limit hit; the whole process group was killed
    MEMORY = "memory"  # address-space limit hit (MemoryError / OutOfMemoryError / allocation failure)
    KILLED = "killed"  # killed by a signal, or exited before the tests ran to the end


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
