"""`codequant.models` reads native checkpoints through the loader `codequant.quant.export` registers, and every
path that loads a model (CLI, evaluation runner, study steps in their workers, inference metrics) imports it.

Each path is checked from a clean state: the registry emptied and `codequant.quant.export` dropped from
`sys.modules`, so only that path's own import can register the loader again; the CLI also in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from codequant.errors import CodequantError
from codequant.models import checkpoints, load
from codequant.quant.base import QuantConfig, QuantizedLinear
from codequant.quant.export import save_codequant_checkpoint
from codequant.quant.pipeline import quantize_model
from codequant.quant.registry import make_quantizer


@pytest.fixture(scope="module")
def native(tmp_path_factory, tiny_llama_builder, tiny_tokenizer):
    model = tiny_llama_builder(len(tiny_tokenizer))
    calib = torch.randint(3, 300, (4, 16), generator=torch.Generator().manual_seed(1))
    quantize_model(model, calib, make_quantizer(QuantConfig("rtn", bits=4, group_size=16)), progress=False)
    return save_codequant_checkpoint(
        model, tmp_path_factory.mktemp("ckpt") / "native", tokenizer=tiny_tokenizer
    )


@pytest.fixture()
def unregistered(monkeypatch):
    """No loader registered and the registering module not imported: as in a process that never imported it."""
    monkeypatch.setattr(checkpoints, "_LOADERS", {})
    monkeypatch.delitem(sys.modules, "codequant.quant.export")
    monkeypatch.delattr(sys.modules["codequant.quant"], "export")


def _is_quantized(model) -> bool:
    return any(isinstance(m, QuantizedLinear) for m in model.modules())


def test_a_native_folder_loads_quantized_through_the_registered_loader(native):
    assert checkpoints.NATIVE_FILE in checkpoints.registered_markers()
    loaded = load(str(native))
    assert loaded.source == "folder" and _is_quantized(loaded.model)


def test_without_the_registration_the_error_names_the_module_to_import(native, unregistered):
    with pytest.raises(CodequantError, match=r"codequant\.safetensors.*codequant\.quant\.export"):
        load(str(native))


def test_the_evaluation_runner_registers_it(native, unregistered):
    from codequant.evaluation.runner import load_model

    model, _ = load_model(str(native))
    assert _is_quantized(model)


def test_the_study_steps_register_it_in_any_worker(native, unregistered):
    """Local, ray and slurm workers all run `study.worker.execute_step`, whose kinds load through here."""
    from codequant.study.kinds.common import load_model

    model, _ = load_model(str(native))
    assert _is_quantized(model)


def test_the_inference_metrics_register_it(native, unregistered):
    from codequant.metrics.inference import InferenceSettings, measure

    result = measure(str(native), InferenceSettings(batches=(1,), new_tokens=2, prompt_tokens=8))
    assert result.spec == str(native) and result.decode_tok_s[1] > 0


def test_the_cli_registers_it_in_a_fresh_interpreter(native):
    out = subprocess.run(
        [sys.executable, "-c", "from codequant.cli import app; app()", "footprint", str(native), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["source"] == "folder"
