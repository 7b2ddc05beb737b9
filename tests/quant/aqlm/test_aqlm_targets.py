"""`tune_targets: model` on a tiny random Llama: block tuning is handed the fp model's own hidden states after each
block (not the fp block on the block's perturbed inputs), each block's reported error is the quantized model's
error at that depth, a resumed walk carries the fp states on, and the option is checked and fingerprinted."""

from __future__ import annotations

import pytest
import torch

from codequant.errors import CodequantError
from codequant.quant.aqlm import AqlmQuantizer
from codequant.quant.base import QuantConfig
from codequant.quant.blocks import relative_mse
from codequant.quant.capture import capture_layer_kwargs
from codequant.quant.pipeline import find_decoder_layers, quantize_model


def config(targets: str | None) -> QuantConfig:
    options = {"max_rounds": 1, "tune_epochs": 1}
    if targets is not None:
        options["tune_targets"] = targets
    return QuantConfig("aqlm", num_codebooks=1, codebook_bits=4, group_size=8, seed=0, options=options)


class _Spy(AqlmQuantizer):
    """A real AQLM quantizer that records what block tuning is asked to match."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def tune_block(self, block, inputs, targets, block_kwargs, val_inputs=None, val_targets=None):
        self.seen.append((inputs.clone(), targets.clone()))
        return super().tune_block(block, inputs, targets, block_kwargs, val_inputs, val_targets)


class _Crash(AqlmQuantizer):
    def quantize_linear(self, name, linear, xtx):
        if ".layers.1." in name:
            raise KeyboardInterrupt
        return super().quantize_linear(name, linear, xtx)


@pytest.fixture()
def fresh(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    return lambda: AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()


@pytest.fixture(scope="module")
def calib():
    return torch.randint(3, 384, (12, 24), generator=torch.Generator().manual_seed(0))


def block_outputs(model, tokens) -> list[torch.Tensor]:
    """Each decoder block's output hidden states (before the final norm) for `tokens`."""
    _, layers = find_decoder_layers(model)
    seen: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_hook(
            lambda _m, _a, out: seen.append(out[0] if isinstance(out, tuple) else out)
        )
        for layer in layers
    ]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for h in hooks:
            h.remove()
    return [t.detach().clone() for t in seen]


def test_model_targets_are_the_fp_models_states_and_the_error_is_the_models(fresh, calib):
    fp_states = block_outputs(fresh(), calib)
    model, spy = fresh(), _Spy(config("model"))
    report = quantize_model(model, calib, spy, progress=False)
    assert report.calibration["targets"] == "model"
    assert [torch.allclose(t, s, atol=1e-5) for (_, t), s in zip(spy.seen, fp_states, strict=True)] == [
        True
    ] * 2
    # block 1's inputs are the quantized block 0's outputs, not the fp model's
    assert not torch.allclose(spy.seen[1][0], fp_states[0], atol=1e-4)
    # each block's reported error is the quantized model's error at that depth, against the fp model
    q_states = block_outputs(model, calib)
    for block, q, fp in zip(report.blocks, q_states, fp_states, strict=True):
        assert block["rel_output_mse"] == pytest.approx(relative_mse(q.double(), fp.double()), rel=1e-4)


def test_block_targets_are_the_fp_block_on_its_perturbed_inputs(fresh, calib):
    fp_states = block_outputs(fresh(), calib)
    spy = _Spy(config(None))
    report = quantize_model(fresh(), calib, spy, progress=False)
    assert report.calibration["targets"] == "block"
    assert torch.allclose(spy.seen[0][1], fp_states[0], atol=1e-5)  # block 0 sees the fp inputs
    assert not torch.allclose(spy.seen[1][1], fp_states[1], atol=1e-4)
    fp = fresh()
    layers = find_decoder_layers(fp)[1]
    kwargs = capture_layer_kwargs(fp, layers, calib[:1])[1]
    with torch.no_grad():
        expected = layers[1](spy.seen[1][0], **kwargs)
    expected = expected[0] if isinstance(expected, tuple) else expected
    assert torch.allclose(spy.seen[1][1], expected, atol=1e-5)


def test_resume_with_model_targets_gives_the_uninterrupted_result(fresh, calib, tmp_path):
    straight = fresh()
    quantize_model(straight, calib, AqlmQuantizer(config("model")), progress=False)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        quantize_model(fresh(), calib, _Crash(config("model")), checkpoint_dir=ckpt, progress=False)
    resumed = fresh()
    report = quantize_model(
        resumed, calib, AqlmQuantizer(config("model")), checkpoint_dir=ckpt, progress=False
    )
    assert [b["resumed"] for b in report.blocks] == [True, False]
    assert "rel_output_mse" in report.blocks[0]  # the fp model's states are known for a resumed block too
    with torch.no_grad():
        assert torch.equal(resumed(calib).logits, straight(calib).logits)
    # a checkpoint of the other targets is not resumed from
    with pytest.raises(CodequantError):
        quantize_model(fresh(), calib, AqlmQuantizer(config("block")), checkpoint_dir=ckpt, progress=False)


def test_unknown_targets_are_refused_by_name():
    with pytest.raises(CodequantError, match="tune_targets"):
        AqlmQuantizer(config("teacher"))
