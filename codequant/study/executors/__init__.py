"""Where study steps run: this machine (`local`), a Ray cluster (`ray`) or Slurm through submitit (`slurm`).

An executor only places work. It takes a `StepCall` with the resources the step asks for and gives back a
`Submission`: a `concurrent.futures.Future` of `worker.execute_step`'s return value, and the id the cluster
knows the job by. The driver (codequant.study.runner) decides what may run, records everything in study.db and
renames finished artifacts into place; so every executor shares its crash safety, and SQLite stays the single
source of truth however many workers there are.

Artifacts live under the study folder, which every worker must reach at the same path (a shared filesystem on a
cluster). Resources per step kind: `DEFAULT_RESOURCES`, overridden by `runner.resources` in the YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

# Each executor module loads inside `make_executor`: they import Resources from here (a cycle otherwise),
# and ray/submitit are optional.
from codequant.errors import CodequantError
from codequant.study.worker import StepCall


@dataclass(frozen=True)
class Resources:
    """What one step asks of a worker. GPUs are asked for where the cluster has them (Ray caps every request at
    the cluster's totals; on Slurm they go to --gpus-per-node)."""

    cpus: int = 1
    gpus: float = 0
    memory_gb: float = 4
    time_min: int = 60


# Sized for the study's 7B-34B models on one GPU node each (docs/scale.md); the quantizer keeps only the block it
# works on on the GPU, so one GPU per quantization is enough at any size.
DEFAULT_RESOURCES: dict[str, Resources] = {
    "calibrate": Resources(cpus=2, gpus=0, memory_gb=16, time_min=60),
    "quantize": Resources(cpus=8, gpus=1, memory_gb=96, time_min=24 * 60),
    "finetune": Resources(cpus=8, gpus=1, memory_gb=96, time_min=24 * 60),
    "evaluate": Resources(cpus=8, gpus=1, memory_gb=64, time_min=12 * 60),
    "perplexity": Resources(cpus=4, gpus=1, memory_gb=64, time_min=2 * 60),
    "inference": Resources(cpus=4, gpus=1, memory_gb=64, time_min=2 * 60),
    "compare": Resources(cpus=1, gpus=0, memory_gb=4, time_min=30),
}


def resources_for(kind: str, overrides: dict[str, Any] | None = None) -> Resources:
    """The kind's defaults with the YAML's `runner.resources[kind]` fields that are set."""
    base = DEFAULT_RESOURCES[kind]
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return replace(base, **given)


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


def make_executor(runner: Any, study: Path, log: Callable[[str], None] = print, isolate: bool | None = None
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


__all__ = ["DEFAULT_RESOURCES", "Executor", "Resources", "StepCall", "Submission", "make_executor", "resources_for"]
