"""The Java program the sandbox runs: the problem's prompt, the model's code, the braces it still needs, tests.

Every Java benchmark splits a class differently between prompt and tests, recorded in `Problem.extra["format"]`:

- multipl-e (also codequant's own translation): the prompt ends inside the method, the tests begin with the
  `}` that closes it, then `main` and the class's `}`;
- mceval: the prompt ends at the method's signature, the tests are `main` plus the class's `}`;
- humaneval-x, mxeval: prompt + solution close the class; the tests are a separate class `Main`.

A completion is either a continuation of the prompt (base prompting: a method body, possibly already closed), or
a whole method or class (chat answers). A continuation is glued to the prompt; a whole method replaces the
prompt's declaration (the prompt's imports, class header and Javadoc are kept); a whole class contributes its
members (its name does not matter: the tests call the method unqualified or through the prompt's class name).
Then missing `}` are added down to the depth the tests expect.
"""

from __future__ import annotations

import re

from codequant.benchmarks.problem import Problem
from codequant.java_source import (
    brace_balance,
    first_block_end,
    mask,
    matching_brace,
    top_level_classes,
)

# format -> (brace depth the code must be closed to before the tests, leading `}` of the tests to drop)
FORMATS: dict[str, tuple[int, int]] = {
    "multipl-e": (1, 1),
    "mceval": (1, 0),
    "humaneval-x": (0, 0),
    "mxeval": (0, 0),
}
_IMPORT = re.compile(r"^\s*import\s+(?:static\s+)?[\w.*\s]+;[ \t]*\n?", re.MULTILINE)
_MAIN = re.compile(r"^[ \t]*(?:@\w+\s+)*public\s+static\s+void\s+main\s*\(", re.MULTILINE)
_KEYWORDS_BEFORE_CALL = ("return", "new", "else", "throw", "case", "yield", "assert")


def declares_method(code: str, name: str) -> bool:
    """True when `code` holds a declaration `Type name(...) {` (not merely a call)."""
    masked = mask(code)
    pattern = re.compile(rf"([\w$>\]]+)\s+{re.escape(name)}\s*\([^;{{}}]*\)\s*(?:throws\s+[\w$.,\s]+)?\{{")
    return any(m.group(1) not in _KEYWORDS_BEFORE_CALL for m in pattern.finditer(masked))


def _declaration_start(prompt: str, name: str) -> int:
    """Offset of the line declaring `name` in the prompt (its Javadoc stays before it)."""
    masked = mask(prompt)
    hits = list(re.finditer(rf"\b{re.escape(name)}\s*\(", masked))
    if not hits:
        return len(prompt)
    return masked.rfind("\n", 0, hits[-1].start()) + 1


def _drop_main(code: str) -> str:
    """Remove `public static void main(...) {...}` methods: the benchmark's tests bring their own."""
    while True:
        masked = mask(code)
        m = _MAIN.search(masked)
        if m is None:
            return code
        end = first_block_end(code[m.start() :])
        if end is None:
            return code[: m.start()]
        code = code[: m.start()] + code[m.start() + end :]


def _split_whole(completion: str, name: str) -> tuple[str, str, str]:
    """(imports, class members, other top-level classes) of a completion that declares the method itself."""
    imports = "".join(
        completion[m.start() : m.end()].strip() + "\n" for m in _IMPORT.finditer(mask(completion))
    )
    body = _IMPORT.sub("", completion) if imports else completion
    masked = mask(body)
    classes = top_level_classes(body)
    if not classes:
        return imports, body, ""
    members, others = None, []
    for _name, pos in classes:
        brace = masked.find("{", pos)
        end = matching_brace(masked, brace) if brace >= 0 else None
        chunk = body[brace + 1 : end] if end is not None else body[brace + 1 :]
        if members is None and declares_method(chunk, name):
            members = chunk
        elif end is not None and not _MAIN.search(mask(body[pos : end + 1])):
            others.append(body[pos : end + 1])
    if members is None:
        return imports, body, ""
    return imports, members, "\n\n".join(others)


def _close(code: str, target: int) -> str:
    depth = brace_balance(code)
    if depth <= target:
        return code
    closers = "".join("    " * (level - 1) + "}\n" for level in range(depth, target, -1))
    return code.rstrip() + "\n" + closers


def solution_code(problem: Problem, completion: str) -> tuple[str, str]:
    """(code closed to the depth the tests expect, extra top-level classes of the completion)."""
    fmt = problem.extra.get("format", "multipl-e")
    target, _ = FORMATS[fmt]
    if declares_method(completion, problem.entry_point):
        imports, members, others = _split_whole(completion, problem.entry_point)
        header = problem.prompt[: _declaration_start(problem.prompt, problem.entry_point)]
        code = imports + header + _drop_main(members).strip("\n") + "\n"
    else:
        # `import` lines are never valid inside a class: a chat answer's imports go to the top
        imports = "".join(
            completion[m.start() : m.end()].strip() + "\n" for m in _IMPORT.finditer(mask(completion))
        )
        body = _IMPORT.sub("", completion) if imports else completion
        code, others = imports + problem.prompt + body, ""
    return _close(code, target), others


def build_java_program(problem: Problem, completion: str) -> str:
    """prompt + completion + closing braces + tests, as the benchmark's format lays them out."""
    fmt = problem.extra.get("format", "multipl-e")
    _, lead = FORMATS[fmt]
    code, others = solution_code(problem, completion)
    tests = problem.tests
    for _ in range(lead):
        stripped = tests.lstrip()
        if stripped.startswith("}"):
            tests = stripped[1:].lstrip("\n")
    program = code.rstrip() + "\n" + tests.rstrip() + "\n"
    return program + ("\n" + others.strip() + "\n" if others.strip() else "")
