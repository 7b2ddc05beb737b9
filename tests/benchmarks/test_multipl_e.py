"""MultiPL-E's HumanEval in Python and Java (the study's benchmarks): loading from the benchmark folders, program
assembly (prompt + completion + tests), the upstream quirks, `--prompt-strip` and the 15 s time limit."""

from __future__ import annotations

import json
import shutil

import pytest

from codequant.benchmarks.programs import build_program
from codequant.benchmarks.registry import load_benchmark
from codequant.errors import CodequantError
from codequant.evaluation import EvalSettings, Loaded, evaluate
from codequant.evaluation.runner import time_limit
from codequant.sandbox import Status, run_programs

needs_javac = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")

# Hand-written correct bodies (not taken from any benchmark file) and a wrong one per problem.
PY_BODIES = {
    "HumanEval_23_strlen": ("    return len(string)\n", "    return len(string) + 1\n"),
    "HumanEval_2_truncate_number": ("    return number - int(number)\n", "    return number\n"),
}
JAVA_BODIES = {
    "HumanEval_23_strlen": ("        return (long) string.length();\n    }\n", "        return 0l;\n    }\n"),
    "HumanEval_2_truncate_number": (
        "        return number - (float) Math.floor(number);\n    }\n",
        "        return number;\n    }\n",
    ),
}


@pytest.fixture
def bench_dir(shared_dir, monkeypatch):
    monkeypatch.setenv("CODEQUANT_BENCHMARKS_DIR", str(shared_dir / "benchmarks"))
    return shared_dir / "benchmarks"


def test_both_sets_load_as_published(bench_dir):
    py, java = load_benchmark("multipl-e-py"), load_benchmark("multipl-e-java")
    assert len(py) == 161 and len(java) == 158
    assert all(p.canonical_solution is None and p.extra["time_limit_s"] == 15 for p in py + java)
    strlen = next(p for p in py if p.task_id == "HumanEval_23_strlen")
    assert strlen.language == "python" and strlen.entry_point == "strlen"
    assert strlen.stop == ("\ndef", "\n#", "\nif", "\nclass") and strlen.tests.rstrip().endswith(
        "test_check()"
    )
    assert {p.entry_point for p in java if p.task_id == "HumanEval_23_strlen"} == {"strlen"}
    assert time_limit(py) == 15.0 and time_limit(load_benchmark("mceval-python")) is None


def test_default_folder_under_the_cache(shared_dir, monkeypatch, tmp_path):
    """Without $CODEQUANT_BENCHMARKS_DIR the files are looked up in $CODEQUANT_CACHE/benchmarks; offline and
    absent, the error names that folder."""
    monkeypatch.delenv("CODEQUANT_BENCHMARKS_DIR", raising=False)
    monkeypatch.setenv("CODEQUANT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CodequantError, match=str(tmp_path / "cache" / "benchmarks")):
        load_benchmark("multipl-e-py")
    folder = tmp_path / "cache" / "benchmarks" / "multipl-e"
    folder.mkdir(parents=True)
    lines = (shared_dir / "benchmarks" / "multipl-e" / "humaneval-py.jsonl").read_text().splitlines()[:3]
    (folder / "humaneval-py.jsonl").write_text("\n".join(lines) + "\n")
    assert len(load_benchmark("multipl-e-py")) == 3


def _outcomes(problems, bodies):
    items = []
    for p in problems:
        good, bad = bodies[p.task_id]
        items += [(p.language, build_program(p, good)), (p.language, build_program(p, bad))]
    return [r.status for r in run_programs(items, workers=2, progress=False)]


def test_python_programs_pass_and_fail_for_the_right_reasons(bench_dir):
    problems = [p for p in load_benchmark("multipl-e-py") if p.task_id in PY_BODIES]
    assert _outcomes(problems, PY_BODIES) == [Status.OK, Status.ASSERTION] * 2


@pytest.mark.java
@needs_javac
def test_java_programs_pass_and_136_is_unpassable(bench_dir):
    """javac + `java -ea` with javatuples on the class path; HumanEval_136's asserts compare with
    `Optional.of(Optional.empty())`, so even a correct solution fails (upstream, kept as published)."""
    problems = load_benchmark("multipl-e-java")
    chosen = [p for p in problems if p.task_id in JAVA_BODIES]
    assert _outcomes(chosen, JAVA_BODIES) == [Status.OK, Status.ASSERTION] * 2
    p136 = next(p for p in problems if p.task_id.startswith("HumanEval_136_"))
    correct = (
        "        Optional<Long> neg = Optional.empty();\n        Optional<Long> pos = Optional.empty();\n"
        "        for (long x : lst) {\n"
        "            if (x < 0 && (!neg.isPresent() || x > neg.get())) neg = Optional.of(x);\n"
        "            if (x > 0 && (!pos.isPresent() || x < pos.get())) pos = Optional.of(x);\n"
        "        }\n        return Pair.with(neg, pos);\n    }\n"
    )
    (res,) = run_programs([("java", build_program(p136, correct))], progress=False)
    assert res.status == Status.ASSERTION, res.stderr[-400:]


def test_prompt_strip_is_what_the_model_sees_and_is_recorded(tmp_path, tiny_llama, tiny_tokenizer):
    rec = {
        "name": "HumanEval_0_inc",
        "language": "py",
        "prompt": 'def inc(x: int) -> int:\n    """x + 1"""\n',
        "doctests": "",
        "original": "",
        "prompt_terminology": "reworded",
        "tests": "def check(candidate):\n    assert candidate(1) == 2\n\ndef test_check():\n    check(inc)\n\n"
        "test_check()\n",
        "stop_tokens": ["\ndef", "\n#", "\nif", "\nclass"],
    }
    data = tmp_path / "m.jsonl"
    data.write_text(json.dumps(rec) + "\n")
    tiny = Loaded("tiny", tiny_llama, tiny_tokenizer)
    settings = EvalSettings(max_new_tokens=4, prompt_style="base", prompt_strip=True)
    s = evaluate(tiny, "multipl-e-py", settings, data=data, out_dir=tmp_path / "r", progress=False)
    (row,) = [json.loads(x) for x in (tmp_path / "r" / "samples.jsonl").read_text().splitlines()]
    assert row["prompt"] == rec["prompt"].strip() and s["config"]["prompt_strip"] is True
    assert rec["prompt"].strip() + row["completion"] in row["program"]
    assert s["config"]["python_main"] == "skip"
    with pytest.raises(CodequantError, match="prompt-strip"):
        evaluate(
            "canonical", "humaneval", EvalSettings(prompt_strip=True), out_dir=tmp_path / "c", progress=False
        )
