"""A study whose evaluation holds a pathological completion (thousands of nested directories: the old scratch-dir
cleanup raised RecursionError and the whole batch was lost on every resume) finishes, with that completion's
status recorded and every other row present (issue 30)."""

from __future__ import annotations

import json

import yaml

from codequant.study import load_config, run_study, study_status
from codequant.study.store import StudyStore

TEST = "def check(candidate):\n    assert candidate(2) == 4\n"
NESTED = "    import os\n    for _ in range(1500):\n        os.mkdir('d')\n        os.chdir('d')\n    return 2 * x\n"


def test_study_with_a_nested_directories_completion_finishes(tmp_path):
    records = [
        {
            "task_id": f"Deep/{i}",
            "prompt": "def double(x):\n",
            "canonical_solution": body,
            "test": TEST,
            "entry_point": "double",
        }
        for i, body in enumerate(["    return 2 * x\n", NESTED, "    return 3 * x\n", "    return x + x\n"])
    ]
    (tmp_path / "deep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = {
        "name": "deep",
        "models": ["canonical"],
        "quantizations": [],
        "benchmarks": [{"name": "humaneval", "data": "deep.jsonl"}],
        "decoding": [{"name": "greedy", "max_new_tokens": 8, "prompt_style": "base"}],
        "runner": {"isolate": False, "sandbox_workers": 2},
    }
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config, study = load_config(path), tmp_path / "deep"
    run_study(config, study, base=tmp_path, log=lambda s: None)
    assert all(r["state"] == "done" for r in study_status(config, study, base=tmp_path))
    with StudyStore(study / "study.db") as store:
        rows = {r["task_id"]: r for r in store.rows("SELECT task_id, status, passed FROM outcomes")}
    assert sorted(rows) == ["Deep/0", "Deep/1", "Deep/2", "Deep/3"]
    assert {k: (r["status"], bool(r["passed"])) for k, r in rows.items()} == {
        "Deep/0": ("ok", True),
        "Deep/1": ("ok", True),
        "Deep/2": ("assertion", False),
        "Deep/3": ("ok", True),
    }
