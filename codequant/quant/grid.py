"""Uniform (affine) quantization grids shared by RTN and GPTQ.

A group of weights is represented as `w ~= code * scale + offset` with `code` an integer in [0, 2^bits - 1]
and `scale`, `offset` stored in fp16. With `zero_point="float"` (default) the grid spans the group's
[min, max] exactly, which is the GGUF Q4_1 / Q8_1 layout: the embedded SmolLM2 weights lie on such a grid, so a
4-bit group-32 min-max quantizer reproduces them. `zero_point="int"` is the classic GPTQ layout
(`(code - zero) * scale` with an integer zero), kept for comparison.

`clip="mse"` (RTN and GPTQ option) shrinks each group's range instead: `mse_params` searches the factor of
[min, max] that minimises the group's p-norm rounding error, as GPTQ's reference `mse` option does; outliers
are then clipped and the other weights get a finer grid.

Scale and offset are rounded to fp16 *before* codes are chosen, so the stored representation dequantizes to
exactly the values the quantizer measured its error against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from codequant.errors import CodequantError
from codequant.quant.options import CLIPS, ZERO_POINTS


def check_bits(bits: int | None, method: str) -> int:
    if bits is None:
        raise CodequantError(f"{method} needs --bits (2..8)")
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise CodequantError(f"{method}: bits must be an integer in 2..8, got {bits!r}")
    return bits


def check_group_size(group_size: int | None, method: str) -> int | None:
    """None, 0 or -1 mean one group per output row; otherwise a positive number of inputs per group."""
    if group_size is None or group_size in (0, -1):
        return None
    if not isinstance(group_size, int) or group_size < 1:
        raise CodequantError(
            f"{method}: --group-size must be a positive integer (or -1 for per-row), got {group_size!r}"
        )
    return group_size


def check_divides(group_size: int | None, in_features: int, name: str) -> None:
    if group_size is not None and in_features % group_size:
        fits = [g for g in (16, 32, 64, 96, 128, 192, 256) if in_features % g == 0] or [1]
        raise CodequantError(
            f"group size {group_size} does not divide the {in_features} inputs of {name}; "
            f"pick a divisor (e.g. {', '.join(map(str, fits))}) or -1 for per-row"
        )


def minmax_params(w: torch.Tensor, bits: int, zero_point: str = "float") -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and offset (fp16, shape [rows, 1]) of a min-max grid for each row of `w` ([rows, cols])."""
    if zero_point not in ZERO_POINTS:
        raise CodequantError(f"zero_point must be one of {ZERO_POINTS}, got {zero_point!r}")
    maxq = 2**bits - 1
    w = w.float()
    lo = w.amin(dim=1, keepdim=True)
    hi = w.amax(dim=1, keepdim=True)
    if zero_point == "int":  # the grid must contain 0
        lo = lo.clamp(max=0.0)
        hi = hi.clamp(min=0.0)
    scale = ((hi - lo) / maxq).half()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant group (or fp16 underflow)
    if zero_point == "int":
        zero = torch.round(-lo / scale.float()).clamp(0, maxq)
        offset = (-zero * scale.float()).half()
    else:
        offset = lo.clamp(-65504.0, 65504.0).half()
    return scale, offset


def shrink_factors(grid: int = 100, maxshrink: float = 0.8) -> torch.Tensor:
    """The factors GPTQ's reference `Quantizer.find_params(mse=True)` tries: 1, 1 - 1/grid, ... (int(maxshrink *
    grid) of them; 1.0 down to 0.21 with the defaults)."""
    n = max(1, int(maxshrink * grid))
    return 1.0 - torch.arange(n, dtype=torch.float32) / grid


