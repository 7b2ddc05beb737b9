"""Java code from a model's raw output.

Base style (the output continues the prompt inside the method): cut at the first stop sequence (MultiPL-E's
"\\n    }\\n"), then also at the `}` that closes the method, found by brace matching outside comments and
literals: a model that indents differently would otherwise run on into a `main` or a second class. Chat style:
the first fenced block (```java or bare), else the whole answer; `build_java_program` then accepts a body, a
whole method or a whole class.
"""

from __future__ import annotations

from codequant.benchmarks.problem import Problem
from codequant.generation.extract import cut_at_stop, first_fenced_block, register_extractor
from codequant.java_source import brace_balance, mask


def cut_at_method_end(completion: str, open_depth: int) -> str:
    """`completion` up to the `}` that brings the method's depth to 0; `open_depth` is how many of the method's
    braces the prompt left open (1 when the prompt ends after `{`, 0 when it ends at the signature)."""
    masked = mask(completion)
    depth, opened = open_depth, open_depth > 0
    for i, ch in enumerate(masked):
        if ch == "{":
            depth += 1
            opened = True
        elif ch == "}":
            depth -= 1
            if opened and depth <= 0:
                return completion[: i + 1]
    return completion


def extract_java(raw: str, style: str, problem: Problem) -> str:
    """The code to glue to `problem`'s prompt, from raw output produced with prompt `style`."""
    if style == "base":
        text = cut_at_stop(raw, problem.stop)
        return cut_at_method_end(text, max(0, brace_balance(problem.prompt) - 1))
    block = first_fenced_block(raw)
    return block if block is not None else raw


register_extractor("java", lambda problem, raw, style: extract_java(raw, style, problem))
