"""What runs on a worker: one step in its `.partial` folder, on whatever machine an executor placed it.

`execute_step` is the only function an executor ships (by reference: the worker imports codequant). It writes
`worker.json` into the folder first, so `codequant study status` can say where a running step runs, and returns
the step's result with the facts the driver records: host, pid, when it really started and ended (a queued job
waits before it starts) and the process's peak RSS. The worker never touches study.db: the driver ingests.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The step kinds (and with them torch) load inside `execute_step`: executors import this module to ship it.
from codequant.study.plan import Step

WORKER_FILE = "worker.json"


@dataclass(frozen=True)
class StepCall:
    """Everything a worker needs to run one step (picklable: paths and plain data)."""

    step: Step
    workdir: Path
    inputs: dict[str, Path]
    settings: dict[str, Any]
    metas: dict[str, dict[str, Any]]
    module: str  # the step kind's module (its registry entry), whose `run` does the work
    threads: int | None = None  # torch CPU threads; None keeps torch's default (all cores)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def scheduler_ids() -> dict[str, str]:
    """The ids a cluster gave this process, where it runs under one (Slurm job, Ray task)."""
    ids = {k: os.environ[k] for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID") if os.environ.get(k)}
    ray = sys.modules.get("ray")  # only a Ray worker has it imported; nobody else pays for the import
    with contextlib.suppress(Exception):
        if ray is not None and ray.is_initialized():
            ctx = ray.get_runtime_context()
            ids["ray_task_id"] = ctx.get_task_id() or ""
            ids["ray_node_id"] = ctx.get_node_id()
    return ids


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def execute_step(call: StepCall) -> dict[str, Any]:
    """Run one step here; returns {"result", "peak_rss_mb", "host", "pid", "started", "finished", "ids"}."""
    started = time.time()
    where = {"host": socket.gethostname(), "pid": os.getpid(), "started": started, "ids": scheduler_ids()}
    call.workdir.mkdir(parents=True, exist_ok=True)
    (call.workdir / WORKER_FILE).write_text(json.dumps(where) + "\n", encoding="utf-8")
    with _threads(call.threads):
        kind = importlib.import_module(call.module)
        result = kind.run(call.step, call.workdir, call.inputs, call.settings, call.metas)
    return {**where, "result": result, "peak_rss_mb": _peak_rss_mb(), "finished": time.time()}


def read_worker(workdir: Path) -> dict[str, Any] | None:
    """What a step's worker wrote when it started (None before it started)."""
    try:
        return json.loads((workdir / WORKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
