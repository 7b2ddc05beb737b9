"""No API function outside cli.py takes more than 8 parameters: settings travel as typed dataclasses
(`QuantRun`, `CalibrationSpec`, `CompareOptions`, `GptqOptions`, `WalkOptions`, ...), not as loose keywords.

The API is every public module-level function and every public method (plus `__init__`) of a public class.
Parameters are counted positional + keyword-only, without self/cls and without *args/**kwargs. `cli.py` is
exempt: a Typer command's parameters are its flags.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_PARAMS = 8
PACKAGE = Path(__file__).resolve().parents[1] / "codequant"
EXEMPT = {PACKAGE / "cli.py"}


def param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    return len([x for x in (*a.posonlyargs, *a.args, *a.kwonlyargs) if x.arg not in ("self", "cls")])


def api_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of the public functions and of the public methods and constructors of public
    classes, at module level (functions nested in functions are not API)."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            out.append((node.name, node))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    not item.name.startswith("_") or item.name == "__init__"
                ):
                    out.append((f"{node.name}.{item.name}", item))
    return out


def offenders(source: str, where: str) -> list[str]:
    return [
        f"{where}:{fn.lineno} {name} has {param_count(fn)} parameters"
        for name, fn in api_functions(ast.parse(source))
        if param_count(fn) > MAX_PARAMS
    ]


def test_no_api_function_outside_cli_takes_more_than_8_parameters():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path not in EXEMPT:
            found += offenders(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not found, (
        "group these parameters into a settings dataclass (see codequant/sandbox/limits.py):\n"
        + "\n".join(found)
    )


def test_the_count_sees_what_it_must_and_skips_what_it_may():
    source = """
def nine(a, b, c, d, e, f, g, /, h, *, i): ...
def eight(a, b, c, d, e, f, g, h, *args, **kwargs): ...
def _private(a, b, c, d, e, f, g, h, i): ...
class Api:
    def __init__(self, a, b, c, d, e, f, g, h, i): ...
    @classmethod
    def make(cls, a, b, c, d, e, f, g, h): ...
    def _helper(self, a, b, c, d, e, f, g, h, i): ...
class _Hidden:
    def run(self, a, b, c, d, e, f, g, h, i): ...
def outer():
    def inner(a, b, c, d, e, f, g, h, i): ...
"""
    assert [o.split()[1] for o in offenders(source, "x.py")] == ["nine", "Api.__init__"]
