"""GPTQ (Frantar et al., 2022): column-by-column rounding with second-order error feedback.

For a linear with weight W [out, in] and calibration inputs X, GPTQ minimises ||W X - Q X||^2 one input column
at a time: after column j is rounded, its error is spread over the not-yet-quantized columns through the
inverse Hessian H^-1 (H = 2 X X^T / n; the scale of H cancels, so XTX is used as is). Implementation follows the
paper's algorithm:
- dead inputs (diag(H) == 0) get H_jj = 1 and W[:, j] = 0 (they never fire, so their weights are free);
- dampening adds `percdamp * mean(diag(H))` to the diagonal; if a Cholesky factorization still fails, the
  damping is multiplied by 10 (from 0.01 when `percdamp` is 0) and retried, up to 5 times; what was used is
  reported (`GptqLinear.fit_info`: damping asked, damping used, retries; `fit` in quantize.json);
- the upper Cholesky factor of H^-1 gives, row by row, the exact update coefficients (the paper's
  "Cholesky reformulation"), computed once;
- updates are applied lazily: inside a block of `blocksize` columns immediately, to the rest once per block;
- with a group size, each group's grid is chosen when the quantizer reaches its first column, from
  the weights as already updated by earlier errors (blocks are a multiple of the group size, so the whole
  group is up to date at that moment); the grid is min-max, or with `clip="mse"` the range shrink that
  minimises the group's |error|^2.4 (the reference's `mse` option, searched once per group, when its grid is
  fixed);
- act-order quantizes columns by decreasing diag(H); groups then follow that order (stored via `g_idx`),
  unless `static_groups` fixes every group's grid up front on the original contiguous columns, which keeps
  the plain group layout (and Q4_1 alignment); `static_groups` without act-order is an error (it would
  change nothing).
The result is stored exactly like RTN (`GptqLinear` = integer codes on fp16 per-group grids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig, Quantizer
from codequant.quant.grid import (
    check_bits,
    check_divides,
    check_group_size,
    dequantize_codes,
    describe_clip,
    grid_params,
    quantize_codes,
)
from codequant.quant.intlinear import GroupedIntLinear
from codequant.quant.options import GptqOptions, parse_options
from codequant.quant.registry import register_linear


@register_linear
class GptqLinear(GroupedIntLinear):
    kind: ClassVar[str] = "gptq"


RETRIES = 5  # extra Cholesky attempts, each with 10x the damping


def _inverse_cholesky(h: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """Upper Cholesky factor of (H + damp mean(diag H) I)^-1, retrying with 10x the damping (0.01 after 0) while H
    is numerically singular; also returns {"damping", "damping_used", "retries"}.

    Memory: at most three N x N matrices at a time (H, then the damped copy and its factor; each intermediate is
    freed as soon as the next exists): at a 34B's 22016-wide down_proj one fp64 matrix is 3.9 GB."""
    diag_mean = torch.diag(h).mean()
    damp = percdamp
    for retry in range(RETRIES + 1):
        try:
            factor = h.clone()
            factor.diagonal().add_(damp * diag_mean)  # exactly H + damp mean(diag H) I
            factor = torch.linalg.cholesky(factor)
            factor = torch.cholesky_inverse(factor)
            factor = torch.linalg.cholesky(factor, upper=True)
            return factor, {"damping": percdamp, "damping_used": damp, "retries": retry}
        except torch.linalg.LinAlgError:
            damp = damp * 10 if damp > 0 else 0.01
    raise CodequantError(
        f"GPTQ: the calibration Hessian is not positive definite even with damping {damp / 10:g} "
        f"({RETRIES} retries from {percdamp:g})"
    )


@dataclass(frozen=True)
class GptqResult:
    """One weight quantized by GPTQ: codes [out, in] (uint8, original column order), scale and offset [out, groups]
    (fp16), `g_idx` [in] (None when group g holds columns g*gs..(g+1)*gs-1), and the damping the Cholesky step
    asked for, the damping it used and the retries it took (see `_inverse_cholesky`)."""

    codes: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    g_idx: torch.Tensor | None
    damping: float
    damping_used: float
    retries: int

    def fit_info(self) -> dict[str, Any]:
        """What quantize.json records per layer (`layers[i]["fit"]`)."""
        return {"damping": self.damping, "damping_used": self.damping_used, "retries": self.retries}


