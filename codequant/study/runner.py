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
from codequant.study.plan import FP, Plan, Step, build_plan
from codequant.study.steps import RESULT, RUNNERS, read_result
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
    fn = RUNNERS[step.kind]
    if step.kind == "compare":
        result = fn(step, workdir, inputs, settings, metas)
    else:
        result = fn(step, workdir, inputs, settings)
    return result, _peak_rss_mb()


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


# ---- ingest: artifact -> database rows (idempotent) ----
def _variant_key(step: Step) -> str:
    v = step.meta["variant"]
    return f"fp:{v['spec']}" if v["method"] == FP else step.deps[0]


def _variant_row(key: str, v: dict[str, Any], model_path: str | None) -> dict[str, Any]:
    return {"key": key, "model": v["model"], "label": v["label"], "method": v["method"], "bits": v["bits"],
            "calibration": v["calibration"], "finetuned": int(v["finetuned"]), "model_path": model_path}


def ingest(store: StudyStore, step: Step, artifact: Path, conn) -> None:
    """Upsert what a finished artifact says into study.db (inside the caller's transaction)."""
    res = read_result(artifact)
    if step.kind in ("quantize", "finetune"):
        v = step.meta["variant"]
        acc = res.get("accounting") or {}
        store.upsert("variants", _variant_row(step.key, v, str(artifact / res["model_path"])), conn)
        store.upsert("footprints", {
            "variant_key": step.key, "model": v["model"], "variant": v["label"], "method": v["method"],
            "bits": v["bits"], "formula_bits": acc.get("formula_bits_per_param"),
            "stored_bits": acc.get("stored_bits_per_param"), "file_bytes": res.get("file_bytes"),
            "param_bytes": acc.get("quantized_linears_bytes"), "quantized_params": acc.get("quantized_params")}, conn)
        if step.kind == "quantize" and res.get("errors"):
            store.upsert("quant_errors", {
                "variant_key": step.key, "model": v["model"], "variant": v["label"], "method": v["method"],
                "bits": v["bits"], "calibration": v["calibration"], **res["errors"],
                "quantize_s": (res.get("timings") or {}).get("quantize_s")}, conn)
    elif step.kind == "evaluate":
        from codequant.stats import read_run

        v, vkey = step.meta["variant"], _variant_key(step)
        if v["method"] == FP:
            store.upsert("variants", _variant_row(vkey, v, v["spec"]), conn)
            fp = res.get("footprint")
            if fp:
                store.upsert("footprints", {
                    "variant_key": vkey, "model": v["model"], "variant": v["label"], "method": FP, "bits": None,
                    "formula_bits": fp["linear_bits_per_weight"], "stored_bits": fp["linear_bits_per_weight"],
                    "file_bytes": fp["bytes"], "param_bytes": fp["kinds"]["linear"]["bytes"],
                    "quantized_params": 0}, conn)
        run = read_run(artifact)
        outcomes = [{"run_key": step.key, "task_id": t, "sample_index": i, "passed": int(p), "status": None}
                    for t, s in run.outcomes.items() for i, p in s.items()]
        n = len(outcomes)
        store.upsert("runs", {
            "key": step.key, "variant_key": vkey, "model": v["model"], "variant": v["label"], "method": v["method"],
            "bits": v["bits"], "calibration": v["calibration"], "finetuned": int(v["finetuned"]),
            "benchmark": step.meta["benchmark"], "language": step.meta["language"], "decoding": step.meta["decoding"],
            "problems": res.get("problems"), "completions": n, "passed": sum(o["passed"] for o in outcomes),
            "pass_at_1": res.get("pass@1"), "artifact": str(artifact)}, conn)
        store.upsert_many("outcomes", outcomes, conn)
    elif step.kind == "perplexity":
        v = step.meta["variant"]
        vkey = _variant_key(step)
        for language, r in res["perplexities"].items():
            store.upsert("perplexities", {
                "variant_key": vkey, "language": language, "model": v["model"], "variant": v["label"],
                "method": v["method"], "bits": v["bits"], "calibration": v["calibration"],
                "finetuned": int(v["finetuned"]), "perplexity": r["perplexity"], "tokens": r["tokens"]}, conn)
    elif step.kind == "inference":
        v = step.meta["variant"]
        vkey = _variant_key(step)
        for m in res["backends"]:
            store.upsert("inference", {
                "variant_key": vkey, "backend": m["backend"], "model": v["model"], "variant": v["label"],
                "method": v["method"], "bits": v["bits"], "calibration": v["calibration"],
                "finetuned": int(v["finetuned"]), "prefill_tok_s": m["prefill_tok_s"],
                "decode_tok_s": json.dumps(m["decode_tok_s"]), "peak_rss_mb": m["peak_rss_mb"],
                "file_bytes": m["file_bytes"], "formula_bits": m["formula_bits_per_param"], "load_s": m["load_s"],
                "settings": json.dumps({k: step.config[k] for k in ("prompt_tokens", "new_tokens", "device")})}, conn)
    elif step.kind == "compare":
        conn.execute("DELETE FROM comparisons WHERE step_key = ?", (step.key,))
        cols = ("kind", "model", "language", "baseline", "other", "b", "c", "n_pairs", "odds_ratio", "ci_low",
                "ci_high", "p_value", "p_adjusted", "baseline_pass_rate", "other_pass_rate", "correction", "test",
                "p_mcnemar", "n_problems", "samples_per_problem", "pass_diff", "diff_ci_low", "diff_ci_high", "mde",
                "icc")
        store.upsert_many("comparisons", [
            {"step_key": step.key, "benchmark": step.meta["benchmark"], "decoding": step.meta["decoding"],
             **{c: r.get(c) for c in cols}} for r in res["rows"]], conn)


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
                if status.get(step.key, {}).get("status") != "done":
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
