import pytest

from codequant.benchmarks.problem import Problem
from codequant.errors import CodequantError
from codequant.generation.prompts import build_prompt, resolve_style

P = Problem("T/0", "python", 'def f(x):\n    """Return x."""\n', "", "f")


def test_styles(tiny_tokenizer):
    assert resolve_style("auto", tiny_tokenizer) == "chat"
    base = build_prompt(P, tiny_tokenizer, "base")
    assert base.text == P.prompt and base.add_special_tokens
    chat = build_prompt(P, tiny_tokenizer, "chat")
    assert chat.text.startswith("<|im_start|>user\n") and chat.text.endswith("<|im_start|>assistant\n")
    assert "```python\ndef f(x):" in chat.text and not chat.add_special_tokens


def test_no_template_and_bad_style(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    assert resolve_style("auto", tok) == "base"
    with pytest.raises(CodequantError, match="no chat template"):
        resolve_style("chat", tok)
    with pytest.raises(CodequantError, match="unknown prompt style"):
        resolve_style("fancy", tok)
