"""The Python program the sandbox runs: solution + the benchmark's tests + the call that runs them.

A base-style completion continues the prompt (a function body), so the solution is `prompt + completion`. A
chat-style answer is usually the whole function (often with its imports); re-gluing it to the prompt would define
it twice or nest it, so when the completion itself defines the entry point at column 0 the solution is the
prompt's preamble (everything before the entry point's `def`: imports and helper functions such as HumanEval/10's
`is_palindrome`) followed by the completion.
"""

from __future__ import annotations

import re

from codequant.benchmarks.problem import Problem


def defines_entry_point(code: str, entry_point: str) -> bool:
    """True when `code` has a top-level `def entry_point(` (or `async def`)."""
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def prompt_preamble(prompt: str, entry_point: str) -> str:
    """The part of the prompt before the entry point's definition (imports, helpers)."""
    m = re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", prompt, re.MULTILINE)
    return prompt[: m.start()] if m else ""


def solution_source(problem: Problem, completion: str) -> str:
    """The code that defines the entry point, before the tests are appended."""
    if defines_entry_point(completion, problem.entry_point):
        preamble = prompt_preamble(problem.prompt, problem.entry_point)
        return preamble.rstrip() + ("\n\n\n" if preamble.strip() else "") + completion
    return problem.prompt + completion


def build_python_program(problem: Problem, completion: str) -> str:
    """solution + tests + `check(entry_point)`; the sandbox appends its own end-of-tests marker after this."""
    solution = solution_source(problem, completion).rstrip()
    return f"{solution}\n\n\n{problem.tests.strip()}\n\n\ncheck({problem.entry_point})\n"
