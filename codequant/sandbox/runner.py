"""Run many programs in parallel and dispatch each to its language's sandbox.

Programs are independent processes, so a thread pool (threads only wait on pipes) with one worker per CPU
keeps the machine busy; results come back in the order of the input whatever order they finish in.

One program must never stop a batch: an unexpected error of the sandbox itself while running a program (a bug
of ours that this program's input triggers) becomes that program's result, status `harness_error` with the
error in `stderr`, and the other programs run on. A `CodequantError` still stops the batch: it says the
sandbox cannot run anything here (no JDK, an interpreter the sandbox user cannot run), and storing it as every
completion's result would hide that.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from codequant.errors import CodequantError
from codequant.progress import bar as progress_bar
from codequant.sandbox.limits import Limits
from codequant.sandbox.result import ExecResult, Status

log = logging.getLogger("codequant.sandbox")

# language -> "module:function" with signature fn(source, limits) -> ExecResult, imported on first use
_SANDBOXES: dict[str, str] = {
    "python": "codequant.sandbox.python:run_python",
    "java": "codequant.sandbox.java:run_java",
}


def languages() -> list[str]:
    return sorted(_SANDBOXES)


def _sandbox(language: str):
    target = _SANDBOXES.get(language.lower())
    if target is None:
        raise CodequantError(f"no sandbox for language {language!r}; choose one of {', '.join(languages())}")
    module, func = target.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise CodequantError(f"the {language} sandbox is not available ({exc})") from None


def guarded(run, source: str, limits: Limits | None) -> ExecResult:
    """`run(source, limits)`, with an unexpected error of the sandbox turned into a `harness_error` result."""
    start = time.monotonic()
    try:
        return run(source, limits)
    except CodequantError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of ours on this input is this program's result
        log.warning("sandbox: harness error on one program: %s: %s", type(exc).__name__, exc)
        reason = "".join(traceback.format_exception(exc)[-3:])
        return ExecResult(
            Status.HARNESS_ERROR,
            None,
            round(time.monotonic() - start, 4),
            "",
            f"[codequant: harness error]\n{reason}",
            type(exc).__name__,
        )


def run_program(language: str, source: str, limits: Limits | None = None) -> ExecResult:
    """Run one program of `language` ("python" or "java")."""
    return guarded(_sandbox(language), source, limits)


def run_programs(
    items: Sequence[tuple[str, str]],
    limits: Limits | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[ExecResult]:
    """Run (language, source) pairs in parallel; result i belongs to item i."""
    runners = [_sandbox(lang) for lang, _ in items]  # unknown languages fail before anything runs
    workers = max(1, workers or os.cpu_count() or 1)
    results: list[ExecResult | None] = [None] * len(items)
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        progress_bar(len(items), "exec", unit="program", enabled=progress) as bar,
    ):
        futures = {
            pool.submit(guarded, run, src, limits): i
            for i, (run, (_, src)) in enumerate(zip(runners, items, strict=True))
        }
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update(1)
    return [r for r in results if r is not None]
