"""From a model's raw output to the code that gets executed.

Base style: the output continues the prompt, so it is cut at the first stop sequence (the model would go on
writing the next function or a test). Chat style: the code is the first fenced block (```python or a bare ```),
else the raw text. Languages dispatch through `_EXTRACTORS`, which another language's module may extend with
`register_extractor`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from codequant.benchmarks.problem import Problem

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.-]*)[ \t]*\r?\n(.*?)(?:\r?\n)?```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+#.-]*[ \t]*\r?\n")


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any stop sequence."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if s and 0 <= i < cut:
            cut = i
    return text[:cut]


def first_fenced_block(text: str) -> str | None:
    """The body of the first complete ``` block, or of an unterminated one at the end (truncated output)."""
    m = _FENCE.search(text)
    if m:
        return m.group(2)
    m = _OPEN_FENCE.search(text)
    if m:
        return text[m.end() :]
    return None


def fenced_block_complete(text: str) -> bool:
    """True once `text` holds a closed fenced block: a chat answer's code is then final (used as a stop rule)."""
    return _FENCE.search(text) is not None


def extract_python(problem: Problem, raw: str, style: str) -> str:
    if style == "base":
        return cut_at_stop(raw, problem.stop)
    block = first_fenced_block(raw)
    return block if block is not None else raw


_EXTRACTORS: dict[str, Callable[[Problem, str, str], str]] = {"python": extract_python}


def register_extractor(language: str, fn: Callable[[Problem, str, str], str]) -> None:
    """Let a language module plug in its own extraction (`fn(problem, raw, style) -> code`)."""
    _EXTRACTORS[language] = fn


def extract_code(problem: Problem, raw: str, style: str) -> str:
    """The code to execute for `problem` from raw model output produced with prompt `style`."""
    fn = _EXTRACTORS.get(problem.language)
    if fn is None:
        # Java's extractor lives in its own module; importing it registers it.
        try:
            __import__(f"codequant.generation.extract_{problem.language}")
        except ImportError:
            pass
        fn = _EXTRACTORS.get(problem.language, extract_python)
    return fn(problem, raw, style)
