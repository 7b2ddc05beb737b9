"""Where the walk's activation buffers live (host, disk) changes nothing computed, and they stay in the model's
dtype; the placement follows the budget."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from codequant.errors import CodequantError
from codequant.quant.activations import GIB, ActivationPolicy, ActivationStore, choose_placement
from codequant.quant.base import QuantConfig, QuantizedLinear
from codequant.quant.capture import capture_first_inputs
from codequant.quant.pipeline import WalkOptions, find_decoder_layers, quantize_model
from codequant.quant.registry import make_quantizer


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(3, 384, (14, 24), generator=g)
    return SimpleNamespace(train=tokens[:10], val=tokens[10:])


def quantized_state(model) -> dict[str, torch.Tensor]:
    """Every integer code and every dequantized weight of the quantized linears."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            state[f"{name}.weight"] = module.dequantize().detach().clone()
            for buf_name, buf in module.named_buffers():
                if not buf.is_floating_point():
                    state[f"{name}.{buf_name}"] = buf.clone()
    return state


@pytest.mark.parametrize("method", ["gptq", "aqlm"])
def test_host_and_disk_placements_give_the_same_codes_and_weights(
    tiny_llama_builder, calib, tmp_path, method
):
    if method == "gptq":
        config = QuantConfig("gptq", bits=4, group_size=32)
    else:
        config = QuantConfig(
            "aqlm", num_codebooks=1, codebook_bits=4, group_size=8, options={"tune_epochs": 1}
        )
    results = {}
    for placement in ("host", "disk"):
        model = tiny_llama_builder(384)
        quantizer = make_quantizer(config) if method == "gptq" else _aqlm(config)
        walk = WalkOptions(batch_size=4, activations=ActivationPolicy(placement, folder=tmp_path / placement))
        report = quantize_model(model, calib, quantizer, walk, progress=False)
        assert report.calibration["activations"]["placement"] == placement
        results[placement] = (quantized_state(model), [b["rel_output_mse_heldout"] for b in report.blocks])
        assert not list((tmp_path / placement).glob("activations-*"))  # the disk buffers are removed
    host, disk = results["host"], results["disk"]
    assert host[0].keys() == disk[0].keys() and any(not v.is_floating_point() for v in host[0].values())
    for key in host[0]:
        assert torch.equal(host[0][key], disk[0][key]), key
    assert host[1] == pytest.approx(disk[1], rel=1e-9)


def _aqlm(config):
    from codequant.quant.aqlm import AqlmQuantizer

    return AqlmQuantizer(config)


def test_budget_sends_the_buffers_to_disk_with_the_same_result(tiny_llama_builder, calib, tmp_path):
    config = QuantConfig("gptq", bits=3, group_size=32)
    free = tiny_llama_builder(384)
    quantize_model(free, calib, make_quantizer(config), progress=False)
    tight = tiny_llama_builder(384)
    report = quantize_model(
        tight,
        calib,
        make_quantizer(config),
        WalkOptions(activations=ActivationPolicy(max_host_bytes=1)),  # nothing fits beside it
        progress=False,
        checkpoint_dir=tmp_path,
    )
    assert report.calibration["activations"]["placement"] == "disk"
    a, b = quantized_state(free), quantized_state(tight)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_buffers_stay_in_the_model_dtype(tiny_llama_builder, calib):
    model = tiny_llama_builder(384).to(torch.bfloat16)
    _, layers = find_decoder_layers(model)
    x = capture_first_inputs(model, layers[0], calib.train, 4)
    assert x.dtype == torch.bfloat16 and x.shape == (10, 24, 64)
    ref = model.get_input_embeddings()(calib.train)  # block 0's input is the embedding
    assert torch.equal(x, ref)
    report = quantize_model(
        model, calib, make_quantizer(QuantConfig("rtn", bits=4, group_size=32)), progress=False
    )
    assert report.calibration["activations"]["dtype"] == "bfloat16"
    assert report.calibration["activations"]["bytes"] == 2 * 14 * 24 * 64 * 2  # two buffers, train + held-out


def test_choose_placement_follows_the_budget(tmp_path):
    need, model = 4 * GIB, 10 * GIB
    assert (
        choose_placement(ActivationPolicy(), need_bytes=need, other_host_bytes=model, device=None) == "host"
    )
    roomy = ActivationPolicy(max_host_bytes=16 * GIB, folder=tmp_path)
    assert choose_placement(roomy, need_bytes=need, other_host_bytes=model, device=None) == "host"
    tight = ActivationPolicy(max_host_bytes=12 * GIB, folder=tmp_path)
    assert choose_placement(tight, need_bytes=need, other_host_bytes=model, device=None) == "disk"
    with pytest.raises(CodequantError, match="no folder"):
        choose_placement(
            ActivationPolicy(max_host_bytes=12 * GIB), need_bytes=need, other_host_bytes=model, device=None
        )
    with pytest.raises(CodequantError, match="needs a GPU"):
        choose_placement(ActivationPolicy("device"), need_bytes=need, other_host_bytes=model, device=None)
    with pytest.raises(CodequantError, match="placement must be one of"):
        ActivationPolicy("ram")


def test_disk_store_maps_files_and_removes_them(tmp_path):
    store = ActivationStore("disk", folder=tmp_path)
    t = store.empty((3, 5, 4), torch.float16)
    t[1] = 2.5
    files = list(tmp_path.glob("activations-*/buffer0.bin"))
    assert len(files) == 1 and files[0].stat().st_size == 3 * 5 * 4 * 2
    assert (
        torch.from_file(str(files[0]), shared=False, size=60, dtype=torch.float16)
        .view(3, 5, 4)[1]
        .eq(2.5)
        .all()
    )
    store.close()
    assert not list(tmp_path.glob("activations-*"))
