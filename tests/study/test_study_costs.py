"""`codequant study plan`: step costs from a model's config without its weights, the refusal of a step that does
not fit what it asks for (also at the start of `study run`), and the paper's grid passing its own plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from codequant.cli import app
from codequant.errors import CodequantError
from codequant.models.shapes import model_shape
from codequant.quant.budget import QuantJob, activation_bytes, quant_needs
from codequant.study import build_plan, load_config, run_study
from codequant.study.costs import check_plan, plan_costs

ROOT = Path(__file__).resolve().parents[2]


def test_shape_is_read_from_the_config_without_weights(tiny_llama_dir, tiny_llama):
    shape = model_shape(str(tiny_llama_dir))
    assert shape.source == "config.json"
    assert shape.params == sum(p.numel() for p in tiny_llama.parameters())  # the formula counts every weight
    assert (shape.hidden, shape.layers, shape.kv_heads) == (64, 2, 2)


def test_hub_ids_offline_come_from_the_table():
    shape = model_shape("codellama/CodeLlama-34b-hf")
    assert shape.source == "table" and shape.kv_heads == 8 and shape.torch_dtype == "bfloat16"
    assert shape.params == pytest.approx(33.7e9, rel=0.01)  # the published size
    assert model_shape("deepseek-ai/deepseek-coder-6.7b-base").params == pytest.approx(6.74e9, rel=0.01)
    with pytest.raises(CodequantError, match="cannot read the config"):
        model_shape("someone/unknown-model")


def test_activations_are_two_buffers_in_the_model_dtype_and_go_to_disk_over_budget():
    shape = model_shape("codellama/CodeLlama-34b-hf")
    job = QuantJob(method="aqlm", bits=2, rows=896, val_rows=128, seq_len=4096, dtype="bfloat16")
    assert activation_bytes(shape, job) == 2 * 1024 * 4096 * 8192 * 2
    free = quant_needs(shape, job)
    assert free.placement == "host" and free.host_bytes > activation_bytes(shape, job) + shape.bytes()
    capped = quant_needs(shape, QuantJob(**{**job.__dict__, "max_host_bytes": 160 * 10**9}))
    assert capped.placement == "disk" and capped.host_bytes < 160e9 < free.host_bytes
    assert capped.disk_bytes - free.disk_bytes == activation_bytes(shape, job)


def _study(tmp_path: Path, model: str, resources: dict | None = None) -> Path:
    data = {
        "name": "tiny",
        "models": [model],
        "baseline": True,
        "quantizations": [{"method": "rtn", "bits": [4]}],
        "calibration": {"samples": 8, "seq_len": 16, "val_samples": 2},
        "benchmarks": [{"name": "humaneval", "limit": 2}],
        "decoding": [{"name": "greedy", "max_new_tokens": 8}],
        "runner": {"resources": resources or {}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_sizes_every_step_of_a_tiny_study(tmp_path, tiny_llama_dir):
    path = _study(tmp_path, str(tiny_llama_dir))
    cfg = load_config(path)
    costs = check_plan(cfg, build_plan(cfg, tmp_path))
    kinds = {c.kind for c in costs}
    assert {"calibrate", "quantize", "evaluate", "compare"} <= kinds
    quant = next(c for c in costs if c.kind == "quantize")
    assert 0.4 < quant.host_gb < 2 and quant.problem is None and "activations" in quant.note


def test_a_step_over_its_memory_is_refused_in_one_line_before_anything_runs(tmp_path, tiny_llama_dir):
    path = _study(tmp_path, str(tiny_llama_dir), {"quantize": {"memory_gb": 0.1}})
    cfg = load_config(path)
    with pytest.raises(CodequantError) as err:
        run_study(cfg, tmp_path / "out", base=tmp_path)
    line = str(err.value)
    assert "\n" not in line and line.startswith("quantize:") and "host memory" in line
    assert "asks for 0.1 GB" in line and "runner.resources.quantize.memory_gb" in line
    assert not (tmp_path / "out" / "artifacts").exists()  # refused before the first step
    result = CliRunner().invoke(app, ["study", "plan", str(path)])
    assert result.exit_code == 1 and "does not fit: quantize:" in result.output


def test_the_paper_grid_passes_its_own_plan():
    cfg = load_config(ROOT / "studies" / "paper-scale.yaml")
    costs = plan_costs(cfg, build_plan(cfg, ROOT / "studies"))
    assert len(costs) == 576 and not [c.problem for c in costs if c.problem]
    quant34 = [c for c in costs if c.kind == "quantize" and "CodeLlama-34b" in c.step]
    assert quant34 and all(
        "on disk" in c.note for c in quant34
    )  # 128 GiB of activations: not in the 160 GB job
    assert all(c.throughput.startswith("assumed") for c in costs if c.kind in ("quantize", "evaluate"))
    result = CliRunner().invoke(app, ["study", "plan", str(ROOT / "studies" / "paper-scale.yaml")])
    assert result.exit_code == 0 and "every step fits" in result.output


def test_vllm_sharded_over_more_gpus_than_the_evaluation_asks_for_is_refused(tmp_path, tiny_llama_dir):
    path = _study(tmp_path, str(tiny_llama_dir), {"evaluate": {"gpus": 1}})
    data = yaml.safe_load(path.read_text())
    data["decoding"][0]["backend"] = "vllm"
    data["runner"]["vllm"] = {"tensor_parallel_size": 2}
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    problems = [c.problem for c in plan_costs(cfg, build_plan(cfg, tmp_path)) if c.problem]
    assert problems and all("tensor_parallel_size" in p and "evaluate.gpus >= 2" in p for p in problems)
    data["runner"]["resources"]["evaluate"]["gpus"] = 2
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert not [c.problem for c in plan_costs(cfg, build_plan(cfg, tmp_path)) if c.problem]
