"""`codequant exec` prints one JSON object and exits 0 whenever the program ran."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from codequant.cli import app


def test_exec_prints_json(tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("print('hello')\nassert 1 + 1 == 3\n")
    res = CliRunner().invoke(app, ["exec", "--language", "python", str(prog), "--timeout", "5"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "assertion"
    assert out["stdout"] == "hello\n"
    assert out["exception_type"] == "AssertionError"
    assert set(out) >= {
        "status",
        "exit_code",
        "duration_s",
        "stdout",
        "stderr",
        "exception_type",
        "isolation",
    }


def test_exec_timeout_option(tmp_path):
    prog = tmp_path / "loop.py"
    prog.write_text("while True:\n    pass\n")
    res = CliRunner().invoke(app, ["exec", str(prog), "--timeout", "0.5"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["status"] == "timeout"


def test_exec_missing_file_is_a_user_error(tmp_path):
    res = CliRunner().invoke(app, ["exec", str(tmp_path / "nope.py")])
    assert res.exit_code != 0
    assert "does not exist" in str(res.exception)
