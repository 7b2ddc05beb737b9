"""A tiny real study end to end: tiny Llama, RTN + GPTQ at 4/2 bits, a local-text calibration, a 3-problem
HumanEval-format file; crash mid-way (raised inside a step), resume, no duplicated rows; status; report."""

import json
import sqlite3

import pytest
import yaml

from codequant.study import StudyStore, build_plan, load_config, run_study, study_status
from codequant.study.runner import artifact_dir

TEST = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(0) == 0\n"
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
    {
        "task_id": "Mini/2",
        "prompt": "def dbl(x):\n",
        "canonical_solution": "    return x * 3\n",
        "test": TEST,
        "entry_point": "dbl",
    },
]
CODE = "def add(a, b):\n    return a + b\n\n\nclass Box:\n    def __init__(self, v):\n        self.v = v\n"


def write_study(tmp_path, model_dir, quantizations=None, perplexity=False):
    (tmp_path / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    texts = tmp_path / "texts"
    texts.mkdir(exist_ok=True)
    for i in range(4):
        (texts / f"f{i}.py").write_text(CODE * (3 + i))
    cfg = {
        "name": "tiny",
        "models": [str(model_dir)],
        "quantizations": quantizations
        if quantizations is not None
        else [
            {"method": "rtn", "bits": [4, 2], "calibration": ["texts"]},
            {"method": "gptq", "bits": [4, 2], "calibration": ["texts"]},
        ],
        "calibration": {"samples": 4, "seq_len": 16, "val_samples": 0, "seed": 0},
        "benchmarks": [{"name": "humaneval", "data": "mini.jsonl"}],
        "decoding": [{"name": "greedy", "max_new_tokens": 6, "prompt_style": "base", "batch_size": 4}],
        "runner": {"isolate": False, "quantize_batch_size": 2},
    }
    if perplexity:
        cfg["perplexity"] = {"languages": ["python"], "tokens": 64, "seq_len": 16}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _counts(db):
    con = sqlite3.connect(db)
    try:
        return {
            t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("steps", "runs", "outcomes", "variants", "footprints", "comparisons")
        }
    finally:
        con.close()


class Crash(Exception):
    pass


def test_study_runs_crashes_resumes_without_duplicates(tmp_path, tiny_llama_dir):
    path = write_study(tmp_path, tiny_llama_dir)
    cfg = load_config(path)
    study = tmp_path / "tiny"
    plan = build_plan(cfg, tmp_path)
    evals = plan.of_kind("evaluate")
    victim = evals[2]  # a quantized model's evaluation: crash after its work, before its commit

    def crash(step, phase):
        if step.key == victim.key and phase == "before_commit":
            raise Crash("simulated kill")

    with pytest.raises(Crash):
        run_study(cfg, study, base=tmp_path, hook=crash, log=lambda s: None)
    states = {r["key"]: r["state"] for r in study_status(cfg, study, base=tmp_path)}
    assert states[victim.key] == "failed"
    assert (artifact_dir(study, victim).with_name(victim.key + ".partial") / "samples.jsonl").is_file()
    done_before = [k for k, s in states.items() if s == "done"]
    assert len(done_before) == plan.steps.index(victim)
    mtimes = {k: (artifact_dir(study, plan.by_key()[k]) / "done").stat().st_mtime_ns for k in done_before}

    counts = run_study(cfg, study, base=tmp_path, log=lambda s: None)
    assert counts["ran"] == len(plan.steps) - len(done_before) and counts["skipped"] == len(done_before)
    assert all(r["state"] == "done" for r in study_status(cfg, study, base=tmp_path))
    # finished artifacts were reused, not redone
    assert all(
        (artifact_dir(study, plan.by_key()[k]) / "done").stat().st_mtime_ns == m for k, m in mtimes.items()
    )
    # the crashed evaluation resumed in its partial folder: each completion once
    lines = (artifact_dir(study, victim) / "samples.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["task_id"] for x in lines) == ["Mini/0", "Mini/1", "Mini/2"]

    first = _counts(study / "study.db")
    assert first["runs"] == 5 and first["outcomes"] == 15 and first["variants"] == 5
    assert first["footprints"] == 5 and first["comparisons"] == 4
    assert first["steps"] == len(plan.steps)
    # a run over a finished study, and re-ingesting every artifact, change nothing
    assert run_study(cfg, study, base=tmp_path, log=lambda s: None)["ran"] == 0
    with StudyStore(study / "study.db") as store:
        store.conn.execute("UPDATE steps SET status = 'running'")
        store.conn.commit()
    assert run_study(cfg, study, base=tmp_path, log=lambda s: None)["ingested"] == len(plan.steps)
    assert _counts(study / "study.db") == first

    with StudyStore(study / "study.db") as store:
        fps = {r["variant"]: r for r in store.rows("SELECT * FROM footprints")}
        assert fps["fp"]["formula_bits"] == pytest.approx(32.0)
        assert 2.0 <= fps["rtn-2bit-texts"]["formula_bits"] < fps["rtn-4bit-texts"]["formula_bits"] < 8
        assert all(r["file_bytes"] > 0 for r in fps.values())
        steps = store.rows("SELECT * FROM steps")
        assert all(s["seconds"] is not None and s["peak_rss_mb"] > 10 for s in steps)
        assert {s["attempts"] for s in steps if s["key"] == victim.key} == {2}
        cmp = store.rows("SELECT * FROM comparisons")
        assert {c["baseline"] for c in cmp} == {"fp"} and all(c["n_pairs"] == 3 for c in cmp)


def test_changed_setting_reuses_unaffected_artifacts(tmp_path, tiny_llama_dir):
    path = write_study(
        tmp_path, tiny_llama_dir, quantizations=[{"method": "rtn", "bits": [4], "calibration": ["texts"]}]
    )
    study = tmp_path / "tiny"
    run_study(load_config(path), study, base=tmp_path, log=lambda s: None)
    data = yaml.safe_load(path.read_text())
    data["quantizations"][0]["bits"] = [4, 3]
    path.write_text(yaml.safe_dump(data))
    counts = run_study(load_config(path), study, base=tmp_path, log=lambda s: None)
    # calibrate, rtn-4 quantize, fp + rtn-4 evaluations reused; rtn-3 quantize + evaluate + a new compare run
    assert counts["skipped"] == 4 and counts["ran"] == 3


def test_killed_mid_evaluation_resumes_each_completion_once(tmp_path, tiny_llama_dir):
    """fp-only study; the evaluation dies with one completion written and a second half-written."""
    path = write_study(tmp_path, tiny_llama_dir, quantizations=[])
    data = yaml.safe_load(path.read_text())
    data["models"].append("canonical")
    path.write_text(yaml.safe_dump(data))
    cfg, study = load_config(path), tmp_path / "tiny"
    victim = build_plan(cfg, tmp_path).of_kind("evaluate")[1]

    def crash(step, phase):
        if step.key == victim.key and phase == "before_commit":
            raise Crash("simulated kill")

    with pytest.raises(Crash):
        run_study(cfg, study, base=tmp_path, hook=crash, log=lambda s: None)
    samples = artifact_dir(study, victim).with_name(victim.key + ".partial") / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text(lines[0] + lines[1][:25])  # what a kill -9 during the second append leaves
    assert run_study(cfg, study, base=tmp_path, log=lambda s: None)["ran"] == 1
    rows = [json.loads(x) for x in (artifact_dir(study, victim) / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == ["Mini/0", "Mini/1", "Mini/2"]
    c = _counts(study / "study.db")
    assert c["runs"] == 2 and c["outcomes"] == 6 and c["comparisons"] == 0
    with StudyStore(study / "study.db") as store:
        assert store.rows("SELECT pass_at_1 FROM runs WHERE model = 'canonical'")[0][
            "pass_at_1"
        ] == pytest.approx(2 / 3)


def test_inference_step_times_every_version_and_the_report_shows_it(tmp_path, tiny_llama_dir):
    from codequant.report import build_report
    from codequant.report.tables import inference_table

    path = write_study(
        tmp_path, tiny_llama_dir, quantizations=[{"method": "rtn", "bits": [4], "calibration": ["texts"]}]
    )
    data = yaml.safe_load(path.read_text())
    data["inference"] = {"prompt_tokens": 8, "new_tokens": 3, "batches": [1, 2]}
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert [s.label.rsplit("-", 2)[-2:] for s in build_plan(cfg, tmp_path).of_kind("inference")] == [
        ["llama0", "fp"],
        ["4bit", "texts"],
    ]
    run_study(cfg, tmp_path / "tiny", base=tmp_path, log=lambda s: None)
    with StudyStore(tmp_path / "tiny" / "study.db") as store:
        rows = inference_table(store)
    assert [(r["method"], r["bits"], r["backend"]) for r in rows] == [
        ("fp", None, "fp"),
        ("rtn", 4, "dequantized"),
    ]
    for r in rows:
        assert r["prefill_tok_s"] > 0 and r["decode_b1_tok_s"] > 0 and r["decode_b2_tok_s"] > 0
        assert r["peak_rss_mb"] > 50  # a fresh Python process with torch and the model
        assert r["j_per_token_b1"] > 0 and r["energy_method"]
    assert rows[0]["b1_x_fp"] == 1.0 and rows[1]["formula_bits"] > 4 and rows[1]["file_mb"] > 0
    text = build_report(tmp_path / "tiny").read_text()
    assert "## Inference" in text and f"| {rows[1]['version']} | rtn | 4 | dequantized |" in text
    assert "j_per_token_b1" in text and "energy_method" in text


def test_quantization_errors_reach_the_store_and_the_report(tmp_path, tiny_llama_dir):
    """Held-out calibration rows give each quantized version a held-out output error next to the in-sample one,
    and the report shows both, with the perplexity-vs-bits/weight plot."""
    from codequant.report import build_report
    from codequant.report.tables import quant_error_table

    path = write_study(
        tmp_path,
        tiny_llama_dir,
        quantizations=[{"method": "gptq", "bits": [4, 2], "calibration": ["texts"]}],
        perplexity=True,
    )
    data = yaml.safe_load(path.read_text())
    data["calibration"].update(samples=4, seq_len=8, val_samples=2)
    path.write_text(yaml.safe_dump(data))
    run_study(load_config(path), tmp_path / "tiny", base=tmp_path, log=lambda s: None)
    with StudyStore(tmp_path / "tiny" / "study.db") as store:
        rows = {r["bits"]: r for r in quant_error_table(store)}
    assert set(rows) == {4, 2}
    for r in rows.values():
        assert r["val_rows"] == 2 and r["layer_error"] > 0 and r["layer_error_heldout"] > 0
        assert r["block_mse_heldout"] > 0 and r["quantize_s"] > 0
    assert rows[2]["layer_error_heldout"] > rows[4]["layer_error_heldout"]  # fewer bits, more error
    from codequant.report.tables import memory_table, pareto_points

    with StudyStore(tmp_path / "tiny" / "study.db") as store:
        memory = {r["bits"]: r for r in memory_table(store)}
        points = pareto_points(store)
    # whole-file bits: the native checkpoint's tensors over the fp parameters; fp (fp32 as loaded) is 32
    assert memory[None]["whole_file_bits"] == pytest.approx(32.0)
    assert memory[4]["whole_file_bits"] > memory[2]["whole_file_bits"] > memory[2]["formula_bits"]
    fp_points = [p["whole_file_bits"] for p in points if p["series"] == "fp"]
    assert fp_points and fp_points == [pytest.approx(32.0)] * len(fp_points)
    report = build_report(tmp_path / "tiny")
    text = report.read_text()
    assert "## Quantization error" in text and "plots/perplexity_pareto.png" in text
    assert (report.parent / "plots" / "perplexity_pareto.png").read_bytes()[:4] == b"\x89PNG"
