"""Study YAML validation and planning: one-line errors, content keys that change exactly with their inputs."""

import json

import pytest
import yaml

from codequant.errors import CodequantError
from codequant.study import build_plan, load_config, parse_config

BASE = {
    "name": "t",
    "models": ["m"],
    "benchmarks": [{"name": "humaneval"}],
    "quantizations": [{"method": "rtn", "bits": [4, 2], "calibration": ["code", "random"]}],
}


def _with(**kw):
    return {**json.loads(json.dumps(BASE)), **kw}


@pytest.mark.parametrize(
    "data, where",
    [
        (_with(quantizations=[{"method": "rtn", "bitz": [4]}]), "quantizations.0.bitz: unknown key"),
        (_with(quantizations=[{"method": "aqlm", "bits": [5]}]), "aqlm bits must be among 2, 3, 4, 8"),
        (_with(quantizations=[{"method": "awq", "bits": [4]}]), "quantizations.0.method"),
        (_with(models=[]), "models"),
        (_with(name="bad name"), "study name 'bad name'"),
        (_with(decoding=[{"name": "g"}, {"name": "g"}]), "decoding names must be unique"),
        (_with(baseline=False, quantizations=[]), "nothing to run"),
        ([1, 2], "must be a YAML mapping"),
    ],
)
def test_config_errors_are_one_line(data, where):
    with pytest.raises(CodequantError) as e:
        parse_config(data)
    assert where in str(e.value) and "\n" not in str(e.value)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(CodequantError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(CodequantError, match="not valid YAML"):
        load_config(bad)


def test_default_study_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "studies" / "default.yaml"
    cfg = load_config(path)
    plan = build_plan(cfg, path.parent)
    kinds = [s.kind for s in plan.steps]
    assert kinds.count("quantize") == 3 and kinds.count("calibrate") == 2  # AQLM 4/2 code, 2 random
    assert kinds.count("evaluate") == 8 and kinds.count("compare") == 2  # 4 versions x 2 benchmarks
    assert kinds.count("inference") == kinds.count("perplexity") == 4  # one per version


def test_paper_grid_study_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "studies" / "paper-grid.yaml"
    plan = build_plan(load_config(path), path.parent)
    kinds = [s.kind for s in plan.steps]
    assert (
        kinds.count("calibrate") == 3 and kinds.count("quantize") == 12 and kinds.count("finetune") == 2
    )  # shared
    assert kinds.count("evaluate") == 2 * (1 + 12 + 2)  # fp + 12 quantized + 2 fine-tuned, 2 benchmarks
    assert kinds.count("inference") == 1 + 12 + 2


def test_plan_keys_follow_inputs(tmp_path):
    plan = build_plan(parse_config(BASE), tmp_path)
    kinds = [s.kind for s in plan.steps]
    assert kinds.count("calibrate") == 2 and kinds.count("quantize") == 4
    assert kinds.count("evaluate") == 5 and kinds.count("compare") == 1
    keys = plan.by_key()
    for s in plan.steps:  # dependency order
        assert all(plan.steps.index(keys[d]) < plan.steps.index(s) for d in s.deps)
    again = build_plan(parse_config(BASE), tmp_path)
    assert [s.key for s in again.steps] == [s.key for s in plan.steps]
    reseeded = build_plan(parse_config(_with(calibration={"seed": 1})), tmp_path)
    old, new = {s.name: s.key for s in plan.steps}, {s.name: s.key for s in reseeded.steps}
    fp_eval = "evaluate:m-fp-humaneval-greedy"
    assert old[fp_eval] == new[fp_eval]  # the fp run does not depend on calibration
    changed = [n for n in old if old[n] != new[n]]
    assert len(changed) == len(old) - 1


def test_relative_paths_resolve_against_yaml_folder(tmp_path):
    (tmp_path / "mini.jsonl").write_text("")
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump(_with(benchmarks=[{"name": "humaneval", "data": "mini.jsonl"}]))
    )
    plan = build_plan(load_config(tmp_path / "s.yaml"), tmp_path)
    assert plan.of_kind("evaluate")[0].config["data"] == str(tmp_path / "mini.jsonl")
    with pytest.raises(CodequantError, match="does not exist"):
        build_plan(parse_config(_with(benchmarks=[{"name": "humaneval", "data": "nope.jsonl"}])), tmp_path)
    with pytest.raises(CodequantError, match="unknown benchmark"):
        build_plan(parse_config(_with(benchmarks=[{"name": "nobench"}])), tmp_path)


