"""Held-out errors of the block walk: every layer and block is measured on the calibration set's validation rows
as well as on its training rows, and the two are computed from the right rows."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from transformers import AutoModelForCausalLM

from codequant.calibration import default_val_samples, resolve_val_samples
from codequant.quant.base import QuantConfig, QuantizedLinear
from codequant.quant.pipeline import WalkOptions, quantize_model
from codequant.quant.progress import QuantProgress
from codequant.quant.registry import make_quantizer
from codequant.quant.run import error_summary


@dataclass
class Split:
    train: torch.Tensor
    val: torch.Tensor


def rows(n: int, seed: int) -> torch.Tensor:
    return torch.randint(3, 384, (n, 24), generator=torch.Generator().manual_seed(seed))


def gptq(**options):
    return make_quantizer(QuantConfig("gptq", bits=3, group_size=32, options=options))


def test_heldout_equals_in_sample_when_the_rows_are_the_same(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    train = rows(8, 0)
    # one pass: every XTX from the fp block, as the held-out XTX is, so the same rows must give the same numbers
    report = quantize_model(
        model, Split(train, train.clone()), gptq(), WalkOptions(sequential=False), progress=False
    )
    for layer in report.layers:
        assert layer["rel_output_error_heldout"] == pytest.approx(layer["rel_output_error"], rel=1e-9)
    for block in report.blocks:
        assert block["rel_output_mse_heldout"] == pytest.approx(block["rel_output_mse"], rel=1e-6)
    assert report.calibration["val_rows"] == 8


def test_heldout_rows_give_their_own_errors_and_do_not_steer_the_fit(tiny_llama_dir):
    def run(val):
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        calibration = rows(8, 0) if val is None else Split(rows(8, 0), val)
        report = quantize_model(model, calibration, gptq(), progress=False)
        weights = {n: m.dequantize() for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}
        return report, weights

    plain, w_plain = run(None)
    held, w_held = run(rows(6, 1))
    assert all(torch.equal(w_plain[n], w_held[n]) for n in w_plain)  # GPTQ never looks at held-out rows
    assert all("rel_output_error_heldout" not in layer for layer in plain.layers)
    diffs = [abs(layer["rel_output_error_heldout"] - layer["rel_output_error"]) for layer in held.layers]
    assert max(diffs) > 1e-4  # other rows, other errors
    assert all(layer["rel_output_error_heldout"] > 0 for layer in held.layers)
    assert all(b["rel_output_mse_heldout"] > 0 for b in held.blocks)


def test_progress_events_reach_a_callback(tiny_llama):
    events: list[QuantProgress] = []
    quantize_model(
        tiny_llama,
        Split(rows(4, 0), rows(2, 1)),
        make_quantizer(QuantConfig("rtn", bits=4, group_size=32)),
        progress=events.append,
    )
    done = [e for e in events if e.stage == "done"]
    assert [e.block for e in done] == [0, 1] and all(e.blocks == 2 for e in events)
    assert "heldout_mse" in done[0].metrics and "block 1/2 done" in done[0].describe()


def test_error_summary_shows_heldout_beside_in_sample():
    result = {
        "layers": [
            {"rel_output_error": 0.01, "rel_output_error_heldout": 0.02},
            {"rel_output_error": 0.03, "rel_output_error_heldout": 0.04},
        ],
        "blocks": [{"rel_output_mse": 0.1, "rel_output_mse_heldout": 0.2}],
    }
    lines = error_summary(result)
    assert lines == [
        "layer output error (mean over layers): in-sample 0.02, held-out 0.03",
        "block output error (last block): in-sample 0.1, held-out 0.2",
    ]
    no_val = error_summary({"layers": [{"rel_output_error": 0.01}], "blocks": []})
    assert "no held-out rows" in no_val[0]


@pytest.mark.parametrize(("samples", "expected"), [(1, 0), (2, 1), (16, 2), (128, 16), (1000, 125)])
def test_default_validation_rows_scale_with_the_sample_count(samples, expected):
    assert default_val_samples(samples) == expected
    assert resolve_val_samples(samples, None) == expected
    assert resolve_val_samples(samples, 3) == 3
