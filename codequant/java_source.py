"""Just enough Java lexing to find classes, `main`, the end of a method and a call's arguments by bracket matching.

A neutral module below every package: the sandbox (file and class names), generation (where a Java answer ends)
and the benchmarks (program assembly, the repair sets' prompts) all read Java source with it, and none of them
needs a parser (tree-sitter is for building the repair sets only).

Braces inside comments, string/char literals and text blocks must not count, so `mask` blanks them out while
keeping every offset (and newline) in place; all structure queries run on the masked text and report offsets
valid in the original.
"""

from __future__ import annotations

import re

_CLASS = re.compile(r"\b(?:class|interface|enum|record)\s+([A-Za-z_$][\w$]*)")
_PUBLIC_CLASS = re.compile(
    r"\bpublic\s+(?:(?:final|abstract|static)\s+)*(?:class|interface|enum|record)\s+"
    r"([A-Za-z_$][\w$]*)"
)
_MAIN = re.compile(
    r"\bpublic\s+(?:final\s+)?static\s+(?:final\s+)?void\s+main\s*\(\s*(?:final\s+)?String\s*"
    r"(?:\[\s*\]|\.\.\.)\s*[\w$]+\s*(?:\[\s*\])?\s*\)"
)
_PACKAGE = re.compile(r"^\s*package\s+([\w$.]+)\s*;", re.MULTILINE)
_STATIC_METHOD = re.compile(r"\b(?:public|private|protected)?\s*static\s+[\w$<>\[\],.? ]+?\s+([\w$]+)\s*\(")


def mask(src: str) -> str:
    """`src` with comments and literal contents replaced by spaces (newlines kept), same length."""
    out = list(src)
    i, n = 0, len(src)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif src.startswith('"""', i):
            j = src.find('"""', i + 3)
            j = n if j < 0 else j + 3
            blank(i + 3, j - 3)
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        else:
            i += 1
    return "".join(out)


def depth_at(masked: str, pos: int) -> int:
    """Brace depth just before offset `pos` of masked text."""
    head = masked[:pos]
    return head.count("{") - head.count("}")


def matching_brace(masked: str, open_pos: int) -> int | None:
    """Offset of the `}` closing the `{` at `open_pos`, or None when the text ends first."""
    depth = 0
    for k in range(open_pos, len(masked)):
        ch = masked[k]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return k
    return None


def top_level_classes(src: str) -> list[tuple[str, int]]:
    """(name, offset) of each type declared at brace depth 0."""
    masked = mask(src)
    return [(m.group(1), m.start()) for m in _CLASS.finditer(masked) if depth_at(masked, m.start()) == 0]


def public_class(src: str) -> str | None:
    """The top-level `public` type, which javac requires to live in a file of the same name."""
    masked = mask(src)
    for m in _PUBLIC_CLASS.finditer(masked):
        if depth_at(masked, m.start()) == 0:
            return m.group(1)
    return None


def main_class(src: str) -> str | None:
    """The top-level class whose body declares `public static void main(String[] ...)`."""
    masked = mask(src)
    classes = [(m.group(1), m.start()) for m in _CLASS.finditer(masked) if depth_at(masked, m.start()) == 0]
    for m in _MAIN.finditer(masked):
        owner = [name for name, pos in classes if pos < m.start()]
        if owner:
            return owner[-1]
    return None


def package_name(src: str) -> str | None:
    m = _PACKAGE.search(mask(src))
    return m.group(1) if m else None


def static_method_names(src: str) -> list[str]:
    """Names of the static methods `src` declares, in order (comments and literals masked)."""
    return _STATIC_METHOD.findall(mask(src))


def first_block_end(src: str) -> int | None:
    """Offset just past the `}` that closes the first `{` of `src` (e.g. a method body), or None."""
    masked = mask(src)
    start = masked.find("{")
    if start < 0:
        return None
    end = matching_brace(masked, start)
    return None if end is None else end + 1


def brace_balance(src: str) -> int:
    """Opening minus closing braces outside comments and literals."""
    masked = mask(src)
    return masked.count("{") - masked.count("}")


_OPENERS = {"(": ")", "[": "]", "{": "}"}
_GENERIC_ARGS = re.compile(
    r"<[\w$.,\s?\[\]&<>]*>"
)  # what type arguments may hold: names, `?`, arrays, nesting


def _generic_end(masked: str, lt: int) -> int | None:
    """Offset just past the `>` closing type arguments opened at `lt` (`HashMap<String, Integer>`), or None when
    the `<` is a comparison. Type arguments follow a name with no space and hold only type syntax."""
    if lt == 0 or not (masked[lt - 1].isalnum() or masked[lt - 1] in "_$"):
        return None
    depth = 0
    for k in range(lt, len(masked)):
        depth += {"<": 1, ">": -1}.get(masked[k], 0)
        if depth == 0:
            return k + 1 if _GENERIC_ARGS.fullmatch(masked, lt, k + 1) else None
    return None


def call_arguments(src: str, open_paren: int) -> list[tuple[int, int]] | None:
    """(start, end) of each argument of the call whose `(` is at `open_paren`, comments and surrounding space
    left out; commas inside nested brackets, literals and type arguments do not split. None when the `(` is never
    closed."""
    masked = mask(src)
    spans, start, stack, k = [], open_paren + 1, [")"], open_paren + 1
    while k < len(masked):
        ch = masked[k]
        if ch == "<" and (end := _generic_end(masked, k)) is not None:
            k = end
            continue
        if ch in _OPENERS:
            stack.append(_OPENERS[ch])
        elif ch == stack[-1]:
            stack.pop()
        if not stack or (ch == "," and len(stack) == 1):
            spans.append((start, k))
            start = k + 1
        if not stack:
            break
        k += 1
    else:
        return None
    trimmed = [
        (a + len(masked[a:b]) - len(masked[a:b].lstrip()), b - len(masked[a:b]) + len(masked[a:b].rstrip()))
        for a, b in spans
    ]
    return [(a, b) for a, b in trimmed if a < b]
