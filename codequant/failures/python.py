"""Python failures from the sandbox's status and the traceback's last line.

Hallucinated API, precisely: the program called something that does not exist anywhere it could come from.
- `NameError: name 'x' is not defined` where `x` is bound nowhere in the program (prompt + completion), is no
  builtin, no standard-library module and no public name of the standard-library modules solutions use (`sqrt`,
  `List`, `Counter`, ...). A name bound elsewhere in the program (a scope bug) or one the standard library has
  (a missing import) is a `runtime` NameError.
- `AttributeError` on a module (`module 'math' has no attribute 'cbrt2'`) or on a builtin type (`'list' object
  has no attribute 'push'`); on None or on the program's own objects it is a `runtime` AttributeError.
- `ModuleNotFoundError` (the sandbox's interpreter has the standard library and nothing else a benchmark
  allows), and `ImportError: cannot import name 'x' from 'm'`.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

from codequant.failures.classes import Classified, Failure

# Standard-library modules whose public names a solution may use without the module prefix.
COMMON_MODULES = (
    "typing",
    "collections",
    "itertools",
    "functools",
    "math",
    "cmath",
    "re",
    "string",
    "heapq",
    "bisect",
    "operator",
    "statistics",
    "fractions",
    "decimal",
    "random",
    "datetime",
    "copy",
    "sys",
    "os",
    "json",
    "hashlib",
    "array",
    "numbers",
    "dataclasses",
    "enum",
    "time",
    "string",
)
BUILTIN_TYPES = {
    t.__name__
    for t in (str, list, dict, set, frozenset, tuple, int, float, complex, bool, bytes, bytearray, range)
}

_NAME = re.compile(r"name '([^']+)' is not defined")
_MODULE_ATTR = re.compile(r"module '([^']+)' has no attribute '([^']+)'")
_TYPE_ATTR = re.compile(r"(?:type object )?'([^']+)'(?: object)? has no attribute '([^']+)'")
_NO_MODULE = re.compile(r"No module named '([^']+)'")
_CANNOT_IMPORT = re.compile(r"cannot import name '([^']+)' from '([^']+)'")


@cache
def stdlib_names() -> frozenset[str]:
    """Builtins, standard-library module names and the public names of COMMON_MODULES."""
    names = set(dir(builtins)) | set(sys.stdlib_module_names)
    for module in COMMON_MODULES:
        try:
            names.update(n for n in dir(importlib.import_module(module)) if not n.startswith("_"))
        except ImportError:  # pragma: no cover - part of every CPython
            continue
    return frozenset(names)


def bound_names(program: str) -> set[str]:
    """Every name the program binds anywhere (defs, classes, assignments, imports, arguments, loop targets)."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return set(re.findall(r"\b(?:def|class)\s+(\w+)", program))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def exception_message(stderr: str, exc_type: str) -> str:
    """The text after `ExcType:` on the traceback's last line naming `exc_type` ('' when absent)."""
    for line in reversed(stderr.splitlines()):
        head, sep, rest = line.partition(":")
        if sep and head.rsplit(".", 1)[-1] == exc_type and not line.startswith(" "):
            return rest.strip()
    return ""


def classify(status: str, record: Mapping[str, Any]) -> Classified:
    """Class of a failed Python completion whose status is syntax_error, exception or killed."""
    exc = str(record.get("exception_type") or "")
    if status == "syntax_error":
        return Classified(Failure.SYNTAX, exc or "SyntaxError")
    if status == "killed":
        return Classified(Failure.RUNTIME, "killed")
    message = exception_message(str(record.get("stderr_tail") or ""), exc)
    hallucinated = _hallucination(exc, message, str(record.get("program") or ""))
    if hallucinated:
        return Classified(Failure.HALLUCINATED_API, hallucinated)
    return Classified(Failure.RUNTIME, exc or "exception")


def _hallucination(exc: str, message: str, program: str) -> str | None:
    """The missing thing ("name foo", "math.cbrt2", "list.push", "module numpy"), or None if it exists."""
    if exc == "NameError" and (m := _NAME.search(message)):
        name = m.group(1)
        if name in bound_names(program) or name in stdlib_names():
            return None
        return f"name {name}"
    if exc == "AttributeError":
        if m := _MODULE_ATTR.search(message):
            return f"{m.group(1)}.{m.group(2)}"
        if (m := _TYPE_ATTR.search(message)) and m.group(1) in BUILTIN_TYPES:
            return f"{m.group(1)}.{m.group(2)}"
        return None
    if exc == "ModuleNotFoundError" and (m := _NO_MODULE.search(message)):
        return f"module {m.group(1)}"
    if exc == "ImportError" and (m := _CANNOT_IMPORT.search(message)):
        return f"{m.group(2)}.{m.group(1)}"
    return None
