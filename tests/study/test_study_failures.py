"""The failure taxonomy inside a study: every failed completion's class in study.db, filled again for a study
ingested before the taxonomy existed, and the report's table, growth tests and stacked-bar plot."""

from test_study_runner import write_study

from codequant.failures import CLASSES
from codequant.report import build_report
from codequant.study import StudyStore, load_config, run_study


def test_outcomes_get_failure_classes_old_studies_are_backfilled_and_the_report_shows_them(
    tmp_path, tiny_llama_dir
):
    path = write_study(
        tmp_path, tiny_llama_dir, quantizations=[{"method": "rtn", "bits": [2], "calibration": ["texts"]}]
    )
    cfg, study = load_config(path), tmp_path / "tiny"
    run_study(cfg, study, base=tmp_path, log=lambda s: None)
    db = study / "study.db"
    with StudyStore(db) as store:
        rows = store.rows("SELECT o.*, r.model FROM outcomes o JOIN runs r ON r.key = o.run_key")
        assert any(not r["passed"] for r in rows)  # 6 random tokens: the tiny model fails every problem
        assert rows and all(r["status"] for r in rows)
        assert all((r["failure"] is None) == bool(r["passed"]) for r in rows)
        assert all(r["failure"] in CLASSES and r["failure_detail"] for r in rows if not r["passed"])
        before = sorted((r["run_key"], r["task_id"], r["failure"], r["failure_detail"]) for r in rows)
        # a study.db from before the taxonomy: the columns are empty; the next run fills them from the artifacts
        store.conn.execute("UPDATE outcomes SET failure = NULL, failure_detail = NULL")
        store.conn.commit()
    counts = run_study(cfg, study, base=tmp_path, log=lambda s: None)
    assert counts["ran"] == 0 and counts["ingested"] >= 1
    with StudyStore(db) as store:
        after = sorted(
            (r["run_key"], r["task_id"], r["failure"], r["failure_detail"])
            for r in store.rows("SELECT * FROM outcomes")
        )
    assert after == before
    report = build_report(study)
    text = report.read_text()
    assert "## Why completions fail" in text and "### Does a class grow from fp?" in text
    assert (report.parent / "plots" / "failures.png").stat().st_size > 1000
    table = (report.parent / "tables" / "failures.csv").read_text().splitlines()
    assert table[0].startswith("model,benchmark,language") and len(table) == 1 + 2  # fp, rtn-2
    growth = (report.parent / "tables" / "failure_growth.csv").read_text().splitlines()
    assert "rtn-2bit-texts" in "\n".join(growth[1:])  # tiny-llama fp vs its rtn-2 version, per class
