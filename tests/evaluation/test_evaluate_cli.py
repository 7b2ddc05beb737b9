import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECORD = {
    "task_id": "Mini/0",
    "prompt": "def inc(x):\n",
    "canonical_solution": "    return x + 1\n",
    "test": "def check(candidate):\n    assert candidate(1) == 2\n",
    "entry_point": "inc",
}


def _cli(*args, cwd):
    code = "from codequant.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_evaluate_canonical_prints_pass_at_1(tmp_path: Path):
    data = tmp_path / "mini.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    res = _cli(
        "evaluate", "canonical", "--benchmark", "humaneval", "--data", str(data), "--out", "r", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "1/1 completions passed" in res.stdout and "pass@1=1.0000" in res.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["passed"] == 1
    bad = _cli("evaluate", "canonical", "--benchmark", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown benchmark")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root for a private tmpfs"
)
def test_full_disk_is_one_line_and_the_rerun_resumes(tmp_path: Path):
    """A 48 KiB tmpfs (in a private mount namespace, so nothing leaks to the host) fills up mid-evaluation."""
    data = tmp_path / "many.jsonl"
    records = [
        {**RECORD, "task_id": f"Mini/{i}", "prompt": f"def inc(x):\n    {'#' * 2000}\n"} for i in range(40)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    disk = tmp_path / "disk"
    disk.mkdir()
    code = "from codequant.cli import main; main()"
    cli = " ".join(
        shlex.quote(a)
        for a in [
            sys.executable,
            "-c",
            code,
            "evaluate",
            "canonical",
            "--data",
            str(data),
            "--out",
            str(disk / "run"),
        ]
    )
    d = shlex.quote(str(disk))
    script = (
        f"mount -t tmpfs -o size=48k tmpfs {d} && {cli}; echo rc=$?; "
        f"mount -o remount,size=8m {d} && {cli} >/dev/null 2>&1; echo rerun=$?; cat {d}/run/summary.json"
    )
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "rc=2" in res.stdout, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "disk full" in errors[0] and "Traceback" not in res.stderr, res.stderr
    assert "rerun=0" in res.stdout, res.stdout
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert (summary["completions"], summary["passed"]) == (40, 40)
