"""RTN and the shared integer storage: error bounds, exact on-grid reconstruction, packing, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig
from codequant.quant.grid import pack_codes, unpack_codes
from codequant.quant.registry import linear_class, make_quantizer
from codequant.quant.rtn import RtnLinear, rtn_quantize_weight


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
