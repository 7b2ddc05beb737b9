"""Progress of a quantization as events, so the caller decides how to show them (a tqdm bar on the command line,
rich bars or log lines in a study runner, nothing in tests).

An event is sent when a block starts a stage ("targets", "xtx", a linear's name, "tuning", "propagating") and when
it is done ("done", with its errors in `metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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


def tqdm_progress(desc: str, total: int) -> tuple[ProgressFn, Callable[[], None]]:
    """A tqdm bar fed by events, and the function that closes it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="block")

    def update(event: QuantProgress) -> None:
        if event.stage == "done":
            err = event.metrics.get("heldout_mse", event.metrics.get("rel_output_mse"))
            bar.set_postfix_str("" if err is None else f"mse {err:.4g}")
            bar.update(1)
        else:
            bar.set_postfix_str(event.stage)

    return update, bar.close
