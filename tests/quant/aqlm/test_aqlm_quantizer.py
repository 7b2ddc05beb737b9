"""AQLM through the real pipeline on a tiny Llama: every block linear quantized, block tuning, state round trip,
determinism, and the aqlm-format export reloading through transformers with identical logits."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from codequant.errors import CodequantError
from codequant.quant.aqlm import AqlmLinear, AqlmQuantizer, export_aqlm
from codequant.quant.base import QuantConfig
from codequant.quant.pipeline import find_decoder_layers, quantize_model
from codequant.quant.registry import linear_class


@pytest.fixture(scope="module")
def calib():
    return torch.randint(3, 384, (8, 16), generator=torch.Generator().manual_seed(0))


def aqlm(m=2, b=4, g=8, **options) -> AqlmQuantizer:
    options = {"max_rounds": 2, "tune_epochs": 1, **options}
    return AqlmQuantizer(
        QuantConfig("aqlm", num_codebooks=m, codebook_bits=b, group_size=g, seed=0, options=options)
    )


def codes_of(model):
    return {n: m.codes.clone() for n, m in model.named_modules() if isinstance(m, AqlmLinear)}


def test_pipeline_quantizes_every_block_linear_and_tunes(tiny_llama, calib):
    with torch.no_grad():
        ref = tiny_llama(calib).logits
    report = quantize_model(tiny_llama, calib, aqlm(), progress=False)
    _, layers = find_decoder_layers(tiny_llama)
    quant = [m for layer in layers for m in layer.modules() if isinstance(m, AqlmLinear)]
    assert len(quant) == 14 and not isinstance(tiny_llama.lm_head, AqlmLinear)
    assert all(layer["rel_output_error"] < 0.5 for layer in report.layers)
    assert report.calibration["sequential"] is False  # AQLM's default: every XTX of a block from one fp pass
    for block in report.blocks:
        assert block["tune"]["select_after"] <= block["tune"]["select_before"] * (1 + 1e-3)
    with torch.no_grad():
        out = tiny_llama(calib).logits
    assert float(((out - ref) ** 2).sum() / (ref**2).sum()) < 0.2
    # formula bits: 2 codes x 4 bits per 8 weights = 1 bit, plus codebooks (2*16*8 fp16) and scales per layer
    q = quant[0]
    assert (
        q.storage().formula_bits
        == q.out_features * q.in_features // 8 * 8 + 2 * 16 * 8 * 16 + q.out_features * 16
    )
    # state round trip through the registry (what checkpoints and resume use)
    cls = linear_class("aqlm")
    again = cls.from_state(q.state(), q.meta())
    assert torch.equal(again.dequantize(), q.dequantize()) and torch.equal(again.codes, q.codes)


def test_same_seed_same_codes(tiny_llama_dir, calib):
    runs = []
    for _ in range(2):
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        quantize_model(model, calib, aqlm(tune_epochs=0), progress=False)
        runs.append(codes_of(model))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("bits", [8, 4])  # 8: aqlm's numba LUT kernel; 4: its dequantize-then-matmul path
def test_export_reloads_with_identical_logits(tiny_llama, tiny_tokenizer, calib, tmp_path, bits):
    numba = pytest.importorskip("numba")
    pytest.importorskip("aqlm")
    quantize_model(tiny_llama, calib, aqlm(m=2, b=bits, g=8, tune_epochs=0), progress=False)
    with torch.no_grad():
        ours = tiny_llama(calib[:2]).logits.clone()
    folder = export_aqlm(tiny_llama, tiny_tokenizer, tmp_path / "aqlm")
    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)  # aqlm's numba kernel accumulates racily across threads
    try:
        loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        kinds = {type(m).__name__ for m in loaded.model.layers.modules()}
        assert "QuantizedLinear" in kinds and "Linear" not in kinds
        assert type(loaded.lm_head).__name__ == "Linear"
        with torch.no_grad():
            theirs = torch.cat(
                [loaded(calib[i : i + 1]).logits for i in range(2)]
            )  # one row: the gemv path too
            batched = loaded(calib[:2]).logits
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(numba_threads)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(batched, ours, rtol=1e-4, atol=1e-4)


def test_codequant_load_of_an_aqlm_export_uses_one_numba_thread(tiny_llama, tiny_tokenizer, calib, tmp_path):
    """aqlm's CPU LUT kernel races across numba threads; codequant.models.load must not let it."""
    numba = pytest.importorskip("numba")
    pytest.importorskip("aqlm")
    from codequant.models import load

    quantize_model(tiny_llama, calib, aqlm(m=2, b=8, g=8, tune_epochs=0), progress=False)
    with torch.no_grad():
        ours = tiny_llama(calib[:2]).logits.clone()
    folder = export_aqlm(tiny_llama, tiny_tokenizer, tmp_path / "aqlm")
    before = numba.get_num_threads()
    try:
        loaded = load(str(folder))
        assert numba.get_num_threads() == 1
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(calib[:2]).logits, ours, rtol=1e-4, atol=1e-4)
    finally:
        numba.set_num_threads(before)


def test_export_needs_aqlm_layers(tiny_llama, tiny_tokenizer, tmp_path):
    with pytest.raises(CodequantError, match="no AQLM"):
        export_aqlm(tiny_llama, tiny_tokenizer, tmp_path / "x")


def test_quantizer_rejects_bad_specs():
    with pytest.raises(CodequantError, match="resolve"):
        AqlmQuantizer(QuantConfig("aqlm", bits=2))
    with pytest.raises(CodequantError, match="1..16"):
        aqlm(b=20)
    with pytest.raises(CodequantError, match="beam_size"):
        aqlm(beam_size=0)
