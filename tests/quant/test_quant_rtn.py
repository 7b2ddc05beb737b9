"""RTN and the shared integer storage: error bounds, exact on-grid reconstruction, packing, state round trip, and
the MSE-searched (clipped) grid."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig
from codequant.quant.grid import minmax_params, mse_params, pack_codes, shrink_factors, unpack_codes
from codequant.quant.registry import linear_class, make_quantizer
from codequant.quant.rtn import RtnLinear, rtn_quantize_weight


def heavy_tailed(out_f: int, in_f: int, seed: int = 0, dof: int = 3) -> torch.Tensor:
    """Student-t weights (dof 3): a few large outliers per group stretch the min-max range, as in LLM weights."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(out_f, in_f, generator=g)
    chi2 = (torch.randn(dof, out_f, in_f, generator=g) ** 2).sum(0)
    return z / (chi2 / dof).sqrt()


def q41_grid_weight(out_f: int, in_f: int, block: int = 32, seed: int = 0) -> torch.Tensor:
    """Weights laid out like GGUF Q4_1: per block of 32 inputs, w = d * q + m with fp16 d, m and q in 0..15
    (each block uses both q=0 and q=15, as llama.cpp's min-max quantizer produces)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (out_f, in_f // block, block), generator=g)
    q[..., 0], q[..., 1] = 0, 15
    d = (torch.rand(out_f, in_f // block, 1, generator=g) * 0.01 + 1e-3).half().float()
    m = (-torch.rand(out_f, in_f // block, 1, generator=g) * 0.05).half().float()
    return (q * d + m).reshape(out_f, in_f)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [16, None])
def test_rtn_error_is_at_most_half_a_step(bits, group_size):
    w = torch.randn(24, 64)
    codes, scale, offset = rtn_quantize_weight(w, bits, group_size)
    q = RtnLinear(codes, scale, offset, bits)
    gs = 64 if group_size is None else group_size
    step = scale.float().repeat_interleave(gs, dim=1)
    err = (q.dequantize() - w).abs()
    # half a step, plus the fp16 rounding of offset/scale (tiny next to the step)
    assert torch.all(err <= step / 2 + 1e-3 * step + 1e-4)
    assert int(codes.max()) <= 2**bits - 1
    # more bits, less error
    if bits < 8:
        c8, s8, o8 = rtn_quantize_weight(w, 8, group_size)
        assert (RtnLinear(c8, s8, o8, 8).dequantize() - w).norm() < err.norm()


def test_rtn_reproduces_q41_grid_exactly():
    w = q41_grid_weight(16, 128)
    codes, scale, offset = rtn_quantize_weight(w, 4, 32)
    rel = (RtnLinear(codes, scale, offset, 4).dequantize() - w).norm() / w.norm()
    assert rel < 1e-6
    # a group of 64 straddles two Q4_1 blocks: no longer on the grid
    c, s, o = rtn_quantize_weight(w, 4, 64)
    assert (RtnLinear(c, s, o, 4).dequantize() - w).norm() / w.norm() > 1e-3


def test_int_zero_point_contains_zero_and_differs_from_float():
    w = torch.rand(8, 32) + 0.5  # all positive: the int grid must stretch down to 0
    c, s, o = rtn_quantize_weight(w, 3, None, zero_point="int")
    dq = RtnLinear(c, s, o, 3, zero_point="int").dequantize()
    cf, sf, of = rtn_quantize_weight(w, 3, None)
    assert (RtnLinear(cf, sf, of, 3).dequantize() - w).norm() < (dq - w).norm()


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_unpack_roundtrip(bits):
    codes = torch.randint(0, 2**bits, (7, 13), dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.numel() == -(-codes.numel() * bits // 8)
    assert torch.equal(unpack_codes(packed, bits, (7, 13)), codes)


def test_state_roundtrip_and_storage():
    lin = nn.Linear(64, 12, bias=True)
    q = make_quantizer(QuantConfig("rtn", bits=3, group_size=32)).quantize_linear("x", lin, None)
    again = linear_class(q.kind).from_state(q.state(), q.meta())
    assert torch.equal(again.dequantize(), q.dequantize())
    assert torch.equal(again.bias, q.bias)
    x = torch.randn(5, 64)
    assert torch.allclose(q(x), nn.functional.linear(x, q.dequantize(), lin.bias))
    cost = q.storage()
    assert cost.params == 64 * 12
    assert cost.formula_bits == 64 * 12 * 3 + 12 * 2 * 32  # codes + fp16 scale/offset per group
    assert cost.stored_bits == cost.formula_bits + 12 * 32  # + the fp32 bias
    assert sum(t.numel() * t.element_size() * 8 for t in q.state().values()) == cost.stored_bits


def test_dequantize_cache_follows_inplace_edits():
    lin = nn.Linear(32, 4, bias=False)
    q = make_quantizer(QuantConfig("rtn", bits=4, group_size=None)).quantize_linear("x", lin, None)
    before = q.dequantize().clone()
    with torch.no_grad():
        q.scale.mul_(2)
    assert not torch.equal(q.dequantize(), before)


@pytest.mark.parametrize(
    "config, message",
    [
        (QuantConfig("rtn", bits=9), "2..8"),
        (QuantConfig("rtn", bits=None), "needs --bits"),
        (QuantConfig("gptq", bits=1), "2..8"),
        (QuantConfig("rtn", bits=4, group_size=-5), "group-size"),
        (QuantConfig("nope", bits=4), "unknown quantization method"),
        (QuantConfig("rtn", bits=4, options={"zero_point": "odd"}), "zero_point"),
        (QuantConfig("rtn", bits=4, options={"clip": "percentile"}), "clip must be one of minmax, mse"),
        (QuantConfig("gptq", bits=4, options={"clip": "mse", "clip_maxshrink": 1.5}), "clip_maxshrink"),
        (
            QuantConfig("gptq", bits=4, group_size=32, options={"static_groups": True}),
            "only applies with --act-order",
        ),
    ],
)
def test_bad_specs_are_clear_errors(config, message):
    with pytest.raises(CodequantError, match=message):
        make_quantizer(config)


def test_group_size_must_divide_inputs():
    q = make_quantizer(QuantConfig("rtn", bits=4, group_size=48))
    with pytest.raises(CodequantError, match="does not divide the 64 inputs"):
        q.quantize_linear("blk.q_proj", nn.Linear(64, 8), None)


def test_trainable_scales_get_gradients_every_step_and_reload_in_fp32():
    lin = nn.Linear(32, 4, bias=False)
    q = make_quantizer(QuantConfig("rtn", bits=4, group_size=16)).quantize_linear("x", lin, None)
    scale = q._buffers.pop("scale")
    q.register_parameter("scale", nn.Parameter(scale.float()))
    x = torch.randn(3, 32)
    for _ in range(2):  # a cached weight would fail the second backward
        q.scale.grad = None
        q(x).pow(2).sum().backward()
        assert q.scale.grad is not None and q.scale.grad.abs().sum() > 0
    again = linear_class("rtn").from_state(q.state(), q.meta())
    assert again.scale.dtype == torch.float32 and torch.equal(again.dequantize(), q.dequantize().detach())


def _pnorm_error(w: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int, norm: float = 2.4):
    q = (
        torch.round((w - offset.float()) / scale.float()).clamp(0, 2**bits - 1) * scale.float()
        + offset.float()
    )
    return (q - w).abs().pow(norm).sum(1)


@pytest.mark.parametrize("zero_point", ["float", "int"])
def test_mse_grid_search_shrinks_heavy_tailed_ranges_and_never_loses(zero_point):
    rows = heavy_tailed(64, 32).reshape(-1, 32)
    s0, o0 = minmax_params(rows, 3, zero_point)
    s1, o1 = mse_params(rows, 3, zero_point)
    e0, e1 = _pnorm_error(rows, s0, o0, 3), _pnorm_error(rows, s1, o1, 3)
    assert torch.all(e1 <= e0 + 1e-6 * e0)  # factor 1.0 (min-max) is a candidate
    assert float(e1.sum()) < 0.95 * float(e0.sum())  # measured 0.86 (float) / 0.89 (int)
    assert float((s1.float() < s0.float() * 0.99).float().mean()) > 0.5  # most ranges shrank
    # the search is exhaustive over its factors: no factor of the grid beats the one chosen
    lo, hi = rows.amin(1, keepdim=True), rows.amax(1, keepdim=True)
    if zero_point == "int":
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    for p in shrink_factors()[::7]:
        scale = ((p * hi - p * lo) / 7).half()
        if zero_point == "float":
            offset = (p * lo).half()
        else:
            offset = (-torch.round(-p * lo / scale.float()) * scale.float()).half()
        assert torch.all(e1 <= _pnorm_error(rows, scale, offset, 3) + 1e-5)


def test_mse_grid_keeps_on_grid_weights_exact_and_chunks_alike():
    w = q41_grid_weight(16, 128)
    groups = w.reshape(-1, 32)
    s, o = mse_params(groups, 4)
    assert torch.equal(s, minmax_params(groups, 4)[0]) and torch.equal(o, minmax_params(groups, 4)[1])
    rows = heavy_tailed(40, 24, seed=5)
    assert all(
        torch.equal(a, b)
        for a, b in zip(mse_params(rows, 2), mse_params(rows, 2, max_elements=24 * 40 * 3), strict=True)
    )


@pytest.mark.parametrize(
    "bits, group_size, ratio", [(2, 32, 0.8), (3, 32, 0.93), (4, 32, 0.98), (3, None, 0.85)]
)
def test_rtn_mse_clip_lowers_the_weight_error_on_heavy_tailed_weights(bits, group_size, ratio):
    # measured mse / minmax weight MSE: 0.66, 0.88, 0.96, 0.73
    w = heavy_tailed(96, 128, seed=1)
    errors = {}
    for clip in ("minmax", "mse"):
        q = make_quantizer(QuantConfig("rtn", bits=bits, group_size=group_size, options={"clip": clip}))
        lin = nn.Linear(128, 96, bias=False)
        with torch.no_grad():
            lin.weight.copy_(w)
        errors[clip] = float(((q.quantize_linear("x", lin).dequantize() - w) ** 2).mean())
        assert ("clip" in q.describe()) == (
            clip == "mse"
        )  # the default leaves earlier fingerprints unchanged
    assert errors["mse"] < ratio * errors["minmax"], errors
