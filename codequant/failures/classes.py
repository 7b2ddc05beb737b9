"""The failure classes (the one place their names are spelled), and what each means.

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

from dataclasses import dataclass
from enum import StrEnum


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
