"""Running one decoder block on stored activations: the block I/O the pipeline and block tuning share.

Activations are stored in buffers the walk owns (codequant.quant.activations: host, GPU or memory-mapped disk, in
the model's dtype); each batch is moved to the block's device and dtype for the call and written back into a
buffer, so no full-calibration temporary is ever made here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Stop(Exception):
    """Raised from a hook to end a forward pass early once the wanted activations are captured."""


def block_device_dtype(block: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the block runs and its compute dtype: that of its fp parameters (norms, unquantized linears), or a
    quantized linear's compute dtype, never a quantized linear's storage (AQLM codebooks stay fp32 in a
    half-precision model)."""
    quantized = [m for m in block.modules() if hasattr(m, "dequantize")]
    inside = {id(p) for m in quantized for p in m.parameters()}
    for p in block.parameters():
        if p.is_floating_point() and id(p) not in inside:
            return p.device, p.dtype
    for m in quantized:
        for t in (*m.parameters(), *m.buffers()):
            return t.device, getattr(m, "dtype", torch.float32)
    return torch.device("cpu"), torch.float32


def to_device(value: Any, device: torch.device | str) -> Any:
    """`value` with every tensor inside (dicts, lists, tuples: a block's captured keyword arguments) on `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_device(v, device) for v in value)
    return value


def call_block(block: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """block(x) -> hidden states (decoder layers return a tuple in some transformers versions)."""
    out = block(x, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_block(
    block: nn.Module,
    inputs: torch.Tensor,
    kwargs: dict[str, Any],
    batch_size: int,
    out: torch.Tensor | None = None,
    *,
    keep: bool = True,
) -> torch.Tensor | None:
    """block(inputs) in batches, written into `out` (default: a new tensor like `inputs`; `out` may be `inputs`
    itself: each batch is read before it is overwritten). `keep=False` stores nothing (a hook collects what is
    wanted) and returns None. Batches stopped by a hook (`Stop`) are left as they were."""
    device, dtype = block_device_dtype(block)
    if keep and out is None:
        out = torch.zeros_like(inputs)
    for i in range(0, inputs.shape[0], batch_size):
        try:
            y = call_block(block, inputs[i : i + batch_size].to(device, dtype), kwargs)
        except Stop:
            continue
        if out is not None:
            out[i : i + batch_size] = y.to(out.device, out.dtype)
    return out


@torch.no_grad()
def propagate(
    block: nn.Module,
    acts: torch.Tensor,
    kwargs: dict[str, Any],
    batch_size: int,
    targets: torch.Tensor | None = None,
) -> float | None:
    """Overwrite `acts` with block(acts), batch by batch (the next block's inputs, without a second buffer); with
    `targets`, return the relative MSE of the new outputs against them, accumulated per batch in float64."""
    device, dtype = block_device_dtype(block)
    num = den = 0.0
    for i in range(0, acts.shape[0], batch_size):
        y = call_block(block, acts[i : i + batch_size].to(device, dtype), kwargs)
        if targets is not None:
            t = targets[i : i + batch_size].to(y.device).double()
            num += float(((y.double() - t) ** 2).sum())
            den += float((t**2).sum())
        acts[i : i + batch_size] = y.to(acts.device, acts.dtype)
    return None if targets is None else num / max(den, 1e-30)


def relative_mse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """||pred - target||^2 / ||target||^2."""
    return float(((pred - target) ** 2).sum() / (target**2).sum().clamp_min(1e-30))
