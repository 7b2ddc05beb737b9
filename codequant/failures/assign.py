"""How one failed completion is given exactly one failure class (`codequant.failures.classes` says which classes
there are and the order of precedence): harness first, then degenerate output, the sandbox's own statuses, and
last the language's reading of the error (`python`, `java`).

The types live in `classes` and the language modules import them from there; this dispatcher imports the language
modules, so there is no cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from codequant.failures import degenerate, java, python
from codequant.failures.classes import Classified, Failure


def classify(record: Mapping[str, Any]) -> Classified | None:
    """The class of one executed completion (a samples.jsonl record: status, exception_type, stderr_tail,
    stop_reason, completion, program, language); None when it passed."""
    if record.get("passed") or record.get("status") == "ok":
        return None
    status = str(record.get("status") or "")
    completion = str(record.get("completion") or "")
    language = str(record.get("language") or "python").lower()
    if status == "harness_error":
        return Classified(Failure.HARNESS, str(record.get("exception_type") or "harness_error"))
    if degenerate.no_code(completion, language):
        return Classified(Failure.DEGENERATE, "no_code")
    if degenerate.repetitive(completion):
        return Classified(Failure.DEGENERATE, "repetition")
    if record.get("stop_reason") == "length" and status in ("syntax_error", "compile_error"):
        return Classified(Failure.DEGENERATE, "token_limit")
    if status == "timeout":
        return Classified(Failure.TIMEOUT, "time limit")
    if status == "compile_timeout":
        return Classified(Failure.TIMEOUT, "compile time limit")
    if status == "memory":
        return Classified(Failure.MEMORY, str(record.get("exception_type") or "memory limit"))
    if status == "assertion":
        return Classified(Failure.ASSERTION, "wrong answer")
    lang = java if language == "java" else python
    return lang.classify(status, record)
