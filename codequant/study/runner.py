"""Run a study: execute its steps as their dependencies allow, skip finished ones, survive a kill at any moment.

Crash safety, step by step:
1. a step works in `artifacts/<kind>/<key>.partial/` (quantization and evaluation resume inside it: nothing
   computed before a kill is recomputed, nothing is appended twice);
2. when it succeeds, `result.json` and a `done` marker are written into that folder, and the folder is renamed to
   `artifacts/<kind>/<key>/` (rename is atomic: a finished artifact is either complete or absent);
3. its rows go into study.db in one transaction, as upserts.
A kill between 2 and 3 leaves a finished artifact whose rows are missing; the next run sees the database does not
say `done` and ingests it again. A study lock (flock) stops two drivers from working on one study at once.

Where steps run is the executor's business (codequant.study.executors: local, ray, slurm); this module is the
driver. It starts every step whose dependencies are done (all calibrations first, then every quantization at
once, each evaluation as soon as its version exists), as many as the executor has slots for, and it alone writes
study.db. A step that fails (its exception, a killed worker, a cancelled job) is resubmitted up to
`runner.max_attempts` times in all and resumes in its `.partial` folder; then it is marked failed, the steps that
need it are skipped, the rest of the grid goes on, and the run ends with a `StudyFailed` error naming them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codequant.errors import CodequantError
from codequant.study.config import StudyConfig
from codequant.study.costs import check_plan, host_budget_gb
from codequant.study.executors import Executor, make_executor, resources_for
from codequant.study.kinds import STEP_KINDS, StepKinds
from codequant.study.kinds.common import RESULT, read_result
from codequant.study.plan import Plan, Step, build_plan
from codequant.study.store import StudyStore, now
from codequant.study.worker import WORKER_FILE, StepCall, read_worker

DONE = "done"
Hook = Callable[[Step, str], None]


class StudyFailed(CodequantError):
    """Some steps failed after all their attempts (the rest of the grid ran)."""


def artifact_dir(study: Path, step: Step) -> Path:
    return study / "artifacts" / step.kind / step.key


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
            raise CodequantError(
                f"another `codequant study run` is working on {self.path.parent}; wait for it "
                "or stop it first"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def driver_alive(study: Path) -> bool:
    """True while a `codequant study run` holds the study's lock."""
    try:
        with StudyLock(study):
            return False
    except CodequantError:
        return True


# ---- ingest: artifact -> database rows (idempotent; each kind's own, codequant.study.kinds) ----
def ingest(store: StudyStore, step: Step, artifact: Path, conn, kinds: StepKinds = STEP_KINDS) -> None:
    """Upsert what a finished artifact says into study.db (inside the caller's transaction)."""
    kinds[step.kind].load().ingest(store, step, read_result(artifact), artifact, conn)


@dataclass
class _InFlight:
    step: Step
    job_id: str


