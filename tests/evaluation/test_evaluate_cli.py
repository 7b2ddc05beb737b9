import json
import subprocess
import sys
from pathlib import Path

RECORD = {"task_id": "Mini/0", "prompt": "def inc(x):\n", "canonical_solution": "    return x + 1\n",
          "test": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": "inc"}


def _cli(*args, cwd):
    code = "from codequant.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_evaluate_canonical_prints_pass_at_1(tmp_path: Path):
    data = tmp_path / "mini.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    res = _cli("evaluate", "canonical", "--benchmark", "humaneval", "--data", str(data), "--out", "r", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "1/1 completions passed" in res.stdout and "pass@1=1.0000" in res.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["passed"] == 1
    bad = _cli("evaluate", "canonical", "--benchmark", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown benchmark")
