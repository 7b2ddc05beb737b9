"""The block walk over a tiny Llama: what gets quantized, GPTQ vs RTN, determinism, checkpoint + resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig, QuantizedLinear
from codequant.quant.gptq import GptqQuantizer
from codequant.quant.pipeline import WalkOptions, find_decoder_layers, linear_groups, quantize_model
from codequant.quant.registry import make_quantizer


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, 384, (12, 24), generator=g)


def rel_logit_error(model, ref_logits, tokens):
    with torch.no_grad():
        out = model(tokens).logits
    return float(((out - ref_logits) ** 2).sum() / (ref_logits**2).sum())


def weights(model):
    return {n: m.dequantize().clone() for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def test_quantizes_every_block_linear_and_only_those(tiny_llama, calib):
    emb = tiny_llama.get_input_embeddings().weight.clone()
    head = tiny_llama.lm_head.weight.clone()
    report = quantize_model(
        tiny_llama, calib, make_quantizer(QuantConfig("rtn", bits=4, group_size=32)), progress=False
    )
    _, layers = find_decoder_layers(tiny_llama)
    for layer in layers:
        assert not any(type(m) is nn.Linear for m in layer.modules())
    assert type(tiny_llama.lm_head) is nn.Linear and torch.equal(tiny_llama.lm_head.weight, head)
    assert torch.equal(tiny_llama.get_input_embeddings().weight, emb)
    assert len(report.layers) == 14 and report.complete
    assert report.totals()["formula_bits_per_param"] == pytest.approx(4 + 32 / 32)
    assert all(b["rel_output_mse"] < 0.1 for b in report.blocks)


def test_linear_groups_follow_shared_inputs(tiny_llama, calib):
    _, layers = find_decoder_layers(tiny_llama)
    kwargs = {
        "position_embeddings": tiny_llama.model.rotary_emb(torch.zeros(1, 24, 64), torch.arange(24)[None])
    }
    groups = linear_groups(layers[0], torch.randn(1, 24, 64), kwargs)
    assert groups == [
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        ["self_attn.o_proj"],
        ["mlp.gate_proj", "mlp.up_proj"],
        ["mlp.down_proj"],
    ]


def test_gptq_beats_rtn_end_to_end_and_is_deterministic(tiny_llama_dir, calib):
    from transformers import AutoModelForCausalLM

    def fresh():
        return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()

    ref = fresh()
    with torch.no_grad():
        ref_logits = ref(calib).logits
    errors = {}
    for method in ("rtn", "gptq"):
        model = fresh()
        quantize_model(
            model, calib, make_quantizer(QuantConfig(method, bits=3, group_size=32)), progress=False
        )
        errors[method] = rel_logit_error(model, ref_logits, calib)
        if method == "gptq":
            first = weights(model)
    assert errors["gptq"] < errors["rtn"], errors
    again = fresh()
    report = quantize_model(
        again, calib, make_quantizer(QuantConfig("gptq", bits=3, group_size=32)), progress=False
    )
    assert all(torch.equal(first[n], w) for n, w in weights(again).items())
    assert all("rel_output_error" in layer for layer in report.layers)
    assert report.calibration["sequential"] is True  # GPTQ's default is true-sequential
    # non-sequential collection works too and differs (XTX from the fp block only)
    flat = fresh()
    quantize_model(
        flat,
        calib,
        make_quantizer(QuantConfig("gptq", bits=3, group_size=32)),
        WalkOptions(sequential=False),
        progress=False,
    )
    assert any(not torch.equal(first[n], w) for n, w in weights(flat).items())


class _CrashingGptq(GptqQuantizer):
    """A real GPTQ that dies when it reaches block 1 (as a killed process would)."""

    def quantize_linear(self, name, linear, xtx=None):
        if ".layers.1." in name:
            raise KeyboardInterrupt
        return super().quantize_linear(name, linear, xtx)


def test_resume_after_a_crash_gives_the_uninterrupted_result(tiny_llama_dir, calib, tmp_path):
    from transformers import AutoModelForCausalLM

    def fresh():
        return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()

    config = QuantConfig("gptq", bits=3, group_size=32, options={"act_order": True})
    straight = fresh()
    quantize_model(straight, calib, make_quantizer(config), progress=False)

    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        quantize_model(fresh(), calib, _CrashingGptq(config), checkpoint_dir=ckpt, progress=False)
    assert (ckpt / "block_0000.safetensors").exists() and not (ckpt / "block_0001.safetensors").exists()

    resumed = fresh()
    report = quantize_model(resumed, calib, make_quantizer(config), checkpoint_dir=ckpt, progress=False)
    assert [b["resumed"] for b in report.blocks] == [True, False]
    assert len(report.layers) == 14
    ref = weights(straight)
    assert all(torch.equal(ref[n], w) for n, w in weights(resumed).items())
    with torch.no_grad():
        assert torch.equal(resumed(calib).logits, straight(calib).logits)


def test_limited_run_then_resume_and_config_mismatch(tiny_llama_dir, calib, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    config = QuantConfig("rtn", bits=4, group_size=16)
    first = quantize_model(
        model,
        calib,
        make_quantizer(config),
        WalkOptions(max_blocks=1),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert not first.complete and len(first.blocks) == 1
    other = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with pytest.raises(CodequantError, match="different run"):
        quantize_model(
            other,
            calib,
            make_quantizer(QuantConfig("rtn", bits=3, group_size=16)),
            checkpoint_dir=tmp_path,
            progress=False,
        )


def test_bad_group_size_fails_before_any_work(tiny_llama, calib):
    with pytest.raises(
        CodequantError, match="does not divide the 64 inputs of model.layers.0.self_attn.q_proj"
    ):
        quantize_model(
            tiny_llama, calib, make_quantizer(QuantConfig("gptq", bits=4, group_size=48)), progress=False
        )
