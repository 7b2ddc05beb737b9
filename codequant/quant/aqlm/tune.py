"""AQLM's block tuning: after all linears of a block are quantized layer by layer, their errors interact; Adam
on every continuous parameter of the block (codebooks, scales, biases, normalisation weights; codes frozen) makes
the quantized block's outputs match the fp block's on the calibration rows (relative MSE).

Selection follows the AQLM reference: after each epoch the error on the selection rows is measured and the best
parameters are kept (the start counts, so tuning never makes the selection error worse); training stops after
`early_stop` epochs without improvement. The selection rows are the held-out split when one is given (the honest
choice: the reference keeps the best on 128 held-out sequences), else a fixed slice of the training rows, which
can only detect divergence, not overfitting.

In a half-precision model the block runs forward and backward in its own dtype, while the loss is reduced in fp32
and Adam steps fp32 master copies of the half-precision parameters (codequant.quant.master); codebooks and scales
are fp32 already.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from codequant.quant.aqlm.linear import AqlmLinear
from codequant.quant.blocks import block_device_dtype, call_block
from codequant.quant.master import MasterWeights


@dataclass
class TuneOptions:
    epochs: int = 2  # passes over the training rows (upper bound; see early_stop)
    lr: float = 1e-3  # chosen on held-out block error (docs/aqlm.md): 1e-4 moves too little in two epochs
    batch_size: int = 8  # calibration rows per step
    betas: tuple[float, float] = (0.9, 0.95)  # the reference's finetune_adam_beta1/2
    early_stop: int = 3  # epochs without a better selection error before stopping
    select_rows: int = 16  # rows of the training inputs used for selection when there is no validation split


def tunable_parameters(block: nn.Module) -> dict[str, nn.Parameter]:
    """Every floating-point parameter of the block: the AqlmLinears' codebooks, scales and biases and whatever
    else the block holds (normalisation weights and biases, any fp layer left unquantized). Codes are integer
    buffers and stay fixed."""
    return {n: p for n, p in block.named_parameters() if p.is_floating_point()}


@torch.no_grad()
def _rel_error(block, inputs, targets, kwargs, batch_size, device, dtype) -> float:
    num = den = 0.0
    for i in range(0, inputs.shape[0], batch_size):
        y = call_block(block, inputs[i : i + batch_size].to(device, dtype), kwargs).float()
        t = targets[i : i + batch_size].to(device).float()
        num += float(((y - t) ** 2).sum())
        den += float((t**2).sum())
    return num / max(den, 1e-30)


def _epoch(
    block, opt, masters: MasterWeights, inputs, targets, kwargs, batch_size, generator, device, dtype
) -> float:
    """One pass over the training rows in a seeded order; returns the mean training loss."""
    order = torch.randperm(inputs.shape[0], generator=generator)
    losses = []
    for i in range(0, inputs.shape[0], batch_size):
        idx = order[i : i + batch_size]
        x, t = inputs[idx].to(device, dtype), targets[idx].to(device).float()
        y = call_block(block, x, kwargs).float()
        loss = ((y - t) ** 2).mean() / (t**2).mean().clamp_min(1e-30)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        masters.grads_to_masters()
        opt.step()
        masters.masters_to_model()
        losses.append(float(loss.detach()))
    return sum(losses) / max(len(losses), 1)


def tune_block(
    block: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    kwargs: dict[str, Any],
    val_inputs: torch.Tensor | None = None,
    val_targets: torch.Tensor | None = None,
    options: TuneOptions | None = None,
) -> dict[str, Any]:
    """Tune in place; returns the selection error before/after, where it was measured, the epochs run and the
    best one, the per-epoch selection errors and the seconds taken."""
    opts = options or TuneOptions()
    params = tunable_parameters(block)
    if opts.epochs <= 0 or not params:
        return {"epochs": 0}
    t0 = time.perf_counter()
    device, dtype = block_device_dtype(block)  # the block's compute dtype (not its fp32 codebooks')
    selection = "heldout" if val_inputs is not None and val_targets is not None else "train_rows"
    if selection == "train_rows":
        val_inputs, val_targets = inputs[: opts.select_rows], targets[: opts.select_rows]
    was = {n: p.requires_grad for n, p in block.named_parameters()}
    for p in block.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(int(inputs.shape[0]))

    def evaluate() -> float:
        return _rel_error(block, val_inputs, val_targets, kwargs, opts.batch_size, device, dtype)

    try:
        best = evaluate()
        result: dict[str, Any] = {"selection": selection, "select_before": best}
        masters = MasterWeights(params)
        best_state = masters.snapshot()
        best_epoch, history, ran = 0, [], 0
        opt = torch.optim.Adam(masters.parameters(), lr=opts.lr, betas=opts.betas)
        with torch.enable_grad():
            for epoch in range(1, opts.epochs + 1):
                _epoch(block, opt, masters, inputs, targets, kwargs, opts.batch_size, gen, device, dtype)
                ran = epoch
                score = evaluate()
                history.append(score)
                if score < best:
                    best, best_epoch = score, epoch
                    best_state = masters.snapshot()
                elif epoch - best_epoch >= opts.early_stop:
                    break
        masters.load(best_state)
    finally:
        for n, p in block.named_parameters():
            p.requires_grad_(was.get(n, False))
    for module in block.modules():
        if isinstance(module, AqlmLinear):
            module.round_to_fp16()
    result.update(
        {
            "select_after": evaluate(),
            "epochs": ran,
            "best_epoch": best_epoch,
            "history": history,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return result
