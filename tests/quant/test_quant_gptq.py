"""GPTQ: lower output error than RTN on correlated inputs, act-order layouts, on-grid weights, dead inputs, the
MSE-searched grid, static groups only with act-order, and the damping it reports."""

from __future__ import annotations

import pytest
import torch
from test_quant_rtn import heavy_tailed, q41_grid_weight
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig
from codequant.quant.gptq import GptqLinear, GptqResult, gptq_quantize_weight
from codequant.quant.grid import mse_params
from codequant.quant.options import GptqOptions
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


def fields(res: GptqResult) -> tuple:
    """(codes, scale, offset, g_idx) of a GPTQ result."""
    return res.codes, res.scale, res.offset, res.g_idx


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
        c, s, o, g = fields(gptq_quantize_weight(w, xtx, 3, group_size))
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
    c, s, o, g = fields(gptq_quantize_weight(w, xtx, 4, 32, GptqOptions(act_order=True, static_groups=True)))
    assert g is None
    dq = GptqLinear(c, s, o, 4).dequantize()
    # every column sits on the grid of its contiguous group, whose min-max was fixed from the original weights
    c2, s2, o2 = rtn_quantize_weight(w, 4, 32)
    assert torch.equal(s, s2) and torch.equal(o, o2)
    assert not torch.equal(dq, RtnLinear(c2, s2, o2, 4).dequantize())  # but the rounding used error feedback


def test_gptq_reproduces_on_grid_weights():
    w = q41_grid_weight(16, 128, seed=3)
    xtx = (correlated_inputs(512, 128).T @ correlated_inputs(512, 128)).double()
    c, s, o, _ = fields(gptq_quantize_weight(w, xtx @ xtx.T + torch.eye(128, dtype=torch.float64), 4, 32))
    assert (GptqLinear(c, s, o, 4).dequantize() - w).norm() / w.norm() < 1e-6


def test_dead_inputs_are_zeroed():
    w, x, _ = setup(4)
    x[:, 5] = 0
    c, s, o, _ = fields(gptq_quantize_weight(w, (x.T @ x).double(), 4, None))
    dq = GptqLinear(c, s, o, 4).dequantize()
    assert dq[:, 5].abs().max() <= s.float().max() / 2 + 1e-6  # rounded from 0
    assert torch.isfinite(dq).all()


@pytest.mark.parametrize(
    "bits, group_size, weight_ratio, output_ratio", [(2, 32, 0.6, 0.6), (3, None, 0.8, 0.9)]
)
def test_mse_clip_lowers_gptq_weight_and_output_error_on_heavy_tailed_weights(
    bits, group_size, weight_ratio, output_ratio
):
    # Measured mse/minmax ratios (weight MSE, output error) over seeds 2..5: 2-bit g32 0.46-0.50 / 0.48-0.52,
    # 3-bit per row 0.67-0.74 / 0.72-0.99. At 3-4 bits with groups of 32 the output error moves either way
    # (0.82-1.26): the search minimises the weights' p-norm error, not GPTQ's output objective.
    w = heavy_tailed(48, 128, seed=2)
    _, x, xtx = setup()
    err = {}
    for clip in ("minmax", "mse"):
        c, s, o, _ = fields(gptq_quantize_weight(w, xtx, bits, group_size, GptqOptions(clip=clip)))
        dq = GptqLinear(c, s, o, bits).dequantize()
        err[clip] = (float(((dq - w) ** 2).mean()), output_error(w, dq, x))
    assert err["mse"][0] < weight_ratio * err["minmax"][0], err
    assert err["mse"][1] < output_ratio * err["minmax"][1], err


def test_mse_clip_is_searched_once_per_group_on_the_weights_it_fixes():
    w = heavy_tailed(24, 128, seed=3)
    _, _, xtx = setup(3)
    # static groups: every grid is fixed up front on the original contiguous group, so it is exactly its search
    _, s, o, _ = fields(
        gptq_quantize_weight(w, xtx, 3, 32, GptqOptions(act_order=True, static_groups=True, clip="mse"))
    )
    for g in range(4):
        s2, o2 = mse_params(w[:, 32 * g : 32 * (g + 1)], 3)
        assert torch.equal(s[:, g : g + 1], s2) and torch.equal(o[:, g : g + 1], o2)
    # on-the-fly groups: the first group is searched on the untouched weights, later ones on updated weights
    _, s, o, _ = fields(gptq_quantize_weight(w, xtx, 3, 32, GptqOptions(clip="mse")))
    assert torch.equal(s[:, :1], mse_params(w[:, :32], 3)[0])
    assert not torch.equal(s[:, 1:2], mse_params(w[:, 32:64], 3)[0])


def test_static_groups_without_act_order_is_an_error():
    w, _, xtx = setup()
    with pytest.raises(CodequantError, match="only applies with act_order"):
        gptq_quantize_weight(w, xtx, 4, 32, GptqOptions(static_groups=True))
    with pytest.raises(CodequantError, match="--static-groups only applies with --act-order"):
        make_quantizer(QuantConfig("gptq", bits=4, group_size=32, options={"static_groups": True}))
    make_quantizer(
        QuantConfig("gptq", bits=4, group_size=32, options={"static_groups": True, "act_order": True})
    )


def rank_deficient_xtx(n=8, d=64, seed=0) -> torch.Tensor:
    """XTX of fewer tokens than inputs: singular, and in float64 its undamped Cholesky fails."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.T @ x


def test_damping_retry_is_reported_on_a_rank_deficient_xtx():
    xtx = rank_deficient_xtx()
    assert int(torch.linalg.cholesky_ex(xtx).info) > 0  # the first factorization (damping 0) fails
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    lin = nn.Linear(64, 16, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    q = make_quantizer(QuantConfig("gptq", bits=4, group_size=32, options={"percdamp": 0.0}))
    ql = q.quantize_linear("l", lin, xtx)
    assert ql.fit_info == {"damping": 0.0, "damping_used": 0.01, "retries": 1}  # 0 -> 0.01
    assert torch.isfinite(ql.dequantize()).all()
    # 1e-16 of the mean diagonal is below float64 resolution: H + damp I == H, so it fails too and grows x10
    info = gptq_quantize_weight(w, xtx, 4, 32, GptqOptions(percdamp=1e-16)).fit_info()
    assert info["retries"] >= 1
    assert info["damping_used"] == pytest.approx(1e-16 * 10 ** info["retries"], rel=1e-9, abs=0)
    # the default damping makes it positive definite at once
    ql = make_quantizer(QuantConfig("gptq", bits=4, group_size=32)).quantize_linear("l", lin, xtx)
    assert ql.fit_info == {"damping": 0.01, "damping_used": 0.01, "retries": 0}
    # damping too small to ever register in 5 retries: one clear error
    with pytest.raises(CodequantError, match="not positive definite"):
        gptq_quantize_weight(w, xtx, 4, 32, GptqOptions(percdamp=1e-30))
