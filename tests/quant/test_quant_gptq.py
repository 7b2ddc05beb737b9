"""GPTQ: lower output error than RTN on correlated inputs, act-order layouts, on-grid weights, dead inputs."""

from __future__ import annotations

import torch
from test_quant_rtn import q41_grid_weight
from torch import nn

from codequant.quant.base import QuantConfig
from codequant.quant.gptq import GptqLinear, gptq_quantize_weight
from codequant.quant.registry import linear_class, make_quantizer
from codequant.quant.rtn import RtnLinear, rtn_quantize_weight


def correlated_inputs(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Inputs with strongly correlated features and very different scales (as in LLM activations)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d // 4, generator=g)
    mix = torch.randn(d // 4, d, generator=g)
    scales = torch.logspace(-1, 1, d)[torch.randperm(d, generator=g)]
    return (z @ mix + 0.1 * torch.randn(n, d, generator=g)) * scales


def output_error(w: torch.Tensor, dq: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ (w - dq).T) ** 2).sum() / ((x @ w.T) ** 2).sum())


def setup(seed=0):
    torch.manual_seed(seed)
    w = torch.randn(48, 128)
    x = correlated_inputs(2048, 128, seed)
    return w, x, (x.T @ x).double()


def test_gptq_beats_rtn_at_3_bits_on_correlated_inputs():
    w, x, xtx = setup()
    for group_size in (32, None):
        c, s, o = rtn_quantize_weight(w, 3, group_size)
        rtn = output_error(w, RtnLinear(c, s, o, 3).dequantize(), x)
        c, s, o, g = gptq_quantize_weight(w, xtx, 3, group_size)
        assert g is None
        gptq = output_error(w, GptqLinear(c, s, o, 3).dequantize(), x)
        assert gptq < 0.6 * rtn, (group_size, gptq, rtn)


def test_act_order_groups_follow_activation_order_and_roundtrip():
    w, x, xtx = setup(1)
    q = make_quantizer(QuantConfig("gptq", bits=3, group_size=32, options={"act_order": True}))
    lin = nn.Linear(128, 48, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    ql = q.quantize_linear("l", lin, xtx)
    assert ql.g_idx is not None
    perm = torch.argsort(torch.diag(xtx), descending=True, stable=True)
    # the first 32 columns in activation order share group 0
    assert torch.all(ql.g_idx[perm[:32]] == 0) and torch.all(ql.g_idx[perm[32:64]] == 1)
    again = linear_class("gptq").from_state(ql.state(), ql.meta())
    assert torch.equal(again.dequantize(), ql.dequantize())
    assert ql.storage().stored_bits > ql.storage().formula_bits  # g_idx costs storage
    c, s, o = rtn_quantize_weight(w, 3, 32)
    assert output_error(w, ql.dequantize(), x) < output_error(w, RtnLinear(c, s, o, 3).dequantize(), x)


def test_static_groups_keep_contiguous_layout():
    w, x, xtx = setup(2)
    c, s, o, g = gptq_quantize_weight(w, xtx, 4, 32, act_order=True, static_groups=True)
    assert g is None
    dq = GptqLinear(c, s, o, 4).dequantize()
    # every column sits on the grid of its contiguous group, whose min-max was fixed from the original weights
    c2, s2, o2 = rtn_quantize_weight(w, 4, 32)
    assert torch.equal(s, s2) and torch.equal(o, o2)
    assert not torch.equal(dq, RtnLinear(c2, s2, o2, 4).dequantize())  # but the rounding used error feedback


def test_gptq_reproduces_on_grid_weights():
    w = q41_grid_weight(16, 128, seed=3)
    xtx = (correlated_inputs(512, 128).T @ correlated_inputs(512, 128)).double()
    c, s, o, _ = gptq_quantize_weight(w, xtx @ xtx.T + torch.eye(128, dtype=torch.float64), 4, 32)
    assert (GptqLinear(c, s, o, 4).dequantize() - w).norm() / w.norm() < 1e-6


def test_dead_inputs_are_zeroed():
    w, x, _ = setup(4)
    x[:, 5] = 0
    c, s, o, _ = gptq_quantize_weight(w, (x.T @ x).double(), 4, None)
    dq = GptqLinear(c, s, o, 4).dequantize()
    assert dq[:, 5].abs().max() <= s.float().max() / 2 + 1e-6  # rounded from 0
    assert torch.isfinite(dq).all()
