"""The failure classes, and how one failed completion is given exactly one of them.

A completion fails for one reason first, so each failed completion gets one class (and a detail that says more):

| class              | what it means                                                                              |
|--------------------|--------------------------------------------------------------------------------------------|
| `degenerate`       | not a program the model meant: no code extracted (`no_code`), a loop of repeated text      |
|                    | (`repetition`), or cut at the token limit so that it does not parse (`token_limit`)        |
| `syntax`           | does not parse (Python SyntaxError/IndentationError; javac parse errors such as `';' expected`) |
| `compile`          | Java only: parses but javac rejects it (types, a missing import of a JDK class, an undefined variable) |
| `hallucinated_api` | calls what does not exist: a name, module attribute, module or builtin-type method that the |
|                    | program, the standard library and the allowed imports do not define; in Java `cannot find  |
|                    | symbol` for a method, or a class that neither the program nor the JDK (nor javatuples) has  |
| `timeout`          | wall or CPU time limit                                                                     |
| `memory`           | memory limit (MemoryError, OutOfMemoryError)                                               |
| `assertion`        | ran, and a test assertion failed: the wrong answer                                         |
| `runtime`          | any other uncaught exception, by type (detail: `IndexError`, `NullPointerException`, ...)  |
| `harness`          | not the model's: the sandbox itself failed on this program (status `harness_error`, the    |
|                    | error in stderr); checked first, whatever the completion looks like                        |

`timeout` includes javac running past its own limit (status `compile_timeout`, detail `compile time limit`).
Apart from `harness`, the order of the table is the order of precedence: a completion cut at the token limit that fails to parse is
`degenerate/token_limit`, not `syntax`, because the cut and not the model's syntax broke it. A completion that was
cut but parses is judged by how it ran. Passed completions have no class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Failure(StrEnum):
    DEGENERATE = "degenerate"
    SYNTAX = "syntax"
    COMPILE = "compile"
    HALLUCINATED_API = "hallucinated_api"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    ASSERTION = "assertion"
    RUNTIME = "runtime"
    HARNESS = "harness"


CLASSES: tuple[str, ...] = tuple(str(f) for f in Failure)


@dataclass(frozen=True)
class Classified:
    failure: Failure
    detail: str  # e.g. "token_limit", "IndexError", "name 'foo'", "List.length()"

    def to_dict(self) -> dict[str, str]:
        return {"failure": str(self.failure), "failure_detail": self.detail}


def classify(record: Mapping[str, Any]) -> Classified | None:
    """The class of one executed completion (a samples.jsonl record: status, exception_type, stderr_tail,
    stop_reason, completion, program, language); None when it passed."""
    from codequant.failures import degenerate, java, python

    if record.get("passed") or record.get("status") == "ok":
        return None
    status = str(record.get("status") or "")
    completion = str(record.get("completion") or "")
    language = str(record.get("language") or "python").lower()
    if status == "harness_error":
        return Classified(Failure.HARNESS, str(record.get("exception_type") or "harness_error"))
    if degenerate.no_code(completion, language):
        return Classified(Failure.DEGENERATE, "no_code")
    if degenerate.repetitive(completion):
        return Classified(Failure.DEGENERATE, "repetition")
    if record.get("stop_reason") == "length" and status in ("syntax_error", "compile_error"):
        return Classified(Failure.DEGENERATE, "token_limit")
    if status == "timeout":
        return Classified(Failure.TIMEOUT, "time limit")
    if status == "compile_timeout":
        return Classified(Failure.TIMEOUT, "compile time limit")
    if status == "memory":
        return Classified(Failure.MEMORY, str(record.get("exception_type") or "memory limit"))
    if status == "assertion":
        return Classified(Failure.ASSERTION, "wrong answer")
    lang = java if language == "java" else python
    return lang.classify(status, record)
