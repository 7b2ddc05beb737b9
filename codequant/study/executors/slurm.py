"""`executor: slurm`: each step one Slurm job, submitted through submitit (`cluster: local` runs the same jobs
as local processes with submitit's LocalExecutor: the same pickling and job life-cycle, for tests).

The job's id is recorded in study.db when it is submitted, so a driver that was killed and rerun re-attaches to
its jobs that are still queued or running instead of submitting them twice (two jobs would write into one
`.partial` folder). A job that was cancelled, preempted or timed out comes back to the driver as a failure; the
driver resubmits it and the new job resumes in the step's `.partial` folder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from codequant.errors import CodequantError
from codequant.sandbox.cgroup import pid_alive
from codequant.study.executors import Resources, Submission
from codequant.study.worker import StepCall, execute_step

ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


class SlurmExecutor:
    name = "slurm"

    def __init__(self, settings, study: Path, log: Callable[[str], None] = print):
        try:
            import submitit
        except ImportError:
            raise CodequantError("executor: slurm needs submitit: pip install 'codequant[scale]'") from None
        self._submitit = submitit
        self.settings = settings
        self.folder = (
            Path(settings.folder).resolve() if settings.folder else Path(study).resolve() / "submitit"
        )
        self.cluster = settings.cluster
        self._executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=settings.cluster)
        self.slots = settings.max_jobs
        self._waiters = ThreadPoolExecutor(max_workers=settings.max_jobs)
        log(f"slurm ({settings.cluster}): jobs in {self.folder}")

    def parameters(self, call: StepCall, resources: Resources) -> dict:
        """submitit's job parameters for a step (generic ones, plus slurm_* ones that only Slurm reads)."""
        params = {
            "timeout_min": resources.time_min,
            "name": f"codequant-{call.step.kind}-{call.step.label}"[:100],
            "cpus_per_task": resources.cpus,
            "mem_gb": resources.memory_gb,
            "gpus_per_node": math.ceil(resources.gpus) if self.cluster == "slurm" else 0,
        }
        if self.cluster == "slurm":
            params.update(
                slurm_partition=self.settings.partition,
                slurm_setup=list(self.settings.setup),
                slurm_additional_parameters=dict(self.settings.additional),
            )
        return {k: v for k, v in params.items() if v is not None}

    def submit(self, call: StepCall, resources: Resources) -> Submission:
        from dataclasses import replace

        self._executor.update_parameters(**self.parameters(call, resources))
        job = self._executor.submit(execute_step, replace(call, threads=resources.cpus))
        return Submission(self._waiters.submit(job.result), str(job.job_id))

    def attach(self, job_id: str) -> Future | None:
        """A future for an earlier driver's job that is still alive (or has finished with a result)."""
        folder = self.folder / "%j"
        if self.cluster == "slurm":
            job = self._submitit.SlurmJob(folder=folder, job_id=job_id)
            if job.state not in ALIVE and not job.paths.result_pickle.exists():
                return None
            return self._waiters.submit(job.result)
        job = self._submitit.local.local.LocalJob(folder=folder, job_id=job_id)
        if job.paths.result_pickle.exists():
            return self._waiters.submit(job.result)
        if not (job_id.isdigit() and pid_alive(int(job_id))):
            return None
        return self._waiters.submit(self._wait_local, job, int(job_id))

    @staticmethod
    def _wait_local(job, pid: int):
        """A local job of an earlier driver has no process handle here: wait for its pid, then read its result."""
        while pid_alive(pid) and not job.paths.result_pickle.exists():
            time.sleep(0.5)
        return job.result()

    def close(self) -> None:
        self._waiters.shutdown(wait=False, cancel_futures=True)
