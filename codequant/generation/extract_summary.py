"""From a model's raw output to the docstring it wrote (code summarization, `benchmarks.summarize`).

Base style: the output continues an opened `\"\"\"`, so the docstring is the text up to the closing quotes (the
stop sequence). Chat style, in order: the docstring of a function the answer returns (in a fenced block or bare),
else the text inside the first triple quotes, else the fenced block's text, else the whole answer. Either way the
docstring is dedented with `inspect.cleandoc`; `summary_text` then applies the benchmark's reference rule to it.
"""

from __future__ import annotations

import ast
import inspect
import re

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.sources.summarize import description
from codequant.generation.extract import cut_at_stop, first_fenced_block

_QUOTED = re.compile(r"(\"\"\"|''')(.*?)(?:\1|$)", re.DOTALL)


def _function_docstring(text: str, entry_point: str) -> str | None:
    """The docstring of `entry_point` (else of the first function that has one) when `text` parses."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    fns = [n for n in ast.walk(module) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    fns.sort(key=lambda f: f.name != entry_point)  # the entry point first, then in source order
    for fn in fns:
        doc = ast.get_docstring(fn, clean=False)
        if doc is not None:
            return doc
    return None


def extract_docstring(problem: Problem, raw: str, style: str) -> str:
    """The docstring text in `raw` (model output produced with prompt `style`), dedented."""
    if style == "base":
        return inspect.cleandoc(cut_at_stop(raw, problem.stop))
    block = first_fenced_block(raw)
    text = block if block is not None else raw
    doc = _function_docstring(text, problem.entry_point)
    if doc is None:
        m = _QUOTED.search(text)
        doc = m.group(2) if m else text
    return inspect.cleandoc(doc)


def summary_text(problem: Problem, docstring: str) -> str:
    """What is scored: the docstring's description by the reference's own rule (examples cut, spaces normalized)."""
    return description(docstring, problem.entry_point)
