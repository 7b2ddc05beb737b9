"""`executor: ray`: steps as Ray tasks on an existing cluster (`ray start --head`, then `address: auto`).

Each step is one task with the resources its kind asks for (capped at the cluster's totals, so a CPU-only
cluster runs GPU-sized steps on CPUs) and `max_calls=1`: a fresh worker process per step, so its peak RSS is its
own and a GPU's memory is freed when the step ends. Ray does not retry on its own (`max_retries=0`): the driver
retries, and the retried step resumes from its `.partial` folder (a quantization from its last finished block).
Tasks belong to the driver: when the driver dies, Ray stops them, and the rerun resubmits.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

from codequant.errors import CodequantError
from codequant.study.executors import Resources, Submission
from codequant.study.worker import StepCall, execute_step


def connect(address: str):
    try:
        import ray
    except ImportError:
        raise CodequantError(
            "executor: ray needs Ray: pip install 'codequant[scale]' (or pip install ray)"
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING")
        except ConnectionError as exc:
            raise CodequantError(
                f"no Ray cluster at {address!r} ({exc}); start one with `ray start --head` or set "
                "runner.ray.address"
            ) from None
    return ray


class RayExecutor:
    name = "ray"
    slots = None  # Ray queues tasks until their resources are free

    def __init__(self, address: str = "auto", log: Callable[[str], None] = print):
        ray = connect(address)
        self._ray = ray
        self.totals = ray.cluster_resources()
        self._task = ray.remote(max_calls=1, max_retries=0)(execute_step)
        log(f"ray: {self.totals.get('CPU', 0):g} CPUs, {self.totals.get('GPU', 0):g} GPUs at {address}")

    def options(self, resources: Resources) -> dict:
        """Ray's task options for a step: each request capped at what the cluster has in all."""
        opts = {
            "num_cpus": min(resources.cpus, self.totals.get("CPU", 1)),
            "num_gpus": min(resources.gpus, self.totals.get("GPU", 0)),
        }
        if self.totals.get("memory"):
            opts["memory"] = int(min(resources.memory_gb * 2**30, self.totals["memory"]))
        return opts

    def submit(self, call: StepCall, resources: Resources) -> Submission:
        opts = self.options(resources)
        call = replace(call, threads=max(1, int(opts["num_cpus"])))
        ref = self._task.options(**opts, name=call.step.name).remote(call)
        return Submission(ref.future(), ref.task_id().hex())

    def attach(self, job_id: str) -> Future | None:
        return None  # a dead driver's tasks were stopped with it

    def close(self) -> None:
        pass  # the cluster is the user's; this driver's connection ends with its process
