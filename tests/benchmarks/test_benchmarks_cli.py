"""`codequant benchmarks list` and `codequant exec --language java`."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from codequant.cli import app


def test_benchmarks_list_json(monkeypatch):
    monkeypatch.delenv("CODEQUANT_BENCHMARKS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = CliRunner().invoke(app, ["benchmarks", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert {
        "humaneval-java",
        "multipl-e-java",
        "humaneval-x-java",
        "mxeval-java",
        "mceval-java",
        "mceval-python",
    } <= set(rows)
    assert rows["humaneval-java"]["problems"] >= 155
    assert rows["mxeval-java"]["problems"] is None and "--data" in rows["mxeval-java"]["source"]
    assert set(rows["humaneval"]) >= {"name", "language", "problems", "source"}


@pytest.mark.java
@pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")
def test_exec_java_file(tmp_path):
    src = tmp_path / "Prog.java"
    src.write_text(
        "class Prog {\n    public static void main(String[] a) {\n        assert 1 + 1 == 3;\n    }\n}\n"
    )
    res = CliRunner().invoke(app, ["exec", "--language", "java", str(src)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["status"] == "assertion" and out["exception_type"] == "AssertionError"
