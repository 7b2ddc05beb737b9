"""Uniform (affine) quantization grids shared by RTN and GPTQ.

A group of weights is represented as `w ~= code * scale + offset` with `code` an integer in [0, 2^bits - 1]
and `scale`, `offset` stored in fp16. With `zero_point="float"` (default) the grid spans the group's
[min, max] exactly, which is the GGUF Q4_1 / Q8_1 layout: the embedded SmolLM2 weights lie on such a grid, so a
4-bit group-32 min-max quantizer reproduces them. `zero_point="int"` is the classic GPTQ layout
(`(code - zero) * scale` with an integer zero), kept for comparison.

Scale and offset are rounded to fp16 *before* codes are chosen, so the stored representation dequantizes to
exactly the values the quantizer measured its error against.
"""

from __future__ import annotations

import numpy as np
import torch

from codequant.errors import CodequantError

ZERO_POINTS = ("float", "int")


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
        raise CodequantError(f"{method}: --group-size must be a positive integer (or -1 for per-row), got {group_size!r}")
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
