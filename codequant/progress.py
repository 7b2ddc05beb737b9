"""Progress bars that suit where the output goes: rich bars in a terminal, sparse log lines elsewhere (CI logs).

Every long loop of codequant (blocks of a quantization, completions of an evaluation, programs in the sandbox,
batches of a perplexity or a fine-tuning epoch) reports through `bar(...)`, so a study step shows its own progress
in the runner's terminal, and a log file gets a line every tenth of the way instead of a carriage-return mess.

Why one shared rich display: rich allows one live display per process, and bars nest (an evaluation generates,
then executes). All open bars are tasks of one `rich.progress.Progress`, started with the first bar and stopped
with the last.

`CODEQUANT_PROGRESS` chooses: `rich`, `lines`, `off`, or `auto` (default: rich when stderr is a terminal, lines
otherwise).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
MODES = ("auto", "rich", "lines", "off")
LINE_STEP = 0.1  # lines mode: a line each time another tenth of the total is done...
LINE_MIN_S = 5.0  # ...but not more often than this (unless it is the last)


def mode() -> str:
    """The display mode from CODEQUANT_PROGRESS (an unknown value is refused: a typo should not silence bars)."""
    chosen = os.environ.get("CODEQUANT_PROGRESS", "auto").strip().lower() or "auto"
    if chosen not in MODES:
        raise ValueError(f"CODEQUANT_PROGRESS={chosen!r}; use one of {', '.join(MODES)}")
    if chosen == "auto":
        return "rich" if sys.stderr.isatty() else "lines"
    return chosen


class _Shared:
    """The one rich Progress of this process, alive while some bar is open."""

    progress: Any = None
    open_bars = 0

    @classmethod
    def acquire(cls) -> Any:
        if cls.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            cls.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            cls.progress.start()
        cls.open_bars += 1
        return cls.progress

    @classmethod
    def release(cls) -> None:
        cls.open_bars -= 1
        if cls.open_bars <= 0 and cls.progress is not None:
            cls.progress.stop()
            cls.progress, cls.open_bars = None, 0


class Bar:
    """A progress bar: `update(n)`, `set_info(text)`, `close()`; also a context manager. Disabled: does nothing."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        enabled: bool = True,
        leave: bool = True,
        stream: Any = None,
    ):
        self.total, self.desc, self.unit, self.leave = total, desc, unit, leave
        self.n, self.info, self.closed = 0, "", False
        self.started = time.monotonic()
        self.mode = mode() if enabled else "off"
        self.stream = stream
        self._task = None
        self._last_line_at, self._last_line_n = self.started, 0
        if self.mode == "rich":
            self._progress = _Shared.acquire()
            self._task = self._progress.add_task(desc, total=total, info="")

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.mode == "rich":
            self._progress.update(self._task, advance=n, info=self.info)
        elif self.mode == "lines":
            self._maybe_line()

    def set_info(self, text: str) -> None:
        """Shown after the count (the current error, the stage); in lines mode it rides on the next line."""
        self.info = text
        if self.mode == "rich":
            self._progress.update(self._task, info=text)

    # tqdm's spelling, so a bar can stand in where code was written against tqdm
    set_postfix_str = set_info

    def _line(self, final: bool = False) -> None:
        out = self.stream or sys.stderr
        total = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        elapsed = time.monotonic() - self.started
        info = f" {self.info}" if self.info else ""
        state = "done " if final else ""
        print(
            f"{self.desc}: {state}{self.n}{total} {self.unit}{pct} in {elapsed:.0f}s{info}",
            file=out,
            flush=True,
        )
        self._last_line_at, self._last_line_n = time.monotonic(), self.n

    def _maybe_line(self) -> None:
        if not self.total:
            due = time.monotonic() - self._last_line_at >= 10 * LINE_MIN_S
        else:
            step = max(1, int(self.total * LINE_STEP))
            due = self.n - self._last_line_n >= step and time.monotonic() - self._last_line_at >= LINE_MIN_S
        if due and self.n != (self.total or -1):
            self._line()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.mode == "rich":
            if not self.leave:
                self._progress.remove_task(self._task)
            _Shared.release()
        elif self.mode == "lines" and self.n:
            self._line(final=True)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True, leave: bool = True) -> Bar:
    """A bar for a loop of `total` steps (None: unknown)."""
    return Bar(total, desc, unit=unit, enabled=enabled, leave=leave)


def track(
    items: Iterable[T],
    desc: str,
    *,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
) -> Iterator[T]:
    """Iterate `items` with a bar (total from len() when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Bar(total, desc, unit=unit, enabled=enabled, leave=leave) as b:
        for item in items:
            yield item
            b.update(1)
