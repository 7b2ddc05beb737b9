"""Crash-resume over a real `codequant evaluate` process: SIGKILL it at random points, rerun, count every
completion exactly once (samples.jsonl is append-only; a kill can at most truncate its last line)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

N = 6


def _records() -> list[dict]:
    out = []
    for i in range(N):
        body = f"    import time\n    time.sleep(0.15)\n    return x + {i}\n"
        test = f"def check(candidate):\n    assert candidate(1) == {1 + i}\n"
        if i == 3:  # one failing problem: failures are counted once too
            test = "def check(candidate):\n    assert candidate(1) == -1\n"
        out.append(
            {
                "task_id": f"Kill/{i}",
                "prompt": "def f(x):\n",
                "canonical_solution": body,
                "test": test,
                "entry_point": "f",
            }
        )
    return out


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    code = "from codequant.cli import main; main()"
    args = [
        "evaluate",
        "canonical",
        "--benchmark",
        "humaneval",
        "--data",
        str(tmp_path / "kill.jsonl"),
        "--limit",
        str(N),
        "--out",
        "run",
        *extra,
    ]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _rows(tmp_path: Path) -> list[dict]:
    path = tmp_path / "run" / "samples.jsonl"
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]  # the last piece may be a cut line


@pytest.mark.slow
@pytest.mark.ci
def test_kill_9_at_random_points_then_resume_counts_each_completion_once(tmp_path: Path):
    (tmp_path / "kill.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    for _ in range(3):
        proc = _start(tmp_path)
        time.sleep(rng.uniform(0.2, 2.5))
        os.killpg(proc.pid, signal.SIGKILL)  # the evaluator and the sandboxes it started
        proc.communicate()
        keys = Counter((r["task_id"], r["sample_index"]) for r in _rows(tmp_path))
        assert all(c == 1 for c in keys.values()), keys
    proc = _start(tmp_path)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    rows = _rows(tmp_path)
    keys = Counter((r["task_id"], r["sample_index"]) for r in rows)
    assert sorted(keys) == [(f"Kill/{i}", 0) for i in range(N)] and set(keys.values()) == {1}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["completions"], summary["passed"]) == (N, N - 1)
    # growing the scope after the crashes adds only the new samples
    proc = _start(tmp_path, "--samples", "2")
    proc.communicate(timeout=180)
    keys = Counter((r["task_id"], r["sample_index"]) for r in _rows(tmp_path))
    assert len(keys) == 2 * N and set(keys.values()) == {1}
