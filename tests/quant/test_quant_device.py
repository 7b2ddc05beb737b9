"""Quantizing block by block on a device: the walk's device path (the same results as in place on the CPU), its
CUDA run where a GPU is visible (only the current block on the GPU), and bench/gpu_check.py's dry run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from codequant.quant.base import QuantConfig
from codequant.quant.blocks import to_device
from codequant.quant.pipeline import WalkOptions, find_decoder_layers, quantize_model
from codequant.quant.registry import make_quantizer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, 384, (12, 24), generator=g)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_to_device_moves_every_tensor_inside_and_keeps_the_rest():
    kw = {"pos": (torch.zeros(2), torch.ones(2)), "mask": None, "flag": False, "ids": [torch.arange(3)]}
    moved = to_device(kw, "cpu")
    assert moved["mask"] is None and moved["flag"] is False and isinstance(moved["pos"], tuple)
    assert torch.equal(moved["ids"][0], torch.arange(3)) and isinstance(moved["ids"], list)


@pytest.mark.parametrize(
    "config",
    [
        QuantConfig("gptq", bits=3, group_size=32),
        QuantConfig(
            "aqlm",
            num_codebooks=1,
            codebook_bits=4,
            group_size=8,
            options={"tune_epochs": 1, "max_rounds": 2},
        ),
    ],
)
def test_walk_on_a_device_gives_the_in_place_results(tiny_llama_dir, calib, config):
    from transformers import AutoModelForCausalLM

    runs = []
    for device in (None, "cpu"):
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        torch.manual_seed(0)
        report = quantize_model(
            model, calib, make_quantizer(config), WalkOptions(device=device), progress=False
        )
        runs.append((_weights(model), [b["rel_output_mse"] for b in report.blocks]))
        assert all(p.device.type == "cpu" for p in model.parameters())
    (w0, e0), (w1, e1) = runs
    assert e0 == e1 and w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["gptq", "aqlm"])
def test_walk_on_cuda_holds_one_block_there_and_matches_the_cpu(tiny_llama_dir, calib, method):
    from transformers import AutoModelForCausalLM

    config = (
        QuantConfig("gptq", bits=3, group_size=32)
        if method == "gptq"
        else QuantConfig("aqlm", num_codebooks=1, codebook_bits=4, group_size=8)
    )
    errors, on_gpu = {}, []
    for device in (None, "cuda"):
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        _, layers = find_decoder_layers(model)
        hooks = (
            [
                layer.register_forward_pre_hook(
                    lambda _m, _a, layers=layers: on_gpu.append(
                        sum(next(b.parameters()).is_cuda for b in layers)
                    )
                )
                for layer in layers
            ]
            if device
            else []
        )
        report = quantize_model(
            model, calib, make_quantizer(config), WalkOptions(device=device), progress=False
        )
        for h in hooks:
            h.remove()
        errors[device] = [b["rel_output_mse"] for b in report.blocks]
        assert all(p.device.type == "cpu" for p in model.parameters())
    assert on_gpu and max(on_gpu) == 1
    assert errors["cuda"] == pytest.approx(errors[None], rel=0.15)


def test_gpu_check_dry_run_checks_itself_on_the_cpu(tiny_llama_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "gpu.json"
    rc = gpu_check.main(["--dry", "--model", str(tiny_llama_dir), "--blocks", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    assert rc == 0 and result["ok"] and result["machine"]["device"] == "cpu"
    block = result["checks"]["aqlm_block"]
    assert block["cpu"]["block_mse"] == block["device"]["block_mse"] > 0  # same seed, same path on the CPU
    assert result["checks"]["engine"]["identical_rows"] == result["checks"]["engine"]["prompts"] == 3
    assert result["checks"]["aqlm_2x8"]["blocks"] == 2
    proxy = result["checks"]["proxy"]  # the 7B-shaped proxy's check, small: three dtypes x GPTQ-4 / AQLM 2x8
    assert proxy["ok"] and isinstance(proxy["errors_ok"], bool)  # small: the 5% check is for the GPU run
    for method in ("gptq", "aqlm"):
        errors = [proxy[f"{method}_{d}"]["heldout_block_error"] for d in ("float32", "float16", "bfloat16")]
        assert all(e > 0 for e in errors) and proxy[f"{method}_float32"]["peak_gpu_bytes"] is None
