"""The study's `stats:` settings: which test the compare steps run, what study.db keeps, what the report says."""

import json
import sqlite3

import pytest

from codequant.errors import CodequantError
from codequant.report import build_report, power_summary
from codequant.study import build_plan, parse_config
from codequant.study.comparisons import study_comparisons
from codequant.study.store import StudyStore

BASE = {
    "name": "t",
    "models": ["m"],
    "benchmarks": [{"name": "humaneval"}],
    "quantizations": [{"method": "rtn", "bits": [4], "calibration": ["code"]}],
}


def _compare_step(data):
    return next(s for s in build_plan(parse_config(data)).steps if s.kind == "compare")


def test_stats_settings_reach_the_compare_step_and_its_key():
    default = _compare_step(BASE)
    assert default.config["stats"] == {"test": "auto", "resamples": 10_000, "seed": 0, "alpha": 0.05}
    paper = _compare_step({**BASE, "stats": {"test": "mcnemar"}})
    assert paper.config["stats"]["test"] == "mcnemar" and paper.key != default.key
    with pytest.raises(CodequantError, match="stats.test"):
        parse_config({**BASE, "stats": {"test": "ttest"}})
    with pytest.raises(CodequantError, match="stats.resample: unknown key"):
        parse_config({**BASE, "stats": {"resample": 5}})


def _runs(samples):
    fp = {"fp": {"label": "fp", "method": "fp", "bits": None, "finetuned": False, "calibration": None}}
    q = {"label": "rtn-2", "method": "rtn", "bits": 2, "finetuned": False, "calibration": "code"}
    base = {f"P{p}": {i: p < 8 for i in range(samples)} for p in range(10)}
    other = {f"P{p}": {i: p < 8 and (p >= 4 or i == 0) for i in range(samples)} for p in range(10)}
    return [(fp["fp"], base), (q, other)]


def test_study_comparisons_are_clustered_when_problems_have_several_completions():
    (row,) = study_comparisons(_runs(4), model="m", language="python")
    assert row["test"] == "clustered" and row["n_problems"] == 10 and row["samples_per_problem"] == 4
    assert row["p_value"] > row["p_mcnemar"]  # 4 problems lose 3 of 4: the problems, not the 12 pairs, count
    assert row["pass_diff"] == pytest.approx(-12 / 40)
    assert row["diff_ci_low"] < row["pass_diff"] < row["diff_ci_high"] and row["mde"] > 0
    (paper,) = study_comparisons(_runs(4), model="m", language="python", test="mcnemar")
    assert paper["test"] == "mcnemar" and paper["p_value"] == paper["p_mcnemar"]
    (greedy,) = study_comparisons(_runs(1), model="m", language="python")
    assert greedy["test"] == "mcnemar"


def test_old_study_db_gets_the_new_comparison_columns(tmp_path):
    db = tmp_path / "study.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE comparisons (step_key TEXT NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL, "
        "language TEXT NOT NULL, benchmark TEXT NOT NULL, decoding TEXT NOT NULL, baseline TEXT NOT NULL, "
        "other TEXT NOT NULL, b INTEGER, c INTEGER, n_pairs INTEGER, odds_ratio REAL, ci_low REAL, "
        "ci_high REAL, p_value REAL, p_adjusted REAL, baseline_pass_rate REAL, other_pass_rate REAL, "
        "correction TEXT, PRIMARY KEY (step_key, kind, baseline, other))"
    )
    con.execute(
        "INSERT INTO comparisons (step_key, kind, model, language, benchmark, decoding, baseline, other, "
        "p_value) VALUES ('s', 'vs_fp', 'm', 'py', 'he', 'g', 'fp', 'q', 0.5)"
    )
    con.commit()
    con.close()
    with StudyStore(db) as store:
        cols = {r["name"] for r in store.conn.execute("PRAGMA table_info(comparisons)")}
        assert {"test", "p_mcnemar", "pass_diff", "diff_ci_low", "mde", "icc"} <= cols
        assert store.rows("SELECT p_value, test FROM comparisons")[0]["p_value"] == 0.5


def test_report_shows_test_effect_interval_and_power(tmp_path):
    study = tmp_path / "s"
    study.mkdir()
    (row,) = study_comparisons(_runs(4), model="m", language="python")
    with StudyStore(study / "study.db") as store, store.transaction() as conn:
        for key, label, method, bits, rate in (
            ("e-fp", "fp", "fp", None, 0.8),
            ("e-q", "rtn-2", "rtn", 2, 0.5),
        ):
            store.upsert(
                "runs",
                {
                    "key": key,
                    "variant_key": "v-" + label,
                    "model": "m",
                    "variant": label,
                    "method": method,
                    "bits": bits,
                    "calibration": None,
                    "finetuned": 0,
                    "benchmark": "humaneval",
                    "language": "python",
                    "decoding": "greedy",
                    "problems": 10,
                    "completions": 40,
                    "passed": int(40 * rate),
                    "pass_at_1": rate,
                },
                conn,
            )
        store.upsert(
            "comparisons",
            {
                "step_key": "cmp",
                "benchmark": "humaneval",
                "decoding": "greedy",
                **{
                    k: row[k]
                    for k in (
                        "kind",
                        "model",
                        "language",
                        "baseline",
                        "other",
                        "b",
                        "c",
                        "n_pairs",
                        "odds_ratio",
                        "ci_low",
                        "ci_high",
                        "p_value",
                        "p_adjusted",
                        "baseline_pass_rate",
                        "other_pass_rate",
                        "correction",
                        "test",
                        "p_mcnemar",
                        "n_problems",
                        "samples_per_problem",
                        "pass_diff",
                        "diff_ci_low",
                        "diff_ci_high",
                        "mde",
                        "icc",
                    )
                },
            },
            conn,
        )
    text = build_report(study).read_text()
    line = next(x for x in text.splitlines() if x.startswith("| m | humaneval | python | greedy | rtn-2 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[5:7] == ["50.0%", "-30.0"] and "clustered" in cells
    assert f"{row['p_mcnemar']:.2e}" in line or f"{row['p_mcnemar']:.4f}" in line
    assert (
        f"m humaneval python (greedy): 10 problems x 4 samples cannot show a pass@1 drop below "
        f"{100 * row['mde']:.1f} points at 80% power" in text
    )
    assert "Durkalski" in text and "p_mcnemar is always the exact per-completion p" in text
    assert json.loads(json.dumps(row))  # the stored row is JSON-safe
    (summary,) = power_summary(study)  # what `codequant study run` prints after the report
    assert summary.startswith("m humaneval python (greedy): 10 problems x 4 samples cannot show")


def test_compare_refuses_to_pair_runs_of_different_dtypes(tmp_path):
    """An fp16 baseline against an fp32 quantized run (runner.dtype auto on a mixed CPU/GPU grid) is not a
    quantization effect: the compare step refuses it, naming each version's dtype. Older runs count as float32."""
    from codequant.stats.runs import Run
    from codequant.study.kinds.compare import check_same_dtype

    def run(label, dtype):
        config = {"model": "m"} if dtype is None else {"model": "m", "dtype": dtype}
        return ({"label": label}, Run(label, tmp_path, {"t": {0: True}}, summary={"config": config}))

    check_same_dtype([run("fp", "float16"), run("rtn", "float16")])
    check_same_dtype([run("fp", None), run("rtn", "float32")])
    with pytest.raises(CodequantError, match=r"different dtypes \(fp: float16, rtn-4bit: float32\)"):
        check_same_dtype([run("fp", "float16"), run("rtn-4bit", None)])
