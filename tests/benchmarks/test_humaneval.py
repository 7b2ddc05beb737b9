import gzip
import json

import pytest

from codequant.benchmarks.registry import load_benchmark
from codequant.benchmarks.sources.humaneval import STOP_SEQUENCES, load_humaneval
from codequant.errors import CodequantError


def test_default_file_has_164_problems():
    problems = load_benchmark("humaneval")
    assert len(problems) == 164
    p = problems[0]
    assert p.task_id == "HumanEval/0" and p.entry_point == "has_close_elements"
    assert p.language == "python" and p.stop == STOP_SEQUENCES
    assert "def check(candidate)" in p.tests and p.canonical_solution.strip()
    assert len({q.task_id for q in problems}) == 164


def _record(i):
    return {
        "task_id": f"T/{i}",
        "prompt": f"def f{i}(x):\n",
        "canonical_solution": "    return x\n",
        "test": "def check(c):\n    assert c(1) == 1\n",
        "entry_point": f"f{i}",
    }


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_custom_file(tmp_path, suffix):
    path = tmp_path / f"mini{suffix}"
    text = "\n".join(json.dumps(_record(i)) for i in range(3)) + "\n\n"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    problems = load_humaneval(path)
    assert [p.task_id for p in problems] == ["T/0", "T/1", "T/2"]
    assert problems[2].entry_point == "f2"


def test_bad_files(tmp_path):
    with pytest.raises(CodequantError, match="does not exist"):
        load_humaneval(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    rec = _record(0)
    del rec["entry_point"]
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(CodequantError, match="lacks entry_point"):
        load_humaneval(bad)
