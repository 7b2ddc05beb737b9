"""evalplus-style sanitising of an answer's code: keep what the entry point needs, drop the rest.

Chat models wrap their function in demos: example calls, prints, `if __name__ == "__main__":` blocks that read
stdin, their own asserts (often wrong). Executed with the benchmark's tests, those extras can fail a correct
function (evalplus #81: phi-2's HumanEval pass@1 went from 0.171 to 0.494 once answers were sanitised). The rule
follows evalplus's `sanitize` (facts, not its code; evalplus 0.3.1 itself pulls API clients and `datasets` into
the environment, so it is not a dependency): take the longest run of lines that parses, keep every import, and of
the top-level functions, classes and simple assignments only those the entry point reaches by name; everything
else goes. Python is parsed with `ast` (the interpreter's own grammar); Java with tree-sitter-java
(`codequant.generation.sanitize_java`). The sandbox row keeps the raw output beside the sanitised code.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.programs.python import solution_source

_SANITIZERS: dict[str, Callable[[str, str], str]] = {}


def longest_parsable(code: str) -> str:
    """The contiguous block of lines that parses as a module and holds the most non-blank lines (fences, prose
    and a truncated tail fall outside it); the whole text when it parses."""
    try:
        ast.parse(code)
        return code
    except SyntaxError:
        pass
    lines = code.splitlines(keepends=True)
    weight = [0]
    for ln in lines:
        weight.append(weight[-1] + bool(ln.strip()))
    best, best_weight = "", 0
    for i in range(len(lines)):
        if not lines[i].strip() or lines[i][0].isspace():  # a block starts at column 0
            continue
        for j in range(len(lines), i, -1):
            if weight[j] - weight[i] <= best_weight:
                break
            chunk = "".join(lines[i:j])
            try:
                ast.parse(chunk)
            except SyntaxError:
                continue
            best, best_weight = chunk, weight[j] - weight[i]
            break
    return best


def _defined(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [t.id for t in targets if isinstance(t, ast.Name)]
    return []


def _used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def sanitize_python(code: str, entry_point: str) -> str:
    """Imports + the definitions `entry_point` reaches, in their original order; all definitions when the code
    does not define `entry_point` (then nothing tells which are needed)."""
    code = longest_parsable(code)
    if not code.strip():
        return code
    tree = ast.parse(code)
    lines = code.splitlines(keepends=True)
    defs: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        for name in _defined(node):
            defs.setdefault(name, []).append(node)
    keep: set[int] = set()
    if entry_point in defs:
        todo = [entry_point]
        seen = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for node in defs.get(name, []):
                keep.add(id(node))
                todo.extend(_used(node) - seen)
    else:
        keep = {id(n) for nodes in defs.values() for n in nodes}
    out, last_import = "", False
    for node in tree.body:
        is_import = isinstance(node, (ast.Import, ast.ImportFrom))
        if is_import or id(node) in keep:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            gap = "" if not out or (is_import and last_import) else "\n\n"
            out += gap + "".join(lines[first : node.end_lineno]).rstrip() + "\n"
            last_import = is_import
    return out


_SANITIZERS["python"] = sanitize_python


def register_sanitizer(language: str, fn: Callable[[str, str], str]) -> None:
    _SANITIZERS[language] = fn


def sanitize(problem: Problem, code: str) -> str:
    """`code` (the extracted completion, a whole answer or a continuation of the prompt) sanitised for
    `problem`. A continuation is sanitised with its prompt; the result then defines the entry point itself."""
    if problem.language == "java" and "java" not in _SANITIZERS:
        import codequant.generation.sanitize_java  # noqa: F401  (registers itself)
    fn = _SANITIZERS.get(problem.language)
    if fn is None:
        return code
    if problem.language == "python":
        return fn(solution_source(problem, code), problem.entry_point)
    return fn(code, problem.entry_point)
