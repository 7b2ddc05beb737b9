"""`executor: local`: steps on this machine, `parallel` at once (default 1: one after another, as before).

With `isolate` (the default) each step runs in a fresh spawned process: its peak RSS is its own, its memory goes
back to the system when it ends, and it dies with the driver (PR_SET_PDEATHSIG), so a killed driver leaves no
orphan writing into a `.partial` folder. Steps running side by side share the CPU cores between them.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from multiprocessing import get_context

from codequant.errors import CodequantError
from codequant.study.executors import Resources, Submission
from codequant.study.worker import StepCall, execute_step


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_isolated(call: StepCall) -> dict:
    with ProcessPoolExecutor(
        max_workers=1, mp_context=get_context("spawn"), initializer=_die_with_parent
    ) as ex:
        return ex.submit(execute_step, call).result()


class LocalExecutor:
    name = "local"

    def __init__(self, parallel: int = 1, isolate: bool = True):
        if parallel > 1 and not isolate:
            raise CodequantError(
                "runner.parallel > 1 needs runner.isolate: steps in one process would share torch's state"
            )
        self.slots = parallel
        self.isolate = isolate
        self.threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
        self._pool = ThreadPoolExecutor(max_workers=parallel) if isolate else None

    def submit(self, call: StepCall, resources: Resources) -> Submission:
        call = replace(call, threads=self.threads)
        if self._pool is not None:
            return Submission(self._pool.submit(_run_isolated, call), "local")
        future: Future = Future()
        try:
            future.set_result(execute_step(call))
        except Exception as exc:  # the step's failure, handed to the driver like any executor's
            future.set_exception(exc)
        return Submission(future, "local")

    def attach(self, job_id: str) -> Future | None:
        return None  # a local step died with its driver: the rerun resumes it in its .partial folder

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
