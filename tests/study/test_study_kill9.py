"""Crash-resume over a real `codequant study run` process: SIGKILL its whole process group at random moments
(inside calibration, quantization, generation, the sandbox or a SQLite commit), rerun, and check that the finished
study holds every step, run and completion exactly once — the same counts as the in-process crash test."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_study_runner import write_study

from codequant.study import build_plan, load_config, study_status
from codequant.study.runner import artifact_dir


def _start(config: Path) -> subprocess.Popen:
    code = "from codequant.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "study", "run", str(config)],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.ci
def test_study_killed_at_random_points_resumes_with_everything_once(tmp_path: Path, tiny_llama_dir: Path):
    config = write_study(tmp_path, tiny_llama_dir)
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    for _ in range(3):
        proc = _start(config)
        time.sleep(rng.uniform(1.0, 8.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    proc = _start(config)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err

    cfg = load_config(config)
    plan = build_plan(cfg, tmp_path)
    study = tmp_path / "tiny"
    assert all(r["state"] == "done" for r in study_status(cfg, study, base=tmp_path))
    db = study / "study.db"
    assert _count(db, "SELECT COUNT(*) FROM steps WHERE status = 'done'") == len(plan.steps)
    assert _count(db, "SELECT COUNT(*) FROM runs") == 5
    assert _count(db, "SELECT COUNT(*) FROM outcomes") == 15
    assert _count(db, "SELECT COUNT(*) FROM comparisons") == 4
    for step in plan.of_kind("evaluate"):
        lines = (artifact_dir(study, step) / "samples.jsonl").read_text().splitlines()
        assert sorted(json.loads(x)["task_id"] for x in lines) == ["Mini/0", "Mini/1", "Mini/2"]
    assert not list(study.rglob("*.partial")), "partial artifacts left after a finished study"