def mse_params(
    w: torch.Tensor,
    bits: int,
    zero_point: str = "float",
    *,
    grid: int = 100,
    maxshrink: float = 0.8,
    norm: float = 2.4,
    max_elements: int = 1 << 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and offset (fp16, [rows, 1]) of a clipped grid per row of `w`: the row's [min, max] (with 0 inside for
    `zero_point="int"`) shrunk towards 0 by the factor of `shrink_factors` that minimises sum |w - q(w)|^norm.

    This is the `mse` option of GPTQ's reference `quant.py` (maxshrink .8, grid 100, norm 2.4). Every candidate
    is measured with its fp16-rounded scale and offset, as stored; factor 1.0 is the min-max grid and wins ties,
    so the result is never worse than `minmax_params` in that norm. Vectorised over rows and factors, in chunks
    of at most `max_elements` values.
    """
    if zero_point not in ZERO_POINTS:
        raise CodequantError(f"zero_point must be one of {ZERO_POINTS}, got {zero_point!r}")
    maxq = 2**bits - 1
    w = w.float()
    lo = w.amin(dim=1, keepdim=True)
    hi = w.amax(dim=1, keepdim=True)
    if zero_point == "int":
        lo = lo.clamp(max=0.0)
        hi = hi.clamp(min=0.0)
    factors = shrink_factors(grid, maxshrink).to(w.device)
    best_err = torch.full((w.shape[0], 1), float("inf"), device=w.device)
    best_scale = torch.ones_like(lo, dtype=torch.float16)
    best_offset = torch.zeros_like(lo, dtype=torch.float16)
    step = max(1, max_elements // max(1, w.numel()))
    for start in range(0, factors.numel(), step):
        p = factors[start : start + step].view(-1, 1, 1)  # [P, 1, 1]
        lo1, hi1 = p * lo, p * hi  # [P, rows, 1]
        scale = ((hi1 - lo1) / maxq).half()
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        if zero_point == "int":
            zero = torch.round(-lo1 / scale.float()).clamp(0, maxq)
            offset = (-zero * scale.float()).half()
        else:
            offset = lo1.clamp(-65504.0, 65504.0).half()
        s, o = scale.float(), offset.float()
        err = (w - o).div_(s).round_().clamp_(0, maxq).mul_(s).add_(o).sub_(w).abs_()  # |q(w) - w|, in place
        err = (err.square_() if norm == 2 else err.pow_(norm)).sum(dim=2, keepdim=True)  # [P, rows, 1]
        err_min, idx = err.min(dim=0)  # the first (largest) factor on ties
        better = err_min < best_err
        best_err = torch.where(better, err_min, best_err)
        best_scale = torch.where(better, scale.gather(0, idx[None]).squeeze(0), best_scale)
        best_offset = torch.where(better, offset.gather(0, idx[None]).squeeze(0), best_offset)
    return best_scale, best_offset


def grid_params(
    w: torch.Tensor, bits: int, zero_point: str = "float", clip: str = "minmax", **mse: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`minmax_params` or `mse_params` (keyword options grid, maxshrink, norm) by `clip`."""
    if clip == "mse":
        return mse_params(w, bits, zero_point, **mse)
    if clip != "minmax":
        raise CodequantError(f"clip must be one of {', '.join(CLIPS)}, got {clip!r}")
    return minmax_params(w, bits, zero_point)


def describe_clip(clip: str, knobs: dict[str, Any]) -> dict[str, Any]:
    """The clip fields of `describe()`: none for the default min-max, so earlier runs' fingerprints (and resumes)
    are unchanged."""
    return {} if clip == "minmax" else {"clip": clip, **knobs}


def quantize_codes(w: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int) -> torch.Tensor:
    """Nearest grid codes (int64) for `w` given broadcastable fp16 `scale`, `offset`."""
    maxq = 2**bits - 1
    return torch.round((w.float() - offset.float()) / scale.float()).clamp(0, maxq).long()


def dequantize_codes(codes: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    return codes.float() * scale.float() + offset.float()


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes (< 2^bits) into a dense little-endian bit stream of uint8 (what the checkpoint stores)."""
    flat = codes.reshape(-1).to(torch.uint8).numpy()
    planes = np.unpackbits(flat[:, None], axis=1, bitorder="little")[:, :bits]
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little").copy())


def unpack_codes(packed: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `pack_codes`: uint8 codes of the given shape."""
    numel = int(np.prod(shape))
    stream = np.unpackbits(packed.numpy(), bitorder="little", count=numel * bits).reshape(numel, bits)
    codes = np.packbits(stream, axis=1, bitorder="little").reshape(-1)
    return torch.from_numpy(codes.copy()).reshape(shape)
