"""Progress of a quantization as events, so the caller decides how to show them (a bar from codequant.progress on the
command line and in a study runner, nothing in tests).

An event is sent when a block starts a stage ("targets", "xtx", a linear's name, "tuning", "propagating") and when
it is done ("done", with its errors in `metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codequant.progress import bar as progress_bar


@dataclass(frozen=True)
class QuantProgress:
    block: int  # 0-based index of the block being worked on
    blocks: int  # blocks in this run
    stage: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line, e.g. 'block 3/30 done: held-out mse 0.0123'."""
        text = f"block {self.block + 1}/{self.blocks} {self.stage}"
        shown = {k: v for k, v in self.metrics.items() if isinstance(v, float)}
        if shown:
            text += ": " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
        return text


ProgressFn = Callable[[QuantProgress], None]


def bar_progress(desc: str, total: int) -> tuple[ProgressFn, Callable[[], None]]:
    """A bar (codequant.progress: rich in a terminal, log lines otherwise) fed by events, and its closer."""
    bar = progress_bar(total, desc, unit="block")

    def update(event: QuantProgress) -> None:
        if event.stage == "done":
            err = event.metrics.get("heldout_mse", event.metrics.get("rel_output_mse"))
            bar.set_info("" if err is None else f"mse {err:.4g}")
            bar.update(1)
        else:
            bar.set_info(event.stage)

    return update, bar.close
