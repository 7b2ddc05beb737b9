"""The harness check: canonical solutions run as given (never cut like a model's output), pass 100% on every
benchmark that ships them, and `benchmarks list` shows the figure."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from codequant.benchmarks.registry import benchmark_names, load_benchmark
from codequant.cli import app
from codequant.errors import CodequantError
from codequant.evaluation import evaluate
from codequant.evaluation.canonical import cached_check, check_canonical, checkable

TEST = "def check(candidate):\n    assert candidate(3) == 7\n"
# The canonical body calls a helper defined after it: "\ndef " is a stop sequence of model output, so extraction
# would cut the helper off (the McEval regression); executed as given it passes.
RECORD = {
    "task_id": "Mini/0",
    "prompt": "def f(x):\n",
    "test": TEST,
    "entry_point": "f",
    "canonical_solution": "    return helper(x) + 1\n\n\ndef helper(x):\n    return 2 * x\n",
}
CANONICAL = (
    "humaneval",
    "humaneval-repair",
    "humaneval-repair-msg",
    "humaneval-x-java",
    "humaneval-java-repair",
    "humaneval-java-repair-msg",
    "mceval-python",
    "mceval-java",
)


@pytest.fixture
def mini(tmp_path):
    path = tmp_path / "mini.jsonl"
    path.write_text(json.dumps(RECORD) + "\n")
    return path


def test_canonical_solution_runs_as_given(mini, tmp_path):
    s = evaluate("canonical", "humaneval", data=mini, out_dir=tmp_path / "r", progress=False)
    (row,) = [json.loads(x) for x in (tmp_path / "r" / "samples.jsonl").read_text().splitlines()]
    assert row["completion"] == RECORD["canonical_solution"] and "def helper" in row["program"]
    assert s["passed"] == 1, row["stderr_tail"]


def test_check_is_cached_per_content_and_listed(mini, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))
    problems = load_benchmark("humaneval", mini)
    assert cached_check("humaneval", problems) is None
    found = check_canonical("humaneval", mini)
    assert (found.figure, found.failed) == ("1/1", ())
    assert cached_check("humaneval", problems) == found
    changed = [RECORD | {"canonical_solution": "    return x\n"}]
    assert (
        cached_check("humaneval", load_benchmark("humaneval", _write(tmp_path / "b.jsonl", changed))) is None
    )
    bad = check_canonical("humaneval", tmp_path / "b.jsonl")
    assert (bad.figure, bad.failed) == ("0/1", ("Mini/0",))


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_listing_shows_unchecked_none_and_text(monkeypatch, tmp_path):
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CODEQUANT_BENCHMARKS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = CliRunner().invoke(app, ["benchmarks", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["humaneval"]["canonical"] == "unchecked" and rows["humaneval-java"]["canonical"] == "none"
    assert rows["humaneval-summarize"]["canonical"] == "scored, not run"
    assert rows["mxeval-java"]["canonical"] is None  # cannot load here


@pytest.mark.slow
def test_every_benchmark_with_canonical_solutions_is_in_the_ci_list(shared_dir, monkeypatch):
    monkeypatch.setenv("CODEQUANT_BENCHMARKS_DIR", str(shared_dir / "benchmarks"))
    found = []
    for name in benchmark_names():
        try:
            if checkable(load_benchmark(name)):
                found.append(name)
        except CodequantError:
            pass
    assert sorted(found) == sorted(CANONICAL)


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_solutions_pass_everywhere(name, shared_dir, monkeypatch, tmp_path):
    """`evaluate canonical` passes 100% on every benchmark that ships canonical solutions (HumanEval, HumanEval-X
    Java, McEval Python and Java, the repair sets); a failure names the tasks."""
    monkeypatch.setenv("CODEQUANT_BENCHMARKS_DIR", str(shared_dir / "benchmarks"))
    found = check_canonical(name, root=tmp_path)
    print(f"{name}: {found.figure} canonical solutions pass")
    assert found.passed == found.total > 0, f"{name}: {found.figure}; failed {found.failed[:20]}"
