"""How a problem becomes the text a model continues.

`base` feeds the raw prompt (a signature + docstring) for plain continuation: what base code models are trained
for. `chat` wraps it in the tokenizer's chat template with an instruction, which instruction-tuned models
(SmolLM2-Instruct) need to answer at all. `auto` picks chat when the tokenizer has a chat template.
"""

from __future__ import annotations

from dataclasses import dataclass

from codequant.benchmarks.problem import Problem
from codequant.errors import CodequantError

STYLES = ("auto", "chat", "base")

_LANG_NAMES = {"python": "Python", "java": "Java"}


@dataclass(frozen=True)
class PromptText:
    """The exact text fed to the tokenizer; chat templates already hold their special tokens."""

    text: str
    style: str  # "chat" | "base"
    add_special_tokens: bool


def resolve_style(style: str, tokenizer) -> str:
    """`auto` -> "chat" when the tokenizer has a chat template, else "base"."""
    if style not in STYLES:
        raise CodequantError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    if style == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "base"
    if style == "chat" and not getattr(tokenizer, "chat_template", None):
        raise CodequantError("this tokenizer has no chat template; use --prompt-style base")
    return style


def chat_instruction(problem: Problem) -> str:
    """What a chat model is asked: complete the function, or a benchmark's own instruction when the task is not
    code completion (`extra["chat_instruction"]`, e.g. code summarization)."""
    if problem.extra.get("chat_instruction"):
        return problem.extra["chat_instruction"]
    lang = _LANG_NAMES.get(problem.language, problem.language.capitalize())
    fence = problem.language
    return (
        f"Complete the following {lang} function. Return the whole function in one ```{fence} code block.\n\n"
        f"```{fence}\n{problem.prompt.rstrip()}\n```"
    )


def build_prompt(problem: Problem, tokenizer, style: str) -> PromptText:
    """The prompt for one problem in a resolved style ("chat" or "base")."""
    style = resolve_style(style, tokenizer)
    if style == "base":
        return PromptText(problem.prompt, "base", True)
    messages = [{"role": "user", "content": chat_instruction(problem)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return PromptText(text, "chat", False)
