"""Run a study: execute its steps in dependency order, skip finished ones, survive a kill at any moment.

Crash safety, step by step:
1. a step works in `artifacts/<kind>/<key>.partial/` (quantization and evaluation resume inside it: nothing
   computed before a kill is recomputed, nothing is appended twice);
2. when it succeeds, `result.json` and a `done` marker are written into that folder, and the folder is renamed to
   `artifacts/<kind>/<key>/` (rename is atomic: a finished artifact is either complete or absent);
3. its rows go into study.db in one transaction, as upserts.
A kill between 2 and 3 leaves a finished artifact whose rows are missing; the next run sees the database does not
say `done` and ingests it again. A study lock (flock) stops two runners from working on one study at once.

With `runner.isolate` (the default), each step runs in a fresh spawned process: its peak RSS (getrusage) is then
its own, memory is returned to the system between steps, and the child dies with its parent (PR_SET_PDEATHSIG),
so a killed runner leaves no orphan writing into a `.partial` folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.study.config import StudyConfig
from codequant.study.kinds import KINDS, RESULT, read_result
from codequant.study.plan import Plan, Step, build_plan
from codequant.study.store import StudyStore, now

DONE = "done"
Hook = Callable[[Step, str], None]


def artifact_dir(study: Path, step: Step) -> Path:
    return study / "artifacts" / step.kind / step.key


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def execute_step(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any],
                 metas: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], float]:
    """Run one step in this process; returns its result and this process's peak RSS in MiB."""
    return KINDS[step.kind].run(step, workdir, inputs, settings, metas), _peak_rss_mb()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StudyLock:
    """An exclusive flock on `study.lock`; released by the kernel if the holder dies (even by kill -9)."""

    def __init__(self, study: Path):
        self.path = study / "study.lock"
        self.fh = None

    def __enter__(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise CodequantError(f"another `codequant study run` is working on {self.path.parent}; wait for it "
                                 "or stop it first") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


# ---- ingest: artifact -> database rows (idempotent; each kind's own, codequant.study.kinds) ----
def ingest(store: StudyStore, step: Step, artifact: Path, conn) -> None:
    """Upsert what a finished artifact says into study.db (inside the caller's transaction)."""
    KINDS[step.kind].ingest(store, step, read_result(artifact), artifact, conn)


# ---- the loop ----
def _run_one(step: Step, workdir: Path, inputs: dict[str, Path], settings: dict[str, Any],
             metas: dict[str, dict[str, Any]], isolate: bool) -> tuple[dict[str, Any], float]:
    if not isolate:
        return execute_step(step, workdir, inputs, settings, metas)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_die_with_parent) as ex:
        return ex.submit(execute_step, step, workdir, inputs, settings, metas).result()


def run_study(config: StudyConfig, study: str | Path, *, base: str | Path = ".", isolate: bool | None = None,
              hook: Hook | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every unfinished step of `config` into folder `study`; returns counts of run/skipped steps.

    `hook(step, phase)` is called at "start" and at "before_commit" (after the work, before the artifact is
    renamed into place); raising from it simulates a crash at that moment.
    """
    study = Path(study).resolve()
    plan = build_plan(config, base)
    isolate = config.runner.isolate if isolate is None else isolate
    settings = {"calibration": config.calibration.model_dump(), "workers": config.runner.workers}
    metas = {s.key: s.meta for s in plan.steps}
    counts = {"ran": 0, "skipped": 0, "ingested": 0, "total": len(plan.steps)}
    with StudyLock(study), StudyStore(study / "study.db") as store:
        _write_atomic(study / "study.json", json.dumps(config.model_dump(), indent=2) + "\n")
        _write_atomic(study / "plan.json", json.dumps([asdict(s) for s in plan.steps], indent=2, default=str) + "\n")
        status = store.step_status()
        for n, step in enumerate(plan.steps, 1):
            final = artifact_dir(study, step)
            if (final / DONE).is_file():
                counts["skipped"] += 1
                kind = KINDS[step.kind]
                if status.get(step.key, {}).get("status") != "done" or (kind.stale and kind.stale(store, step)):
                    with store.transaction() as conn:
                        ingest(store, step, final, conn)
                    store.mark_step(step.key, step.kind, step.label, "done", artifact=str(final),
                                    config=step.config, meta=step.meta)
                    counts["ingested"] += 1
                continue
            inputs = {k: artifact_dir(study, plan.by_key()[k]) for k in step.deps}
            partial = final.with_name(final.name + ".partial")
            resumed = partial.is_dir()
            partial.mkdir(parents=True, exist_ok=True)
            log(f"[{n}/{len(plan.steps)}] {step.name}" + (" (resuming)" if resumed else ""))
            store.mark_step(step.key, step.kind, step.label, "running", started=now(), config=step.config,
                            meta=step.meta, error=None)
            t0 = time.perf_counter()
            try:
                if hook:
                    hook(step, "start")
                result, peak = _run_one(step, partial, inputs, settings, metas, isolate)
                seconds = time.perf_counter() - t0
                result = {**result, "seconds": round(seconds, 3), "peak_rss_mb": round(peak, 1)}
                _write_atomic(partial / RESULT, json.dumps(result, indent=2, default=str) + "\n")
                if hook:
                    hook(step, "before_commit")
                _write_atomic(partial / DONE, f"{step.key}\n")
                if final.exists():  # a stale, unfinished folder of the same key (cannot normally happen)
                    shutil.rmtree(final)
                partial.rename(final)
                _fsync_dir(final.parent)
                with store.transaction() as conn:
                    ingest(store, step, final, conn)
            except BaseException as exc:
                store.mark_step(step.key, step.kind, step.label, "failed", finished=now(),
                                seconds=time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"[:2000])
                raise
            store.mark_step(step.key, step.kind, step.label, "done", finished=now(), seconds=seconds,
                            peak_rss_mb=peak, artifact=str(final))
            log(f"    done in {seconds:.1f}s, peak RSS {peak:.0f} MiB")
            counts["ran"] += 1
    return counts


def study_status(config: StudyConfig, study: str | Path, *, base: str | Path = ".") -> list[dict[str, Any]]:
    """One row per planned step: kind, label, key, state (done / partial / running? / failed / pending), timing."""
    study = Path(study).resolve()
    plan: Plan = build_plan(config, base)
    db = study / "study.db"
    recorded = StudyStore(db).step_status() if db.is_file() else {}
    rows = []
    for step in plan.steps:
        final = artifact_dir(study, step)
        rec = recorded.get(step.key, {})
        if (final / DONE).is_file():
            state = "done"
        elif rec.get("status") == "failed":
            state = "failed"
        elif final.with_name(final.name + ".partial").is_dir():
            state = "partial"
        else:
            state = "pending"
        rows.append({"kind": step.kind, "label": step.label, "key": step.key, "state": state,
                     "seconds": rec.get("seconds"), "peak_rss_mb": rec.get("peak_rss_mb"),
                     "attempts": rec.get("attempts", 0), "error": rec.get("error") if state == "failed" else None})
    return rows
