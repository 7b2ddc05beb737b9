"""Where study steps run: this machine (`local`), a Ray cluster (`ray`) or Slurm through submitit (`slurm`).

An executor only places work. It takes a `StepCall` with the resources the step asks for and gives back a
`Submission`: a `concurrent.futures.Future` of `worker.execute_step`'s return value, and the id the cluster
knows the job by. The driver (codequant.study.runner) decides what may run, records everything in study.db and
renames finished artifacts into place; so every executor shares its crash safety, and SQLite stays the single
source of truth however many workers there are.

Artifacts live under the study folder, which every worker must reach at the same path (a shared filesystem on a
cluster). Resources per step kind: each kind's entry in `codequant.study.kinds.STEP_KINDS`, overridden by
`runner.resources` in the YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# Each executor module loads inside `make_executor`: they import Submission from here (a cycle otherwise),
# and ray/submitit are optional.
from codequant.errors import CodequantError
from codequant.study.kinds import STEP_KINDS, StepKinds
from codequant.study.resources import Resources
from codequant.study.worker import StepCall


def resources_for(
    kind: str, overrides: dict[str, Any] | None = None, kinds: StepKinds = STEP_KINDS
) -> Resources:
    """The kind's default resources (its registry entry) with the YAML's `runner.resources[kind]` fields that are
    set."""
    return kinds[kind].resources.overridden(overrides)


@dataclass
class Submission:
    future: Future  # of worker.execute_step's dict; raises what the step raised (or the cluster's error)
    job_id: str  # the executor's name for it: "local", a Ray task id, a Slurm job id


class Executor(Protocol):
    name: str
    slots: int | None  # steps in flight at most (None: as many as are ready; the cluster queues them)

    def submit(self, call: StepCall, resources: Resources) -> Submission: ...

    def attach(self, job_id: str) -> Future | None:
        """A future for a job an earlier driver submitted that is still queued or running (None: resubmit)."""
        ...

    def close(self) -> None: ...


def make_executor(
    runner: Any, study: Path, log: Callable[[str], None] = print, isolate: bool | None = None
) -> Executor:
    """The executor `runner.executor` names (a StudyConfig's `runner`)."""
    isolate = runner.isolate if isolate is None else isolate
    if runner.executor == "local":
        from codequant.study.executors.local import LocalExecutor

        return LocalExecutor(parallel=runner.parallel, isolate=isolate)
    if runner.executor == "ray":
        from codequant.study.executors.ray import RayExecutor

        return RayExecutor(address=runner.ray.address, log=log)
    if runner.executor == "slurm":
        from codequant.study.executors.slurm import SlurmExecutor

        return SlurmExecutor(runner.slurm, study, log=log)
    raise CodequantError(f"unknown executor {runner.executor!r}; choose local, ray or slurm")


__all__ = ["Executor", "Resources", "StepCall", "Submission", "make_executor", "resources_for"]