class _Driver:
    """One run over a plan's unfinished steps: submit what is ready, commit what finishes, retry what fails."""

    def __init__(
        self,
        study: Path,
        plan: Plan,
        store: StudyStore,
        executor: Executor,
        config: StudyConfig,
        hook: Hook | None,
        log: Callable[[str], None],
        counts: dict[str, Any],
    ):
        self.study, self.plan, self.store, self.executor = study, plan, store, executor
        self.hook, self.log, self.counts = hook, log, counts
        self.runner = config.runner
        self.settings = {
            "calibration": config.calibration.model_dump(),
            "workers": config.runner.sandbox_workers or config.runner.workers,
            "vllm": config.runner.vllm.model_dump(),
            "device": config.runner.device,
            "dtype": config.runner.dtype,
            "max_host_memory_gb": host_budget_gb(config),
            "activations": config.runner.activations,
        }
        self.metas = {s.key: s.meta for s in plan.steps}
        self.by_key = plan.by_key()
        self.index = {s.key: n for n, s in enumerate(plan.steps, 1)}
        self.running: dict[Future, _InFlight] = {}
        self.failed: dict[str, str] = {}
        self.tries: dict[
            str, int
        ] = {}  # attempts in this run (study.db's `attempts` counts them over all runs)

    def run(self, pending: list[Step], done: set[str]) -> None:
        waiting = self._reattach(pending)
        while waiting or self.running:
            for step in list(waiting):
                if any(d in self.failed for d in step.deps):
                    waiting.remove(step)
                    self.failed[step.key] = "skipped: a step it needs failed"
                    self.store.mark_step(
                        step.key,
                        step.kind,
                        step.label,
                        "skipped",
                        config=step.config,
                        meta=step.meta,
                        error=self.failed[step.key],
                    )
                    self.log(f"    skipped {step.name}: a step it needs failed")
                elif all(d in done for d in step.deps) and self._has_slot():
                    waiting.remove(step)
                    self._submit(step)
            if not self.running:
                continue  # what is left waits on failed steps: the loop above skips it
            finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
            for future in finished:
                flight = self.running.pop(future)
                if self._finish(future, flight):
                    done.add(flight.step.key)

    def _has_slot(self) -> bool:
        return self.executor.slots is None or len(self.running) < self.executor.slots

    def _reattach(self, pending: list[Step]) -> list[Step]:
        """Jobs an earlier, killed driver left queued or running on the cluster are waited for, not resubmitted."""
        recorded = self.store.step_status()
        waiting = []
        for step in pending:
            rec = recorded.get(step.key, {})
            future = None
            if rec.get("status") == "running" and rec.get("job_id") not in (None, "local"):
                future = self.executor.attach(str(rec["job_id"]))
            if future is None:
                waiting.append(step)
            else:
                self.log(
                    f"[{self.index[step.key]}/{len(self.plan.steps)}] {step.name} (re-attached to job "
                    f"{rec['job_id']})"
                )
                self.running[future] = _InFlight(step, str(rec["job_id"]))
        return waiting

    def _submit(self, step: Step) -> None:
        final = artifact_dir(self.study, step)
        partial = final.with_name(final.name + ".partial")
        resumed = partial.is_dir()
        partial.mkdir(parents=True, exist_ok=True)
        (partial / WORKER_FILE).unlink(missing_ok=True)  # `study status`: queued until the worker writes it
        self.log(
            f"[{self.index[step.key]}/{len(self.plan.steps)}] {step.name}"
            + (" (resuming)" if resumed else "")
        )
        self.tries[step.key] = self.tries.get(step.key, 0) + 1
        self.store.mark_step(
            step.key,
            step.kind,
            step.label,
            "running",
            started=now(),
            config=step.config,
            meta=step.meta,
            error=None,
            job_id=None,
            worker=None,
        )
        self._guarded(step, "start")
        kind = self.plan.kinds[step.kind]
        call = StepCall(
            step,
            partial,
            {k: artifact_dir(self.study, self.by_key[k]) for k in step.deps},
            self.settings,
            self.metas,
            kind.module,
        )
        sub = self.executor.submit(
            call, resources_for(step.kind, self._overrides(step.kind), self.plan.kinds)
        )
        self.store.set_step_fields(step.key, job_id=sub.job_id)
        self.running[sub.future] = _InFlight(step, sub.job_id)

    def _overrides(self, kind: str) -> dict[str, Any]:
        given = self.runner.resources.get(kind)
        return given.model_dump() if given is not None else {}

    def _guarded(self, step: Step, phase: str) -> None:
        """The test hook: raising from it stands for the driver being killed at that moment."""
        if self.hook is None:
            return
        try:
            self.hook(step, phase)
        except BaseException as exc:
            self.store.mark_step(
                step.key,
                step.kind,
                step.label,
                "failed",
                finished=now(),
                error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            raise

    def _finish(self, future: Future, flight: _InFlight) -> bool:
        step = flight.step
        try:
            out = future.result()
        except Exception as exc:
            self._failed(step, exc)
            return False
        final = artifact_dir(self.study, step)
        partial = final.with_name(final.name + ".partial")
        seconds = out["finished"] - out["started"]
        result = {**out["result"], "seconds": round(seconds, 3), "peak_rss_mb": round(out["peak_rss_mb"], 1)}
        _write_atomic(partial / RESULT, json.dumps(result, indent=2, default=str) + "\n")
        self._guarded(step, "before_commit")
        _write_atomic(partial / DONE, f"{step.key}\n")
        if final.exists():  # a stale, unfinished folder of the same key (cannot normally happen)
            shutil.rmtree(final)
        partial.rename(final)
        _fsync_dir(final.parent)
        with self.store.transaction() as conn:
            ingest(self.store, step, final, conn, self.plan.kinds)
        self.store.mark_step(
            step.key,
            step.kind,
            step.label,
            "done",
            started=out["started"],
            finished=out["finished"],
            seconds=seconds,
            peak_rss_mb=out["peak_rss_mb"],
            artifact=str(final),
            worker=f"{out['host']}:{out['pid']}",
        )
        self.log(f"    {step.name} done in {seconds:.1f}s, peak RSS {out['peak_rss_mb']:.0f} MiB")
        self.counts["ran"] += 1
        return True

    def _failed(self, step: Step, exc: BaseException) -> None:
        cause = getattr(exc, "cause", None)  # Ray wraps the step's own exception in a RayTaskError
        if isinstance(cause, BaseException):
            exc = cause
        error = f"{type(exc).__name__}: {exc}"[:2000]
        attempts = self.tries.get(step.key, 1)
        if attempts < self.runner.max_attempts:
            self.log(
                f"    {step.name} failed on attempt {attempts} of {self.runner.max_attempts} ({error.splitlines()[0]}); "
                "resubmitting, it resumes in its .partial folder"
            )
            self._submit(step)
            return
        self.store.mark_step(step.key, step.kind, step.label, "failed", finished=now(), error=error)
        self.failed[step.key] = error
        self.counts["failed"] += 1
        self.log(f"    {step.name} failed after {attempts} attempt(s): {error.splitlines()[0]}")


def run_study(
    config: StudyConfig,
    study: str | Path,
    *,
    base: str | Path = ".",
    isolate: bool | None = None,
    hook: Hook | None = None,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
    kinds: StepKinds = STEP_KINDS,
) -> dict[str, Any]:
    """Run every unfinished step of `config` into folder `study`; returns counts of run/skipped steps.

    `executor` defaults to the one `config.runner.executor` names; `kinds` is the registry of step kinds the
    study is planned, run and ingested with. `hook(step, phase)` is called at "start"
    (before the step is submitted) and at "before_commit" (after the work, before the artifact is renamed into
    place); raising from it simulates the driver being killed at that moment.
    """
    study = Path(study).resolve()
    plan = build_plan(config, base, kinds)
    check_plan(config, plan)  # a step that cannot fit what it asks for is refused now, in one line
    counts = {"ran": 0, "skipped": 0, "ingested": 0, "failed": 0, "total": len(plan.steps)}
    with StudyLock(study), StudyStore(study / "study.db") as store:
        _write_atomic(study / "study.json", json.dumps(config.model_dump(), indent=2) + "\n")
        _write_atomic(
            study / "plan.json", json.dumps([asdict(s) for s in plan.steps], indent=2, default=str) + "\n"
        )
        pending, done = _reuse_finished(plan, study, store, counts)
        if pending:
            own = executor is None
            executor = executor or make_executor(config.runner, study, log=log, isolate=isolate)
            driver = _Driver(study, plan, store, executor, config, hook, log, counts)
            try:
                driver.run(pending, done)
            finally:
                if own:
                    executor.close()
            if driver.failed:
                names = [f"{driver.by_key[k].name}: {e.splitlines()[0]}" for k, e in driver.failed.items()]
                raise StudyFailed(
                    f"{len(names)} step(s) did not finish ({counts['ran']} ran): "
                    + "; ".join(names)
                    + ". `codequant study status` shows them; rerun to retry"
                )
    return counts


def _reuse_finished(
    plan: Plan, study: Path, store: StudyStore, counts: dict[str, Any]
) -> tuple[list[Step], set[str]]:
    """Finished artifacts are kept (re-ingested where study.db lacks their rows); the rest is pending."""
    status = store.step_status()
    pending, done = [], set()
    for step in plan.steps:
        final = artifact_dir(study, step)
        if not (final / DONE).is_file():
            pending.append(step)
            continue
        done.add(step.key)
        counts["skipped"] += 1
        stale = getattr(plan.kinds[step.kind].load(), "stale", None)
        if status.get(step.key, {}).get("status") != "done" or (stale and stale(store, step)):
            with store.transaction() as conn:
                ingest(store, step, final, conn, plan.kinds)
            store.mark_step(
                step.key,
                step.kind,
                step.label,
                "done",
                artifact=str(final),
                config=step.config,
                meta=step.meta,
            )
            counts["ingested"] += 1
    return pending, done


def study_status(config: StudyConfig, study: str | Path, *, base: str | Path = ".") -> list[dict[str, Any]]:
    """One row per planned step: its state and, for a submitted step, its job and worker.

    States: done; running (its worker has started) or queued (submitted, not started yet), while a driver holds
    the study; partial (begun, no driver now: the next run resumes it); failed (with its error); skipped (a step
    it needs failed); pending.
    """
    study = Path(study).resolve()
    plan: Plan = build_plan(config, base)
    db = study / "study.db"
    recorded = StudyStore(db).step_status() if db.is_file() else {}
    live = db.is_file() and driver_alive(study)
    rows = []
    for step in plan.steps:
        final = artifact_dir(study, step)
        partial = final.with_name(final.name + ".partial")
        rec = recorded.get(step.key, {})
        worker = read_worker(partial) if partial.is_dir() else None
        if (final / DONE).is_file():
            state = "done"
        elif rec.get("status") in ("failed", "skipped"):
            state = rec["status"]
        elif live and rec.get("status") == "running":
            state = "running" if worker else "queued"
        elif partial.is_dir():
            state = "partial"
        else:
            state = "pending"
        where = rec.get("worker") or (f"{worker['host']}:{worker['pid']}" if worker else None)
        rows.append(
            {
                "kind": step.kind,
                "label": step.label,
                "key": step.key,
                "state": state,
                "seconds": rec.get("seconds"),
                "peak_rss_mb": rec.get("peak_rss_mb"),
                "attempts": rec.get("attempts", 0),
                "job_id": rec.get("job_id"),
                "worker": where,
                "started": rec.get("started"),
                "finished": rec.get("finished"),
                "error": rec.get("error") if state in ("failed", "skipped") else None,
            }
        )
    return rows
