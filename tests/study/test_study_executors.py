"""Executors: the same tiny study (tiny Llama; RTN-4 and GPTQ-4; fp and both versions evaluated; one compare)
on a real local Ray cluster (2 CPUs on 127.0.0.1, started with `ray start --head`) and through submitit's local
executor (the same pickling and job life-cycle as on Slurm), against `executor: local`: steps overlap in time, a
worker killed mid-quantization is retried and resumes from its block checkpoint, a killed driver re-attaches to
its running job, and study.db ends with the same rows."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from test_study_runner import write_study

from codequant.errors import CodequantError
from codequant.study import build_plan, parse_config, run_study, study_status
from codequant.study.executors import Resources, resources_for
from codequant.study.kinds import STEP_KINDS
from codequant.study.runner import StudyFailed, artifact_dir

SMALL = [
    {"method": "rtn", "bits": [4], "calibration": ["texts"]},
    {"method": "gptq", "bits": [4], "calibration": ["texts"]},
]
ONE_CPU = {k: {"cpus": 1, "memory_gb": 1, "gpus": 0} for k in STEP_KINDS.names}
TIMING = {"quantize_s"}  # columns that measure time, not results


def _config(tmp_path: Path, model_dir: Path, runner: dict, quantizations=None):
    """The tiny study with these runner settings; every variant of a test shares one folder of inputs, so the
    plans (keyed by their inputs' paths) are the same whichever executor runs them."""
    path = write_study(tmp_path, model_dir, quantizations=SMALL if quantizations is None else quantizations)
    data = yaml.safe_load(path.read_text())
    data["runner"] = {**data["runner"], "isolate": True, **runner}
    return parse_config(data)


def _yaml(tmp_path: Path, cfg, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump()))
    return path


def _rows(study: Path) -> dict[str, list]:
    """Every results table, paths made relative to the study folder and timings left out: what must not depend on where
    or how the steps ran."""
    con = sqlite3.connect(study / "study.db")
    con.row_factory = sqlite3.Row
    out = {}
    try:
        for (table,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'steps'"
        ):
            rows = []
            for r in con.execute(f"SELECT * FROM {table}"):
                d = {
                    k: (v.replace(str(study), "STUDY") if isinstance(v, str) else v)
                    for k, v in dict(r).items()
                    if k not in TIMING
                }
                rows.append(json.dumps(d, sort_keys=True))
            out[table] = sorted(rows)
    finally:
        con.close()
    return out


def _steps(study: Path) -> dict[str, dict]:
    con = sqlite3.connect(study / "study.db")
    con.row_factory = sqlite3.Row
    try:
        return {r["key"]: dict(r) for r in con.execute("SELECT * FROM steps")}
    finally:
        con.close()


def _overlap(a: dict, b: dict) -> bool:
    return a["started"] < b["finished"] and b["started"] < a["finished"]


