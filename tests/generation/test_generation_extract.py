from codequant.benchmarks.problem import Problem
from codequant.benchmarks.sources.humaneval import STOP_SEQUENCES
from codequant.generation.extract import cut_at_stop, extract_code, fenced_block_complete, first_fenced_block

P = Problem("T/0", "python", "def f(x):\n", "", "f", stop=STOP_SEQUENCES)


def test_base_cuts_at_first_stop():
    raw = "    return x\n\n\ndef g():\n    pass\n# comment\n"
    assert extract_code(P, raw, "base") == "    return x\n\n"
    assert cut_at_stop("    if x:\n        print(x)\n", STOP_SEQUENCES) == "    if x:\n        print(x)\n"
    assert cut_at_stop("abc", ()) == "abc"


def test_chat_takes_first_fenced_block():
    raw = "Here you go:\n```python\ndef f(x):\n    return x\n```\nAnd also\n```\nother\n```"
    assert extract_code(P, raw, "chat") == "def f(x):\n    return x"
    assert first_fenced_block("```\nplain\n```") == "plain"
    assert extract_code(P, "def f(x): return x", "chat") == "def f(x): return x"


def test_unterminated_block_and_completion_rule():
    raw = "```python\ndef f(x):\n    return"
    assert first_fenced_block(raw) == "def f(x):\n    return"
    assert not fenced_block_complete(raw)
    assert fenced_block_complete(raw + " x\n```")
    assert not fenced_block_complete("```python")
