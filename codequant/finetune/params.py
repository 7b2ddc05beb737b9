"""Which parameters end-to-end fine-tuning trains.

Codes (integer indices) stay frozen; what moves is continuous: a quantized linear's floating-point parameters
(AQLM codebooks and scales; RTN/GPTQ scales and offsets once made trainable), the norms, and optionally the
embeddings and the head. Everything else is frozen so the optimizer state stays small.
"""

from __future__ import annotations

import torch
from torch import nn

from codequant.quant.base import QuantizedLinear


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def make_scales_trainable(module: QuantizedLinear) -> list[str]:
    """Turn floating-point scale/offset buffers of grouped-int linears into fp32 parameters (in place)."""
    promoted = []
    for name in ("scale", "offset"):
        buf = module._buffers.get(name)
        if buf is not None and buf.is_floating_point():
            del module._buffers[name]
            module.register_parameter(name, nn.Parameter(buf.detach().float().clone()))
            promoted.append(name)
    return promoted


def select_trainable(
    model: nn.Module, *, train_embeddings: bool = False, train_head: bool = False
) -> dict[str, nn.Parameter]:
    """Freeze the model, then unfreeze and return (by name) the parameters fine-tuning may change."""
    for p in model.parameters():
        p.requires_grad_(False)
    chosen: dict[str, nn.Parameter] = {}
    for mname, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            make_scales_trainable(module)
            for pname, p in module.named_parameters(recurse=False):
                if pname != "bias" and p.is_floating_point():
                    chosen[f"{mname}.{pname}"] = p
        elif _is_norm(module):
            for pname, p in module.named_parameters(recurse=False):
                chosen[f"{mname}.{pname}"] = p
    if train_embeddings:
        emb = model.get_input_embeddings()
        chosen.update({f"embed.{n}": p for n, p in emb.named_parameters()})
    if train_head:
        head = model.get_output_embeddings()
        if head is not None:
            chosen.update({f"head.{n}": p for n, p in head.named_parameters()})
    for p in chosen.values():
        p.requires_grad_(True)
    return chosen


def snapshot(params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in params.items()}


@torch.no_grad()
def restore(params: dict[str, nn.Parameter], state: dict[str, torch.Tensor]) -> None:
    for n, p in params.items():
        p.copy_(state[n])