def _kill_when(partial_glob: str, root: Path, ready, done: threading.Event) -> threading.Thread:
    """A thread that SIGKILLs a step's worker process as soon as `ready(partial)` holds for its .partial folder."""

    def watch():
        deadline = time.time() + 300
        while time.time() < deadline and not done.is_set():
            for partial in root.glob(partial_glob):
                worker = partial / "worker.json"
                if worker.is_file() and ready(partial):
                    pid = json.loads(worker.read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    done.set()
                    return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _one_block_saved(partial: Path) -> bool:
    return (partial / "checkpoint" / "block_0000.safetensors").is_file()


@pytest.fixture(scope="module")
def deep_llama_dir(tmp_path_factory, tiny_tokenizer, tiny_llama_builder) -> Path:
    """A 6-block tiny Llama: enough blocks that a kill lands between the first checkpoint and the last."""
    path = tmp_path_factory.mktemp("deep-llama")
    model = tiny_llama_builder(len(tiny_tokenizer), layers=6)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_resources_default_per_kind_and_yaml_overrides():
    assert resources_for("quantize").gpus == 1 and resources_for("compare").gpus == 0
    assert resources_for("quantize", {"gpus": 0, "memory_gb": None}) == Resources(
        cpus=8, gpus=0, memory_gb=96, time_min=24 * 60
    )


def test_runner_config_refuses_unknown_kinds_and_in_process_parallel(tmp_path, tiny_llama_dir):
    from codequant.study import parse_config
    from codequant.study.executors.local import LocalExecutor

    data = yaml.safe_load(write_study(tmp_path, tiny_llama_dir).read_text())
    data["runner"]["resources"] = {"quantise": {"gpus": 1}}
    with pytest.raises(CodequantError, match="unknown step kind"):
        parse_config(data)
    with pytest.raises(CodequantError, match="isolate"):
        LocalExecutor(parallel=2, isolate=False)


def test_local_parallel_overlaps_steps_and_a_failing_step_stops_only_its_dependents(tmp_path, tiny_llama_dir):
    cfg = _config(tmp_path, tiny_llama_dir, {"parallel": 2, "max_attempts": 2})
    study = tmp_path / "par"
    plan = build_plan(cfg, tmp_path)
    gptq = next(s for s in plan.of_kind("quantize") if s.config["method"] == "gptq")
    # GPTQ's calibration input made unreadable: the step fails on both attempts; RTN's branch still finishes
    (artifact_dir(study, gptq).with_name(gptq.key + ".partial") / "checkpoint").mkdir(parents=True)
    (artifact_dir(study, gptq).with_name(gptq.key + ".partial") / "checkpoint" / "manifest.json").write_text(
        "{"
    )
    with pytest.raises(StudyFailed, match="quantize:.*gptq"):
        run_study(cfg, study, base=tmp_path, log=lambda s: None)
    states = {r["label"]: r["state"] for r in study_status(cfg, study, base=tmp_path)}
    assert states[gptq.label] == "failed"
    assert _steps(study)[gptq.key]["attempts"] == 2
    dependents = [s for s in plan.steps if gptq.key in s.deps]
    assert dependents and all(states[s.label] == "skipped" for s in dependents)
    rtn_eval = next(s for s in plan.of_kind("evaluate") if "rtn" in s.label)
    assert states[rtn_eval.label] == "done"
    finished = [r for r in _steps(study).values() if r["status"] == "done"]
    assert any(_overlap(a, b) for a in finished for b in finished if a["key"] < b["key"]), (
        "with parallel: 2, the fp evaluation runs beside the calibration and the quantization"
    )


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real Ray head on 127.0.0.1 with 2 CPUs (what `ray start --head` gives a user), stopped afterwards."""
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = Path(sys.executable).with_name("ray")
    tmp = Path("/tmp") / f"cq-ray-{os.getpid()}"
    cmd = [
        str(ray_bin),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={tmp}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.ci
def test_ray_cluster_runs_the_study_in_parallel_and_a_killed_worker_resumes(
    tmp_path, tiny_llama_dir, deep_llama_dir, ray_cluster
):
    runner = {"executor": "ray", "ray": {"address": ray_cluster}, "resources": ONE_CPU}
    local, cfg = _config(tmp_path, tiny_llama_dir, {}), _config(tmp_path, tiny_llama_dir, runner)
    run_study(local, tmp_path / "local", base=tmp_path, log=lambda s: None)
    plan = build_plan(cfg, tmp_path)
    counts = run_study(cfg, tmp_path / "ray", base=tmp_path, log=lambda s: None)
    assert counts["ran"] == len(plan.steps)
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")
    steps = _steps(tmp_path / "ray")
    assert _overlap(*[steps[s.key] for s in plan.of_kind("quantize")]), "2 quantizations on 2 CPUs: at once"
    assert all(len(s["job_id"]) > 8 for s in steps.values())  # Ray task ids

    # a worker SIGKILLed after its first block checkpoint: retried, resumes from that block
    aqlm = [
        {
            "method": "aqlm",
            "bits": [2],
            "calibration": ["texts"],
            "options": {"kmeans_iters": 2, "bits_tolerance": 100},
        }
    ]
    cfg = _config(tmp_path, deep_llama_dir, runner, quantizations=aqlm)
    study = tmp_path / "kill"
    killed = threading.Event()
    _kill_when("artifacts/quantize/*.partial", study, _one_block_saved, killed)
    run_study(cfg, study, base=tmp_path, log=lambda s: None)
    assert killed.is_set()
    (q,) = build_plan(cfg, tmp_path).of_kind("quantize")
    assert _steps(study)[q.key]["attempts"] == 2
    blocks = json.loads((artifact_dir(study, q) / "quantize.json").read_text())["blocks"]
    resumed = [b["index"] for b in blocks if b.get("resumed")]
    assert resumed and resumed[0] == 0 and len(resumed) < len(blocks), resumed


@pytest.mark.slow
@pytest.mark.ci
def test_submitit_runs_the_study_and_a_killed_driver_reattaches(tmp_path, tiny_llama_dir, deep_llama_dir):
    pytest.importorskip("submitit")
    runner = {"executor": "slurm", "slurm": {"cluster": "local"}}
    local, cfg = _config(tmp_path, tiny_llama_dir, {}), _config(tmp_path, tiny_llama_dir, runner)
    run_study(local, tmp_path / "local", base=tmp_path, log=lambda s: None)
    plan = build_plan(cfg, tmp_path)
    run_study(cfg, tmp_path / "slurm", base=tmp_path, log=lambda s: None)
    assert _rows(tmp_path / "slurm") == _rows(tmp_path / "local")
    steps = _steps(tmp_path / "slurm")
    assert all(s["job_id"].isdigit() for s in steps.values())  # submitit job ids
    assert _overlap(*[steps[s.key] for s in plan.of_kind("quantize")])

    # the driver SIGKILLed while its quantization job runs; the job goes on, the rerun waits for it (no resubmit)
    aqlm = [
        {
            "method": "aqlm",
            "bits": [2],
            "calibration": ["texts"],
            "options": {"kmeans_iters": 2, "bits_tolerance": 100},
        }
    ]
    cfg = _config(tmp_path, deep_llama_dir, runner, quantizations=aqlm)
    study = tmp_path / "driver"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from codequant.cli import main; main()",
            "study",
            "run",
            str(_yaml(tmp_path, cfg, "driver")),
            "--out",
            str(study),
            "--no-report",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    (q,) = build_plan(cfg, tmp_path).of_kind("quantize")
    partial = artifact_dir(study, q).with_name(q.key + ".partial")
    deadline = time.time() + 300
    while time.time() < deadline and not _one_block_saved(partial):
        assert driver.poll() is None, driver.stderr.read()
        time.sleep(0.02)
    driver.kill()
    driver.wait()
    row = next(r for r in study_status(cfg, study, base=tmp_path) if r["key"] == q.key)
    assert row["state"] == "partial" and row["job_id"].isdigit()
    counts = run_study(cfg, study, base=tmp_path, log=lambda s: None)
    assert counts["ran"] >= 1
    rec = _steps(study)[q.key]
    assert rec["status"] == "done" and rec["attempts"] == 1 and rec["job_id"] == row["job_id"]
    blocks = json.loads((artifact_dir(study, q) / "quantize.json").read_text())["blocks"]
    assert not any(b.get("resumed") for b in blocks)  # the same job finished the whole quantization
