"""`codequant failures RUN...`: counts per run, details, and growth against the first run (JSON output)."""

import json

from typer.testing import CliRunner

from codequant.cli import app


def write_run(path, statuses):
    path.mkdir()
    rows = []
    for k, status in enumerate(statuses):
        rows.append(
            {
                "task_id": f"T/{k // 2}",
                "sample_index": k % 2,
                "language": "python",
                "status": status,
                "passed": status == "ok",
                "completion": "    return 1\n",
                "program": "def f():\n    return 1\n",
                "stop_reason": "stop",
                "exception_type": "SyntaxError" if status == "syntax_error" else None,
                "stderr_tail": "",
            }
        )
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_failures_cli_counts_and_tests_growth(tmp_path):
    base = write_run(tmp_path / "fp", ["ok"] * 40)
    other = write_run(tmp_path / "q2", ["syntax_error"] * 30 + ["ok"] * 10)
    result = CliRunner().invoke(app, ["failures", base, other, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [r["syntax"] for r in out["counts"]] == [0, 30]
    assert out["details"][other] == {"syntax: SyntaxError": 30}
    (growth,) = out["growth"]
    assert (
        growth["failure"] == "syntax"
        and growth["new"] == 30
        and growth["grows"]
        and growth["test"] == "clustered"
    )
    table = CliRunner().invoke(app, ["failures", base, other])
    assert table.exit_code == 0 and "hallucinated_api" in table.output and "yes" in table.output
    missing = CliRunner().invoke(app, ["failures", str(tmp_path)])
    assert missing.exit_code != 0
