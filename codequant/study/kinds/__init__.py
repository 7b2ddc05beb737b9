"""The kinds of study step: one registry, the only place a kind's name is spelled.

Every other list of kinds derives from `STEP_KINDS`: the order of the plan (`codequant.study.plan`), the
`runner.resources` keys a study YAML may set (`codequant.study.config`), each kind's default resources
(`codequant.study.executors.resources_for`), and which module a worker runs a step with (`codequant.study.worker`).

A kind is one module of this package (named in its entry, imported only when a step of it is planned, run or
ingested, so that reading a YAML imports none of them) with three functions and an optional fourth:

- `plan(planning)` adds the kind's steps for one model (`codequant.study.plan.Planning`: the study's settings,
  the steps earlier kinds made, and `add`);
- `run(step, workdir, inputs, settings, metas)` does the work inside the step's `.partial` folder and returns a
  JSON-safe result (stored as `result.json`); `inputs` are the finished artifacts of its dependencies, `metas`
  their plan metadata;
- `ingest(store, step, result, artifact, conn)` upserts that result's rows inside the runner's transaction;
- optionally `stale(store, step)`: True when a finished step's rows predate a column its ingest now fills (the
  runner then re-ingests the artifact, e.g. evaluations from before the failure taxonomy).

Adding a kind is one module plus one `StepKind` entry; `StepKinds.with_kind` makes a registry with one more kind
without touching this one (how tests add a kind; `build_plan` and `run_study` take the registry).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType

from codequant.errors import CodequantError
from codequant.study.resources import Resources


@dataclass(frozen=True)
class StepKind:
    """One kind of study step: its name (in keys, artifact folders and study.db), the module that plans, runs and
    ingests it, and what a step of it asks of a worker unless the YAML's `runner.resources` says otherwise."""

    name: str
    module: str
    resources: Resources

    def load(self) -> ModuleType:
        """The kind's module (imported on first use)."""
        return importlib.import_module(self.module)


class StepKinds:
    """An ordered registry of step kinds. The order is the plan's: every kind comes after the kinds whose steps it
    reads, and the plan lists steps kind by kind in this order."""

    def __init__(self, kinds: Iterable[StepKind]):
        kinds = list(kinds)
        self._kinds = {k.name: k for k in kinds}
        if len(self._kinds) != len(kinds):
            raise CodequantError(f"step kinds must have unique names; got {[k.name for k in kinds]}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __iter__(self) -> Iterator[StepKind]:
        return iter(self._kinds.values())

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __getitem__(self, name: str) -> StepKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise CodequantError(
                f"unknown step kind {name!r}; the kinds are {', '.join(self.names)}"
            ) from None

    def order(self, name: str) -> int:
        """The kind's position in the plan."""
        return self.names.index(name)

    def with_kind(self, kind: StepKind, after: str | None = None) -> StepKinds:
        """A new registry with `kind` placed after the kind `after` (default: last)."""
        kinds = list(self)
        at = len(kinds) if after is None else self.order(after) + 1
        return StepKinds([*kinds[:at], kind, *kinds[at:]])


def _builtin(name: str, resources: Resources) -> StepKind:
    return StepKind(name, f"{__name__}.{name}", resources)


# Resources sized for the study's 7B-34B models on one GPU node each (docs/scale.md); the quantizer keeps only
# the block it works on on the GPU, so one GPU per quantization is enough at any size.
STEP_KINDS = StepKinds(
    [
        _builtin("calibrate", Resources(cpus=2, gpus=0, memory_gb=16, time_min=60)),
        _builtin("quantize", Resources(cpus=8, gpus=1, memory_gb=96, time_min=24 * 60)),
        _builtin("finetune", Resources(cpus=8, gpus=1, memory_gb=96, time_min=24 * 60)),
        _builtin("evaluate", Resources(cpus=8, gpus=1, memory_gb=64, time_min=12 * 60)),
        _builtin("perplexity", Resources(cpus=4, gpus=1, memory_gb=64, time_min=2 * 60)),
        _builtin("inference", Resources(cpus=4, gpus=1, memory_gb=64, time_min=2 * 60)),
        _builtin("compare", Resources(cpus=1, gpus=0, memory_gb=4, time_min=30)),
    ]
)

__all__ = ["STEP_KINDS", "StepKind", "StepKinds"]
