"""What stays fp32/fp64 when the weights are half precision: Adam's fp32 master weights (block tuning, fine-tuning)
and the XTX accumulator (fp32 products, fp64 sums)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codequant.quant.capture import XtxCollector
from codequant.quant.master import MasterWeights


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_master_weights_keep_updates_that_half_precision_rounds_away(dtype):
    """lr 1e-4 on a weight of 1.0: each Adam step is below half the half-precision spacing at 1, so stepping the
    half tensor directly never moves it; the fp32 master accumulates the steps and the model weight follows."""
    direct = nn.Parameter(torch.ones(4, dtype=dtype))
    opt = torch.optim.Adam([direct], lr=1e-4)
    weight = nn.Parameter(torch.ones(4, dtype=dtype))
    masters = MasterWeights({"w": weight})
    assert masters.half == ["w"] and masters.masters["w"].dtype == torch.float32
    opt_m = torch.optim.Adam(masters.parameters(), lr=1e-4)
    for _ in range(40):
        for p, o in ((direct, opt), (weight, opt_m)):
            o.zero_grad(set_to_none=True)
            (p.float() * 1.0).sum().backward()  # gradient 1 everywhere
            if p is weight:
                masters.grads_to_masters()
                assert weight.grad is None and masters.masters["w"].grad.dtype == torch.float32
            o.step()
            if p is weight:
                masters.masters_to_model()
    assert torch.equal(direct.detach(), torch.ones(4, dtype=dtype))  # every update lost
    assert masters.masters["w"].detach() == pytest.approx(torch.full((4,), 1 - 40e-4), abs=1e-6)
    assert torch.equal(
        weight.detach(), masters.masters["w"].detach().to(dtype)
    )  # rounded once, from the master
    assert (weight.detach() < 1).all()


def test_fp32_parameters_are_their_own_masters():
    p = nn.Parameter(torch.ones(3))
    masters = MasterWeights({"p": p})
    assert masters.half == [] and masters.masters["p"] is p


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_xtx_of_half_activations_accumulates_in_fp64(dtype):
    """XTX of half-precision inputs equals the fp64 product of the same (rounded) inputs to fp32 precision, over
    many batches of large activations; a product or sum in the activations' dtype is off by ~1e-3 (fp16) to
    ~1e-2 (bf16), or overflows fp16."""
    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(64, 8).to(dtype)
    block = nn.Sequential(layer)
    batches = [(torch.randn(16, 32, 64, generator=gen) * 20).to(dtype) for _ in range(8)]
    collector = XtxCollector(block, [["0"]], stop=False)
    try:
        with torch.no_grad():
            for x in batches:
                block(x)
    finally:
        collector.remove()
    xtx = collector.xtx[0]
    exact = sum(x.double().reshape(-1, 64).T @ x.double().reshape(-1, 64) for x in batches)
    assert xtx.dtype == torch.float64
    assert float((xtx - exact).norm() / exact.norm()) < 1e-6