def gptq_quantize_weight(
    weight: torch.Tensor,
    xtx: torch.Tensor,
    bits: int,
    group_size: int | None,
    options: GptqOptions | None = None,
) -> GptqResult:
    """GPTQ one weight with `options` (damping, block size, act-order, static groups, zero point, clip: "minmax"
    grids, or "mse", each grid's range shrink searched on the group's weights when the grid is fixed;
    `grid.mse_params`); None: the defaults."""
    options = options or GptqOptions()
    percdamp, blocksize, act_order = options.percdamp, options.blocksize, options.act_order
    zero_point, clip, knobs = options.zero_point, options.clip, options.clip_knobs

    def params(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grid_params(
            x,
            bits,
            zero_point,
            clip,
            grid=knobs["clip_grid"],
            maxshrink=knobs["clip_maxshrink"],
            norm=knobs["clip_norm"],
        )

    w = weight.detach().float().clone()  # on the weight's device: a GPU runs the column loop there
    dev = w.device
    out_f, in_f = w.shape
    gs = group_size
    check_divides(gs, in_f, "this weight")
    h = xtx.detach().to(dev, torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    n_groups = 1 if gs is None else in_f // gs
    scales = torch.empty(out_f, n_groups, dtype=torch.float16, device=dev)
    offsets = torch.empty(out_f, n_groups, dtype=torch.float16, device=dev)
    static = gs is not None and act_order and options.static_groups
    if gs is None:  # one grid per row, from the (dead-zeroed) weights
        scales, offsets = params(w)
    elif static:
        for g in range(n_groups):
            s, o = params(w[:, g * gs : (g + 1) * gs])
            scales[:, g : g + 1], offsets[:, g : g + 1] = s, o

    perm = (
        torch.argsort(torch.diag(h), descending=True, stable=True)
        if act_order
        else torch.arange(in_f, device=dev)
    )
    if act_order:  # each permuted copy replaces the one before it, which is freed at once
        w = w[:, perm]
        h = h[perm]
        h = h[:, perm]
    hinv, damping = _inverse_cholesky(h, percdamp)
    del h
    hinv = hinv.float()

    # Group of each (permuted) column: on-the-fly groups follow the processing order. A CPU list, read per column.
    if gs is None:
        col_group = torch.zeros(in_f, dtype=torch.long)
    elif static:
        col_group = perm.cpu() // gs
    else:
        col_group = torch.arange(in_f) // gs
    groups = col_group.tolist()
    if gs is not None and not static:
        blocksize = gs * max(1, -(-blocksize // gs))

    codes = torch.zeros(out_f, in_f, dtype=torch.long, device=dev)
    for i1 in range(0, in_f, blocksize):
        i2 = min(i1 + blocksize, in_f)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            g = groups[col]
            if gs is not None and not static and col % gs == 0:
                s, o = params(w1[:, i : i + gs])
                scales[:, g : g + 1], offsets[:, g : g + 1] = s, o
            s, o = scales[:, g], offsets[:, g]
            q = quantize_codes(w1[:, i], s, o, bits)
            codes[:, col] = q
            err = (w1[:, i] - dequantize_codes(q, s, o)) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]

    inv = torch.argsort(perm).cpu()
    codes = codes.cpu()[:, inv].to(torch.uint8)
    g_idx = None
    if act_order and gs is not None and not static:
        g_idx = col_group[inv].to(torch.int32)
    return GptqResult(codes, scales.cpu(), offsets.cpu(), g_idx, **damping)


class GptqQuantizer(Quantizer):
    """Options: `GptqOptions` (QuantConfig.options, parsed and checked by `parse_options`). Each GptqLinear's
    `fit_info` reports the damping used."""

    method: ClassVar[str] = "gptq"
    needs_xtx: ClassVar[bool] = True

    def __init__(self, config: QuantConfig):
        super().__init__(config)
        self.bits = check_bits(config.bits, self.method)
        self.group_size = check_group_size(config.group_size, self.method)
        self.options: GptqOptions = parse_options(self.method, config.options)

    def check_linear(self, name: str, linear: nn.Linear) -> None:
        check_divides(self.group_size, linear.in_features, name)

    def quantize_linear(self, name: str, linear: nn.Linear, xtx: torch.Tensor | None = None) -> GptqLinear:
        if xtx is None:
            raise CodequantError("gptq needs calibration activations (XTX) for every linear")
        self.check_linear(name, linear)
        res = gptq_quantize_weight(linear.weight.detach(), xtx, self.bits, self.group_size, self.options)
        q = GptqLinear(
            res.codes,
            res.scale,
            res.offset,
            self.bits,
            g_idx=res.g_idx,
            bias=linear.bias,
            zero_point=self.options.zero_point,
            dtype=linear.weight.dtype,
        )
        q = q.to(linear.weight.device)
        q.fit_info = res.fit_info()  # the pipeline writes it into quantize.json (layers[i]["fit"])
        return q

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {
            "method": self.method,
            "bits": self.bits,
            "group_size": self.group_size,
            "zero_point": o.zero_point,
            "percdamp": o.percdamp,
            "blocksize": o.blocksize,
            "act_order": o.act_order,
            "static_groups": o.static_groups,
            **describe_clip(o.clip, o.clip_knobs),
            "formula_bits_per_param": self.bits + (32 / self.group_size if self.group_size else 0.0),
        }
