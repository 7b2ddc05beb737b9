"""HumanEval code summarization (`humaneval-summarize`): write the docstring of a function, scored as text.

Each of the 164 HumanEval functions is shown whole (the prompt's preamble and helpers, the signature, the
canonical body) with the entry point's docstring cut out: the docstring statement's lines are removed and every
other line is kept byte for byte (the cut is found with `ast`). The model is asked for the docstring.

Prompt (base style, plain continuation): the function without its docstring, a comment asking for its docstring,
the `def` line(s) again and an opening `\"\"\"`; the model continues with the text and stops at the closing
`\"\"\"` (the stop sequence). Chat style: `extra["chat_instruction"]` (used by `generation.prompts`) shows the
function in a fenced block and asks for the docstring text only.

Reference rule (`description`): the cleaned docstring (`inspect.cleandoc`) up to the first line that starts the
examples, whitespace-normalized to single spaces. That line is, first of all, a line starting with `>>>` or an
example heading alone on its line ("Example:", "Examples", "Example 1:", "For example:", "for examble:",
"For instance:", "e.g.:", "[input/output] samples:"); only when the docstring has neither, the first line
that starts with a call of the entry point (`f(...) == x`, `f(...) -> x`, `* f(...) => x`, ...): in docstrings
with `>>>` examples such lines define the function (`fib4(0) -> 0`) and stay. A sentence that merely begins
with "E.g." or "For example," stays too. No marker: the whole docstring. The same rule cuts the model's
docstring before scoring, so examples it writes are not scored against a description (`generation.extract_summary`).

The problems are scored by text, not execution: `extra["task"] == "summarize"` routes them past the sandbox, with
the reference in `extra["reference"]` and the whole docstring in `extra["docstring"]`. The canonical solution is
the original docstring text with its closing quotes, so `codequant evaluate canonical` checks extraction, the
reference rule and the scorers end to end (BLEU 100, ROUGE-L 1 on every problem).
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.sources.humaneval import load_humaneval
from codequant.errors import CodequantError

TASK = "summarize"
STOP = ('"""',)
_HEADING = re.compile(
    r"^(for exam[pb]les?|for instance|examples?|e\.g\.|\[input/output\] samples)\b[\s\d]*:?$", re.IGNORECASE
)


def is_summarize(problem: Problem) -> bool:
    """True for a problem scored by text (BLEU/ROUGE) instead of by running tests."""
    return problem.extra.get("task") == TASK


def _docstring_stmt(fn: ast.FunctionDef) -> ast.Expr | None:
    """The function's docstring statement: its first string-constant expression (HumanEval/115 has `import
    math` before it, so it is not always `body[0]`)."""
    for s in fn.body:
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            return s
    return None


def _normalize(text: str) -> str:
    return " ".join(text.split())


def description(docstring: str, entry_point: str) -> str:
    """The reference rule (module docstring): the text before the first example, whitespace-normalized."""
    lines = inspect.cleandoc(docstring).splitlines()
    cut = next(
        (k for k, line in enumerate(lines) if line.strip().startswith(">>>") or _HEADING.match(line.strip())),
        None,
    )
    if cut is None:
        call = re.compile(r"^(\*\s*|for\s+)?" + re.escape(entry_point) + r"\s*\(")
        cut = next((k for k, line in enumerate(lines) if call.match(line.strip())), None)
    text = _normalize("\n".join(lines[:cut]))
    return text or _normalize("\n".join(lines))


def split_docstring(source: str, entry_point: str) -> tuple[str, str, str]:
    """(source without the entry point's docstring, its `def` line(s), the docstring's text)."""
    module = ast.parse(source)
    fn = next(
        (s for s in reversed(module.body) if isinstance(s, ast.FunctionDef) and s.name == entry_point), None
    )
    if fn is None:
        raise CodequantError(f"no top-level function {entry_point!r} in the source")
    doc = _docstring_stmt(fn)
    if doc is None:
        raise CodequantError(f"{entry_point} has no docstring to summarize")
    lines = source.splitlines(keepends=True)
    first, last = doc.lineno - 1, doc.end_lineno  # the docstring's lines, 0-based, end exclusive
    if lines[first][: doc.col_offset].strip() or lines[last - 1][doc.end_col_offset :].strip():
        raise CodequantError(f"the docstring of {entry_point} shares a line with code; it cannot be cut out")
    header = "".join(lines[fn.lineno - 1 : fn.body[0].lineno - 1])
    return "".join(lines[:first] + lines[last:]), header, doc.value.value


def summarize_prompt(code: str, header: str, entry_point: str) -> str:
    return (
        f"{code.rstrip()}\n\n\n# The same function `{entry_point}` with its docstring: a short description in "
        f'plain English of what it does.\n{header}    """'
    )


def chat_instruction(code: str, entry_point: str) -> str:
    return (
        f"Write the docstring of the Python function `{entry_point}` below: a short description in plain "
        f"English of what it does. Answer with the docstring text only, without examples or code.\n\n"
        f"```python\n{code.rstrip()}\n```"
    )


def summarize_problem(p: Problem) -> Problem:
    """One HumanEval problem as a summarization problem."""
    code, header, docstring = split_docstring(p.prompt + (p.canonical_solution or ""), p.entry_point)
    reference = description(docstring, p.entry_point)
    extra = {
        "task": TASK,
        "reference": reference,
        "docstring": inspect.cleandoc(docstring),
        "code": code,
        "chat_instruction": chat_instruction(code, p.entry_point),
    }
    return Problem(
        task_id=p.task_id.replace("HumanEval/", "HumanEvalSummarize/"),
        language="python",
        prompt=summarize_prompt(code, header, p.entry_point),
        tests="",
        entry_point=p.entry_point,
        stop=STOP,
        canonical_solution=docstring + '"""',
        benchmark="humaneval-summarize",
        extra=extra,
    )


def load_humaneval_summarize(data: Path | None = None) -> list[Problem]:
    """Every HumanEval problem (of the wheel's file, or of `data` in the same format) as a summarization task."""
    return [summarize_problem(p) for p in load_humaneval(data)]