def test_calibration_size_is_an_axis(tmp_path):
    """The seed's ablation: Random calibration with many short rows against Code calibration with few long ones."""
    data = _with(
        quantizations=[
            {
                "method": "rtn",
                "bits": [2],
                "calibration": ["random"],
                "calibration_sizes": ["1024x64", "16x512"],
            },
            {"method": "rtn", "bits": [2], "calibration": ["code"]},
        ]
    )
    plan = build_plan(parse_config(data), tmp_path)
    cals = {s.label: s.config for s in plan.of_kind("calibrate")}
    assert cals["m-random-1024x64"]["samples"] == 1024 and cals["m-random-1024x64"]["seq_len"] == 64
    assert cals["m-random-16x512"]["val_samples"] == 2  # samples // 8 by default
    assert cals["m-code"]["samples"] == 128 and cals["m-code"]["val_samples"] == 16
    quants = {s.label: s for s in plan.of_kind("quantize")}
    assert set(quants) == {"m-rtn-2bit-random-1024x64", "m-rtn-2bit-random-16x512", "m-rtn-2bit-code"}
    v = quants["m-rtn-2bit-random-16x512"].meta["variant"]
    assert v["calibration"] == "random 16x512" and v["calibration_size"] == "16x512"
    keys = {s.key for s in quants.values()}
    assert len(keys) == 3  # each size is its own quantization
    with pytest.raises(CodequantError, match="ROWSxLEN"):
        parse_config(_with(quantizations=[{"method": "rtn", "bits": [2], "calibration_sizes": ["128by512"]}]))


def test_paper_scale_study_is_valid_and_asks_for_gpus_on_slurm():
    from pathlib import Path

    from codequant.study.executors import resources_for

    path = Path(__file__).resolve().parents[2] / "studies" / "paper-scale.yaml"
    cfg = load_config(path)
    plan = build_plan(cfg, path.parent)
    kinds = [s.kind for s in plan.steps]
    # 6 models x (4 bits x 3 calibrations + 2 fine-tuned) versions, fp baselines, 4 benchmarks
    assert kinds.count("quantize") == 72 and kinds.count("finetune") == 12 and kinds.count("calibrate") == 18
    assert kinds.count("evaluate") == 4 * 6 * (1 + 12 + 2)
    assert cfg.runner.executor == "slurm"
    q = resources_for("quantize", cfg.runner.resources["quantize"].model_dump())
    assert q.gpus == 1 and q.memory_gb == 160


def test_generation_backend_is_a_decoding_setting_hashed_only_when_not_the_engine(tmp_path):
    plan = build_plan(parse_config(BASE), tmp_path)
    evals = plan.of_kind("evaluate")
    assert all("backend" not in s.config for s in evals)  # studies from before backends keep their keys
    vllm = build_plan(
        parse_config(
            _with(decoding=[{"name": "greedy", "backend": "vllm"}], runner={"vllm": {"dtype": "float32"}})
        ),
        tmp_path,
    )
    assert all(s.config["backend"] == "vllm" for s in vllm.of_kind("evaluate"))
    assert {s.key for s in vllm.of_kind("evaluate")}.isdisjoint(s.key for s in evals)
    assert [s.key for s in vllm.of_kind("quantize")] == [s.key for s in plan.of_kind("quantize")]
    with pytest.raises(CodequantError, match="backend"):
        parse_config(_with(decoding=[{"name": "greedy", "backend": "tgi"}]))


def test_paper_benchmarks_study_is_the_study_benchmarks_with_the_prompt_stripped():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "studies" / "paper-benchmarks.yaml"
    cfg = load_config(path)
    plan = build_plan(cfg, path.parent)
    evals = plan.of_kind("evaluate")
    assert {s.config["benchmark"] for s in evals} == {"multipl-e-py", "multipl-e-java"}
    assert len(evals) == 2 * 3 and all(s.config["prompt_strip"] is True for s in evals)  # fp, AQLM 4 and 2
    scale = load_config(path.parent / "paper-scale.yaml")
    assert {"multipl-e-py", "multipl-e-java"} <= {b.name for b in scale.benchmarks}
    assert scale.decoding[0].prompt_strip


def test_prompt_strip_python_main_and_sanitize_hashed_only_when_set(tmp_path):
    plain = build_plan(parse_config(BASE), tmp_path).of_kind("evaluate")
    assert all(k not in s.config for s in plain for k in ("prompt_strip", "python_main", "sanitize"))
    changed = build_plan(
        parse_config(
            _with(decoding=[{"name": "greedy", "prompt_strip": True, "sanitize": True, "python_main": "run"}])
        ),
        tmp_path,
    ).of_kind("evaluate")
    assert all(
        s.config["prompt_strip"] and s.config["sanitize"] and s.config["python_main"] == "run"
        for s in changed
    )
    assert {s.key for s in changed}.isdisjoint(s.key for s in plain)
    with pytest.raises(CodequantError, match="python_main"):
        parse_config(_with(decoding=[{"name": "greedy", "python_main": "exec"}]))
