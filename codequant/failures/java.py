"""Java failures from the sandbox's status and javac's first error.

javac reports `File.java:N: error: MESSAGE`, and for `cannot find symbol` the lines `symbol: KIND NAME` and
`location: ...`. The first error decides (later ones are often its consequences):
- parse errors (`';' expected`, `illegal start of expression`, `reached end of file while parsing`, ...): `syntax`;
- `cannot find symbol`:
  - a method: `hallucinated_api` (no such method on that type, or a helper the program never declares),
    detail `List.length()` / `Solution.helper(int)`;
  - a class, or a capitalised variable used as one (`MathUtils.square(x)`): a JDK or javatuples class means a
    missing import (`compile`, detail `missing import List`); any other class is `hallucinated_api`;
  - a lower-case variable: `compile` (`undefined variable y`);
- `package x does not exist` for a package outside the JDK and javatuples: `hallucinated_api`;
- anything else javac rejects: `compile`, detail the message with its specifics cut (`incompatible types`).
The JDK's class names come from `jimage list` of the running JDK (cached); without jimage, from the javac
classpath alone a class cannot be told from a hallucination, and such errors are reported as `compile`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from codequant.failures.classes import Classified, Failure
from codequant.sandbox.java import javatuples_jar

_ERROR = re.compile(r"^\S+\.java:\d+: error: (.+)$", re.M)
_SYMBOL = re.compile(
    r"^\s*symbol:\s+(method|class|variable|interface|enum|record)\s+([^\s(]+)(\([^)]*\))?", re.M
)
_LOCATION = re.compile(
    r"^\s*location:\s+(?:(?:class|interface|enum|record) (\S+)|variable \S+ of type (\S+))", re.M
)
_PACKAGE = re.compile(r"package (\S+) does not exist")
PARSE_ERRORS = (
    "illegal start of",
    "reached end of file while parsing",
    "not a statement",
    "unclosed",
    "illegal character",
    "else without if",
    "orphaned",
    "class, interface, enum, or record",
    "illegal line end",
    "malformed",
    "empty character literal",
    "'catch' without 'try'",
    "'try' without",
    "illegal '.'",
)  # javac's parse errors: these prefixes, and "... expected"


@cache
def jdk_classes() -> frozenset[str]:
    """Simple names of the public top-level classes of the JDK's java.* and javax.* packages, and javatuples'."""
    names: set[str] = set()
    jimage = shutil.which("jimage")
    javac = shutil.which("javac")
    if jimage and javac:
        home = Path(javac).resolve().parents[1]
        modules = home / "lib" / "modules"
        if modules.is_file():
            out = subprocess.run(
                [jimage, "list", str(modules)], capture_output=True, text=True, timeout=60
            ).stdout
            for line in out.splitlines():
                path = line.strip()
                if path.startswith(("java/", "javax/")) and path.endswith(".class") and "$" not in path:
                    names.add(path.rsplit("/", 1)[-1][: -len(".class")])
    jar = javatuples_jar()
    if jar:
        with zipfile.ZipFile(jar) as zf:
            names.update(Path(n).stem for n in zf.namelist() if n.endswith(".class") and "$" not in n)
    return frozenset(names)


def _known_package(package: str) -> bool:
    return package.startswith(("java.", "javax.", "org.javatuples"))


def classify(status: str, record: Mapping[str, Any]) -> Classified:
    """Class of a failed Java completion whose status is compile_error, syntax_error, exception or killed."""
    exc = str(record.get("exception_type") or "")
    if status == "killed":
        return Classified(Failure.RUNTIME, "killed")
    if status == "exception":
        if exc in ("NoSuchMethodError", "NoClassDefFoundError", "ClassNotFoundException"):
            return Classified(Failure.HALLUCINATED_API, exc)
        return Classified(Failure.RUNTIME, exc or "exception")
    stderr = str(record.get("stderr_tail") or "")
    if status == "syntax_error":
        return Classified(Failure.SYNTAX, "syntax error")
    return compile_error(stderr)


def compile_error(stderr: str) -> Classified:
    """Class of a javac rejection from its output."""
    first = _ERROR.search(stderr)
    if first is None:  # e.g. codequant's own check: no class with main
        line = next((s for s in stderr.splitlines() if s.strip()), "compile error")
        return Classified(Failure.COMPILE, line.removeprefix("codequant: ")[:80])
    message = first.group(1).strip()
    if message.endswith("expected") or message.startswith(PARSE_ERRORS):
        return Classified(Failure.SYNTAX, message[:80])
    if message.startswith("cannot find symbol"):
        return _missing_symbol(stderr[first.end() :])
    if m := _PACKAGE.search(message):
        if _known_package(m.group(1)):
            return Classified(Failure.COMPILE, f"no package {m.group(1)}")
        return Classified(Failure.HALLUCINATED_API, f"package {m.group(1)}")
    return Classified(Failure.COMPILE, message.split(":")[0][:80])


def _missing_symbol(rest: str) -> Classified:
    sym = _SYMBOL.search(rest)
    if sym is None:
        return Classified(Failure.COMPILE, "cannot find symbol")
    kind, name, args = sym.group(1), sym.group(2), sym.group(3) or ""
    if kind == "method":
        loc = _LOCATION.search(rest[sym.end() :])
        owner = (loc.group(1) or loc.group(2)) if loc else ""
        owner = re.sub(r"<.*", "", owner)
        return Classified(Failure.HALLUCINATED_API, f"{owner + '.' if owner else ''}{name}{args}")
    if kind == "variable" and not name[:1].isupper():
        return Classified(Failure.COMPILE, f"undefined variable {name}")
    known = jdk_classes()
    if name in known:
        return Classified(Failure.COMPILE, f"missing import {name}")
    if not known:  # no class list: cannot tell a missing import from a hallucination
        return Classified(Failure.COMPILE, f"unknown class {name}")
    return Classified(Failure.HALLUCINATED_API, f"class {name}")
