"""Loaders of the published Java/Python sets, on the samples in ../shared/benchmarks, plus the listing."""

from __future__ import annotations

import json
import shutil

import pytest

from codequant.benchmarks.listing import list_benchmarks
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.registry import benchmark_info, load_benchmark
from codequant.errors import CodequantError
from codequant.sandbox import Status, run_programs

needs_javac = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")


@pytest.fixture
def bench_dir(shared_dir, monkeypatch):
    monkeypatch.setenv("CODEQUANT_BENCHMARKS_DIR", str(shared_dir / "benchmarks"))
    return shared_dir / "benchmarks"


def test_published_sets_load_with_their_formats(bench_dir):
    x = load_benchmark("humaneval-x-java")
    assert len(x) == 164 and x[0].entry_point == "hasCloseElements" and x[0].extra["format"] == "humaneval-x"
    assert x[162].entry_point == "stringToMd5"  # `throws NoSuchAlgorithmException` in the signature
    mx = load_benchmark("mxeval-java")
    assert len(mx) == 161 and mx[0].entry_point == "hasCloseElements" and mx[0].canonical_solution is None
    mj = load_benchmark("mceval-java")
    assert len(mj) == 53 and all(p.canonical_solution for p in mj)
    mp = load_benchmark("mceval-python")
    assert len(mp) == 50 and all(p.language == "python" and "def check(" in p.tests for p in mp)
    assert all(p.prompt.endswith("\n") for p in mp)


def test_explicit_data_wins_and_offline_error_names_data(bench_dir, monkeypatch, tmp_path):
    assert len(load_benchmark("mceval-java", bench_dir / "mceval" / "Java.jsonl")) == 53
    monkeypatch.delenv("CODEQUANT_BENCHMARKS_DIR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CodequantError, match="--data"):
        load_benchmark("mxeval-java")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    with pytest.raises(CodequantError, match="lacks"):
        load_benchmark("mceval-java", bad)


def test_multipl_e_records_from_json_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rec = {
        "name": "HumanEval_0_inc",
        "language": "java",
        "prompt": "class Problem {\n    public static long inc(long x) {\n",
        "doctests": "",
        "original": "",
        "prompt_terminology": "reworded",
        "tests": "    }\n    public static void main(String[] args) {\n    assert(inc(1l) == 2l);\n    }\n\n}\n",
        "stop_tokens": ["\n    }\n"],
    }
    (tmp_path / "m.json").write_text(json.dumps([rec]))
    pq.write_table(pa.Table.from_pylist([rec]), tmp_path / "m.parquet")
    for name in ("m.json", "m.parquet"):
        (p,) = load_benchmark("multipl-e-java", tmp_path / name)
        assert (p.task_id, p.entry_point, p.stop) == ("HumanEval_0_inc", "inc", ("\n    }\n",))
        assert "return x + 1;" in build_program(p, "        return x + 1;\n")


@pytest.mark.java
@needs_javac
def test_canonical_solutions_pass_on_a_sample(bench_dir):
    problems = load_benchmark("humaneval-x-java")[:2] + load_benchmark("mceval-java")[:2]
    problems += load_benchmark("mceval-python")[:2]
    results = run_programs(
        [(p.language, build_program(p, p.canonical_solution)) for p in problems], workers=2, progress=False
    )
    assert [r.status for r in results] == [Status.OK] * 6, [r.stderr[-300:] for r in results]


def test_listing_reports_counts_and_sources(bench_dir):
    rows = {r["name"]: r for r in list_benchmarks()}
    assert rows["humaneval-java"]["problems"] >= 155 and rows["humaneval-java"]["language"] == "java"
    assert rows["mceval-java"]["problems"] == 53
    assert rows["mceval-java"]["source"].endswith("mceval/Java.jsonl")
    assert benchmark_info("mceval-python").language == "python"
