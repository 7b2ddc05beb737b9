"""The kinds of study step, each one module that owns how its step runs and what it writes into study.db.

A kind is a `StepKind(run, ingest)`:

- `run(step, workdir, inputs, settings, metas)` does the work inside the step's `.partial` folder and returns a
  JSON-safe result (stored as `result.json`); `inputs` are the finished artifacts of its dependencies, `metas`
  their plan metadata;
- `ingest(store, step, result, artifact, conn)` upserts that result's rows inside the runner's transaction;
- optionally `stale(store, step)`: True when a finished step's rows predate a column its ingest now fills (the
  runner then re-ingests the artifact, e.g. evaluations from before the failure taxonomy).

Adding a kind is one module here plus its line in `KINDS` (and planning it in `codequant.study.plan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codequant.study.kinds import calibrate, compare, evaluate, finetune, inference, perplexity, quantize
from codequant.study.kinds.common import RESULT, read_result


@dataclass(frozen=True)
class StepKind:
    run: Callable[..., dict[str, Any]]
    ingest: Callable[..., None]
    stale: Callable[..., bool] | None = None  # (store, step) -> the done step's rows need re-ingesting


KINDS: dict[str, StepKind] = {m.__name__.rsplit(".", 1)[1]: StepKind(m.run, m.ingest, getattr(m, "stale", None))
                              for m in (calibrate, quantize, finetune, evaluate, perplexity, inference, compare)}

__all__ = ["KINDS", "RESULT", "StepKind", "read_result"]
