"""A tiny study with code summarization and program repair beside code generation: tiny Llama, RTN 4/2 bits,
humaneval-summarize and humaneval-repair (2 problems each) and a 2-problem HumanEval file; study.db holds the text scores and Wilcoxon comparisons, the report
shows the summarization table beside the pass@1 one."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from codequant.report import build_report
from codequant.study import StudyStore, load_config, run_study

TEST = "def check(candidate):\n    assert candidate(2) == 4\n"
RECORDS = [
    {
        "task_id": "Mini/0",
        "prompt": 'def double(x):\n    """Return 2 * x."""\n',
        "canonical_solution": "    return 2 * x\n",
        "test": TEST,
        "entry_point": "double",
    },
    {
        "task_id": "Mini/1",
        "prompt": 'def twice(x):\n    """Return x + x."""\n',
        "canonical_solution": "    return x + x\n",
        "test": TEST,
        "entry_point": "twice",
    },
]
CODE = "def add(a, b):\n    return a + b\n\n\nclass Box:\n    def __init__(self, v):\n        self.v = v\n"


@pytest.fixture()
def study_config(tmp_path, tiny_llama_dir):
    (tmp_path / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(4):
        (texts / f"f{i}.py").write_text(CODE * (3 + i))
    cfg = {
        "name": "summ",
        "models": [str(tiny_llama_dir)],
        "quantizations": [{"method": "rtn", "bits": [4, 2], "calibration": ["texts"]}],
        "calibration": {"samples": 4, "seq_len": 16, "val_samples": 0, "seed": 0},
        "benchmarks": [
            {"name": "humaneval", "data": "mini.jsonl"},
            {"name": "humaneval-summarize", "limit": 2},
            {"name": "humaneval-repair", "limit": 2},
        ],
        "decoding": [{"name": "greedy", "max_new_tokens": 6, "prompt_style": "base", "batch_size": 4}],
        "runner": {"isolate": False, "quantize_batch_size": 2},
    }
    path = tmp_path / "summ.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_study_with_summarization_fills_db_and_report(tmp_path, study_config):
    cfg = load_config(study_config)
    study = tmp_path / "summ"
    run_study(cfg, study, base=tmp_path, log=lambda s: None)
    with StudyStore(study / "study.db") as store:
        runs = {(r["benchmark"], r["variant"]): r for r in store.rows("SELECT * FROM runs")}
        assert len(runs) == 9
        text = [r for (b, _), r in runs.items() if b == "humaneval-summarize"]
        assert {r["task"] for r in text} == {"summarize"}
        assert all(r["passed"] is None and r["pass_at_1"] is None and r["completions"] == 2 for r in text)
        assert all(0 <= r["bleu"] <= 100 and 0 <= r["rouge_l"] <= 1 for r in text)
        assert {r["task"] for (b, _), r in runs.items() if b in ("humaneval", "humaneval-repair")} == {None}
        repair = [r for (b, _), r in runs.items() if b == "humaneval-repair"]
        assert all(r["completions"] == 2 and r["pass_at_1"] is not None for r in repair)
        scores = store.rows("SELECT * FROM text_scores")
        assert len(scores) == 6 and {s["task_id"] for s in scores} == {
            "HumanEvalSummarize/0",
            "HumanEvalSummarize/1",
        }
        # the run's mean equals the mean of its stored per-sample scores
        fp = runs[("humaneval-summarize", "fp")]
        fp_scores = [s["bleu"] for s in scores if s["run_key"] == fp["key"]]
        assert fp["bleu"] == pytest.approx(sum(fp_scores) / 2)
        # no pass/fail outcomes are invented for text runs
        assert not store.rows("SELECT * FROM outcomes WHERE run_key = ?", (fp["key"],))
        cmp = store.rows("SELECT * FROM score_comparisons ORDER BY metric, other")
        assert [(c["metric"], c["other"]) for c in cmp] == [
            ("bleu", "rtn-2bit-texts"),
            ("bleu", "rtn-4bit-texts"),
            ("rouge_l", "rtn-2bit-texts"),
            ("rouge_l", "rtn-4bit-texts"),
        ]
        assert all(
            c["test"] == "wilcoxon"
            and c["baseline"] == "fp"
            and c["n_problems"] == 2
            and c["correction"] == "bh"
            and 0 <= c["p_value"] <= c["p_adjusted"] <= 1
            for c in cmp
        )
        # McNemar rows only for the executed benchmarks: code generation and repair, each version against fp
        mcnemar = store.rows("SELECT * FROM comparisons")
        assert {r["benchmark"] for r in mcnemar} == {"humaneval", "humaneval-repair"}
        assert sum(r["benchmark"] == "humaneval-repair" for r in mcnemar) == 2
    # a second run changes nothing (upserts)
    con = sqlite3.connect(study / "study.db")
    before = [
        con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("text_scores", "score_comparisons")
    ]
    con.close()
    assert run_study(cfg, study, base=tmp_path, log=lambda s: None)["ran"] == 0

    report = build_report(study).read_text()
    assert (
        report.index("## pass@1 against fp")
        < report.index("## Code summarization")
        < report.index("## Calibration")
    )
    section = report[report.index("## Code summarization") : report.index("## Calibration")]
    assert "| model | benchmark | decoding | version | problems | bleu | corpus_bleu | rouge_l |" in section
    assert section.count("| humaneval-summarize |") == 3
    pass_section = report[: report.index("## Code summarization")]
    assert "humaneval-summarize" not in pass_section  # text runs have no pass@1 row
    assert pass_section.count("| humaneval-repair |") >= 3  # repair sits beside code generation
    csv = (study / "report" / "tables" / "summarization.csv").read_text().splitlines()
    assert len(csv) == 4 and csv[0].startswith("model,benchmark,decoding,version")
    con = sqlite3.connect(study / "study.db")
    after = [
        con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("text_scores", "score_comparisons")
    ]
    con.close()
    assert before == after == [6, 4]


def test_old_study_db_gets_the_new_columns(tmp_path):
    db = tmp_path / "study.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE runs (key TEXT PRIMARY KEY, variant_key TEXT NOT NULL, model TEXT NOT NULL, variant "
        "TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER, calibration TEXT, finetuned INTEGER NOT NULL, "
        "benchmark TEXT NOT NULL, language TEXT NOT NULL, decoding TEXT NOT NULL, problems INTEGER, "
        "completions INTEGER, passed INTEGER, pass_at_1 REAL, artifact TEXT)"
    )
    con.commit()
    con.close()
    with StudyStore(db) as store:
        cols = {r["name"] for r in store.rows("PRAGMA table_info(runs)")}
        assert {"task", "bleu", "corpus_bleu", "rouge_l"} <= cols
        assert (
            store.rows("SELECT * FROM text_scores") == []
            and store.rows("SELECT * FROM score_comparisons") == []
        )
