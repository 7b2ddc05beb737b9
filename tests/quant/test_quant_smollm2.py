"""The embedded SmolLM2 weights lie on a Q4_1 grid: 4-bit group-32 min-max quantization reproduces them."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.mark.slow
@pytest.mark.ci
def test_rtn_4bit_group32_reproduces_smollm2_q41_weights():
    from codequant.models import load
    from codequant.quant.pipeline import find_decoder_layers
    from codequant.quant.rtn import RtnLinear, rtn_quantize_weight

    model = load("smollm2-135m").model
    _, layers = find_decoder_layers(model)
    linears = [m for layer in layers for m in layer.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 30 * 7
    err32 = err64 = norm = 0.0
    for lin in linears[::5]:
        w = lin.weight.detach()
        for gs in (32, 64):
            c, s, o = rtn_quantize_weight(w, 4, gs)
            e = float((RtnLinear(c, s, o, 4).dequantize() - w).norm() ** 2)
            if gs == 32:
                err32 += e
            else:
                err64 += e
        norm += float(w.norm() ** 2)
    assert (err32 / norm) ** 0.5 < 1e-6  # exact up to fp32 rounding
    assert (err64 / norm) ** 0.5 > 0.01  # misaligned groups are not on the grid
    assert torch.isfinite(torch.tensor(err64))
