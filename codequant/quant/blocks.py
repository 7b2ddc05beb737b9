"""Running one decoder block on stored activations: the block I/O the pipeline and block tuning share.

Activations are kept as fp32 on the CPU (only the current block needs to sit on the accelerator); each batch is
moved to the block's device and dtype for the call and back for storage.
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
def run_block(block: nn.Module, inputs: torch.Tensor, kwargs: dict[str, Any], batch_size: int) -> torch.Tensor:
    """block(inputs) in batches; fp32 CPU out, whatever the block's device/dtype. Batches stopped by a hook
    (`Stop`) leave zeros, which callers that stop on purpose ignore."""
    device, dtype = block_device_dtype(block)
    out = torch.zeros_like(inputs)
    for i in range(0, inputs.shape[0], batch_size):
        try:
            y = call_block(block, inputs[i : i + batch_size].to(device, dtype), kwargs)
        except Stop:
            continue
        out[i : i + batch_size] = y.float().cpu()
    return out


def relative_mse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """||pred - target||^2 / ||target||^2."""
    return float(((pred - target) ** 2).sum() / (target**2).sum().clamp_min(1e-30))
