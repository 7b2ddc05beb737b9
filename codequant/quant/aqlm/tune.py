"""AQLM's block tuning: after all linears of a block are quantized layer by layer, their errors interact; Adam
on the block's continuous parameters (codebooks, scales and the norms' weights; codes frozen) makes the
quantized block's outputs match the fp block's on the calibration inputs (MSE). The parameters with the lowest
validation error (the validation split if given, else a fixed slice of the training rows) are kept, and the
starting point counts, so tuning never makes the selection error worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from codequant.quant.aqlm.linear import AqlmLinear


@dataclass
class TuneOptions:
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 8  # calibration rows per step
    select_rows: int = 16  # rows of the training inputs used for selection when there is no validation split


def tunable_parameters(block: nn.Module) -> dict[str, nn.Parameter]:
    """Codebooks and scales of the block's AqlmLinears, and the weights of its normalisation layers."""
    out: dict[str, nn.Parameter] = {}
    for name, module in block.named_modules():
        if isinstance(module, AqlmLinear):
            out[f"{name}.codebooks"], out[f"{name}.scales"] = module.codebooks, module.scales
        elif "norm" in type(module).__name__.lower():
            out.update({f"{name}.{n}": p for n, p in module.named_parameters(recurse=False)})
    return out


def _forward(block: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    out = block(x, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def _rel_error(block, inputs, targets, kwargs, batch_size, device, dtype) -> float:
    num = den = 0.0
    for i in range(0, inputs.shape[0], batch_size):
        y = _forward(block, inputs[i : i + batch_size].to(device, dtype), kwargs).float()
        t = targets[i : i + batch_size].to(device).float()
        num += float(((y - t) ** 2).sum())
        den += float((t**2).sum())
    return num / max(den, 1e-30)


def tune_block(block: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, kwargs: dict[str, Any],
               val_inputs: torch.Tensor | None = None, val_targets: torch.Tensor | None = None,
               options: TuneOptions | None = None) -> dict[str, float]:
    """Tune in place; returns relative output errors before/after on the selection rows and on the train rows."""
    opts = options or TuneOptions()
    params = tunable_parameters(block)
    if opts.epochs <= 0 or not params:
        return {"epochs": 0}
    first = next(iter(params.values()))
    device, dtype = first.device, next(p.dtype for p in block.parameters() if p.is_floating_point())
    if val_inputs is None or val_targets is None:
        val_inputs, val_targets = inputs[: opts.select_rows], targets[: opts.select_rows]
    was = {n: p.requires_grad for n, p in block.named_parameters()}
    for p in block.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(int(inputs.shape[0]))
    try:
        evaluate = lambda: _rel_error(block, val_inputs, val_targets, kwargs, opts.batch_size, device, dtype)  # noqa: E731
        best = evaluate()
        result = {"select_before": best}
        best_state = {n: p.detach().clone() for n, p in params.items()}
        best_epoch = 0
        opt = torch.optim.Adam(params.values(), lr=opts.lr)
        with torch.enable_grad():
            for epoch in range(1, opts.epochs + 1):
                order = torch.randperm(inputs.shape[0], generator=gen)
                for i in range(0, inputs.shape[0], opts.batch_size):
                    idx = order[i : i + opts.batch_size]
                    x, t = inputs[idx].to(device, dtype), targets[idx].to(device).float()
                    y = _forward(block, x, kwargs).float()
                    loss = ((y - t) ** 2).mean() / (t**2).mean().clamp_min(1e-30)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                score = evaluate()
                if score < best:
                    best, best_epoch = score, epoch
                    best_state = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(best_state[n])
    finally:
        for n, p in block.named_parameters():
            p.requires_grad_(was.get(n, False))
    for module in block.modules():
        if isinstance(module, AqlmLinear):
            module.round_to_fp16()
    result.update({"select_after": evaluate(), "epochs": opts.epochs, "best_epoch": best_epoch})
    return result
