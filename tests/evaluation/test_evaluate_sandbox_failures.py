"""One completion never stops an evaluation (issue 30): a program that breaks the harness is stored as that
completion's `harness_error`, a pathological one (thousands of nested directories) is run and counted like any
other, resume completes; and a SIGKILLed `codequant evaluate` leaves no sandbox process, scratch dir or cgroup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from codequant.evaluation import EvalSettings, evaluate
from codequant.evaluation.runner import execute_and_store
from codequant.evaluation.store import SampleStore
from codequant.sandbox.cgroup import controller_roots

TEST = "def check(candidate):\n    assert candidate(2) == 4\n"
NESTED = "    import os\n    for _ in range(1500):\n        os.mkdir('d')\n        os.chdir('d')\n    return 2 * x\n"


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _records() -> list[dict]:
    return [
        {
            "task_id": "Deep/0",
            "prompt": "def double(x):\n",
            "canonical_solution": "    return 2 * x\n",
            "test": TEST,
            "entry_point": "double",
        },
        {
            "task_id": "Deep/1",
            "prompt": "def double(x):\n",
            "canonical_solution": NESTED,
            "test": TEST,
            "entry_point": "double",
        },
        {
            "task_id": "Deep/2",
            "prompt": "def double(x):\n",
            "canonical_solution": "    return 3 * x\n",
            "test": TEST,
            "entry_point": "double",
        },
    ]


def test_nested_directories_completion_is_counted_and_resume_completes(tmp_path):
    data = _write(tmp_path / "deep.jsonl", _records())
    out = tmp_path / "run"
    s = evaluate("canonical", "humaneval", EvalSettings(workers=2), data=data, out_dir=out, progress=False)
    assert s["completions"] == 3 and s["status_counts"] == {"assertion": 1, "ok": 2}
    again = evaluate(
        "canonical", "humaneval", EvalSettings(workers=2), data=data, out_dir=out, progress=False
    )
    assert again["run"]["new_completions"] == 0 and again["completions"] == 3


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK")
def test_harness_error_is_the_completions_status_and_the_rest_is_stored(tmp_path):
    java = 'public class A {\n    public static void main(String[] a) {\n        String s = "\ud800";\n    }\n}\n'
    rows = [
        {"task_id": f"H/{i}", "sample_index": 0, "language": lang, "program": prog, "completion": prog}
        for i, (lang, prog) in enumerate(
            [("python", "assert 1 + 1 == 2\n"), ("java", java), ("python", "assert 2 + 2 == 5\n")]
        )
    ]
    store = SampleStore(tmp_path / "run", {"model": "hand"})
    execute_and_store(rows, store, workers=2)
    stored = {r["task_id"]: r for r in store.read()}
    assert [stored[f"H/{i}"]["status"] for i in range(3)] == ["ok", "harness_error", "assertion"]
    assert "UnicodeEncodeError" in stored["H/1"]["stderr_tail"]
    assert store.done_keys() == {("H/0", 0), ("H/1", 0), ("H/2", 0)}  # a resume has nothing left to run


def _sleepers(n: int) -> list[dict]:
    body = "    import ctypes, time\n    ctypes.CDLL(None).prctl(15, b'cqsleeper', 0, 0, 0)\n    time.sleep(60)\n"
    return [
        {
            "task_id": f"Sleep/{i}",
            "prompt": "def f(x):\n",
            "canonical_solution": body,
            "test": "def check(candidate):\n    assert candidate(1) == 1\n",
            "entry_point": "f",
        }
        for i in range(n)
    ]


def _sandbox_leftovers(pid: int) -> list[str]:
    found = [str(p) for p in Path(tempfile.gettempdir()).glob(f"codequant-sbx-{pid}-*")]
    for root in controller_roots().values():
        found += [str(p) for p in root.glob(f"run-{pid}-*")]
    out = subprocess.run(["pgrep", "-a", "cqsleeper"], capture_output=True, text=True).stdout
    return found + [f"process {ln}" for ln in out.splitlines() if ln]


@pytest.mark.slow
@pytest.mark.ci
def test_sigkilled_evaluate_leaves_no_sandbox_behind(tmp_path):
    _write(tmp_path / "sleep.jsonl", _sleepers(2))
    code = "from codequant.cli import main; main()"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "evaluate",
            "canonical",
            "--data",
            "sleep.jsonl",
            "--workers",
            "2",
            "--out",
            "run",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 60
        while (
            len([x for x in _sandbox_leftovers(proc.pid) if x.startswith("process")]) < 2
        ):  # both programs running
            assert time.monotonic() < end and proc.poll() is None, "the sandboxes never started"
            time.sleep(0.1)
        assert any("codequant-sbx-" in x for x in _sandbox_leftovers(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while (left := _sandbox_leftovers(proc.pid)) and time.monotonic() - killed < 2.0:
            time.sleep(0.05)
        assert left == [], f"left {time.monotonic() - killed:.1f} s after the SIGKILL: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
