"""Round-to-nearest: the calibration-free baseline.

Each group of `group_size` consecutive inputs of a row gets its own grid (see `grid`): min-max by default, or
with `clip="mse"` the range shrink that minimises the group's p-norm error; every weight is rounded to the
nearest point. It ignores the calibration activations, so the pipeline skips collecting them
(`needs_xtx = False`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from codequant.quant.base import QuantConfig, Quantizer
from codequant.quant.grid import (
    check_bits,
    check_divides,
    check_group_size,
    describe_clip,
    grid_params,
    quantize_codes,
)
from codequant.quant.intlinear import GroupedIntLinear
from codequant.quant.options import RtnOptions, parse_options
from codequant.quant.registry import register_linear


@register_linear
class RtnLinear(GroupedIntLinear):
    kind: ClassVar[str] = "rtn"


def rtn_quantize_weight(
    weight: torch.Tensor,
    bits: int,
    group_size: int | None,
    zero_point: str = "float",
    *,
    clip: str = "minmax",
    clip_grid: int = 100,
    clip_maxshrink: float = 0.8,
    clip_norm: float = 2.4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes [out, in] (uint8), scale and offset [out, groups] (fp16) of a group-wise RTN: min-max grids, or
    with `clip="mse"` grids whose range shrink minimises each group's |error|^clip_norm (`grid.mse_params`)."""
    out_f, in_f = weight.shape
    gs = in_f if group_size is None else group_size
    check_divides(gs, in_f, "this weight")
    groups = weight.float().reshape(out_f * (in_f // gs), gs)
    scale, offset = grid_params(
        groups, bits, zero_point, clip, grid=clip_grid, maxshrink=clip_maxshrink, norm=clip_norm
    )
    codes = quantize_codes(groups, scale, offset, bits)
    n_groups = in_f // gs
    return (
        codes.reshape(out_f, in_f).to(torch.uint8),
        scale.reshape(out_f, n_groups),
        offset.reshape(out_f, n_groups),
    )


class RtnQuantizer(Quantizer):
    """Options: `RtnOptions` (QuantConfig.options, parsed and checked by `parse_options`)."""

    method: ClassVar[str] = "rtn"
    needs_xtx: ClassVar[bool] = False

    def __init__(self, config: QuantConfig):
        super().__init__(config)
        self.bits = check_bits(config.bits, self.method)
        self.group_size = check_group_size(config.group_size, self.method)
        self.options: RtnOptions = parse_options(self.method, config.options)

    def check_linear(self, name: str, linear: nn.Linear) -> None:
        check_divides(self.group_size, linear.in_features, name)

    def quantize_linear(self, name: str, linear: nn.Linear, xtx: torch.Tensor | None = None) -> RtnLinear:
        self.check_linear(name, linear)
        codes, scale, offset = rtn_quantize_weight(
            linear.weight.detach(),
            self.bits,
            self.group_size,
            self.options.zero_point,
            clip=self.options.clip,
            **self.options.clip_knobs,
        )
        return RtnLinear(
            codes,
            scale,
            offset,
            self.bits,
            bias=linear.bias,
            zero_point=self.options.zero_point,
            dtype=linear.weight.dtype,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "bits": self.bits,
            "group_size": self.group_size,
            "zero_point": self.options.zero_point,
            **describe_clip(self.options.clip, self.options.clip_knobs),
            "formula_bits_per_param": self.bits + (32 / self.group_size if self.group_size else 0.0),
        }
