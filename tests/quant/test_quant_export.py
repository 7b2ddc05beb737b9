"""Exports: the dequantized HF folder and the native checkpoint reproduce the quantized model exactly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig, QuantizedLinear
from codequant.quant.export import (
    accounting,
    export_dequantized,
    load_codequant_checkpoint,
    save_codequant_checkpoint,
)
from codequant.quant.pipeline import quantize_model
from codequant.quant.registry import make_quantizer


@pytest.fixture()
def quantized(tiny_llama):
    calib = torch.randint(3, 384, (8, 16), generator=torch.Generator().manual_seed(1))
    quantize_model(
        tiny_llama, calib, make_quantizer(QuantConfig("gptq", bits=3, group_size=16)), progress=False
    )
    return tiny_llama, calib


def test_dequantized_export_reloads_with_identical_logits(quantized, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, calib = quantized
    out = export_dequantized(model, tiny_tokenizer, tmp_path / "deq", info={"method": "gptq"})
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())  # the model itself stays quantized
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not any(isinstance(m, QuantizedLinear) for m in reloaded.modules())
    with torch.no_grad():
        assert torch.equal(reloaded(calib).logits, model(calib).logits)
    info = json.loads((out / "codequant.json").read_text())
    assert info["method"] == "gptq" and info["accounting"]["formula_bits_per_param"] == pytest.approx(
        3 + 32 / 16
    )
    assert AutoTokenizer.from_pretrained(out)("def f():").input_ids == tiny_tokenizer("def f():").input_ids


def test_native_checkpoint_roundtrip(quantized, tiny_tokenizer, tmp_path):
    model, calib = quantized
    save_codequant_checkpoint(model, tmp_path / "native", tokenizer=tiny_tokenizer, info={"method": "gptq"})
    again, info = load_codequant_checkpoint(tmp_path / "native")
    assert info["method"] == "gptq"
    kinds = {type(m).__name__ for m in again.modules() if isinstance(m, QuantizedLinear)}
    assert kinds == {"GptqLinear"}
    with torch.no_grad():
        assert torch.equal(again(calib).logits, model(calib).logits)
    assert accounting(again) == accounting(model)


def test_accounting_counts_fp_parts_once(quantized):
    model, _ = quantized
    acc = accounting(model)
    blocks = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, QuantizedLinear))
    fp = sum(p.numel() for n, p in model.named_parameters() if "_proj" not in n)
    assert acc["quantized_params"] == blocks and acc["fp_params"] == fp


def test_export_of_unquantized_model_is_an_error(tiny_llama, tiny_tokenizer, tmp_path):
    with pytest.raises(CodequantError, match="no quantized layers"):
        export_dequantized(tiny_llama, tiny_tokenizer, tmp_path)
    with pytest.raises(CodequantError, match="not a codequant checkpoint"):
        load_codequant_checkpoint(tmp_path)
    assert isinstance(tiny_llama.lm_head, nn.Linear)
