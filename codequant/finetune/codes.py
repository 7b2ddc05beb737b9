"""Straight-through code updates for AQLM layers during distillation (optional: `FinetuneConfig.code_updates`;
PV-tuning's V-step is `codequant.finetune.pv`).

Fine-tuning codebooks and scales alone leaves every code where the quantizer put it. Here each `AqlmLinear`
also gets a straight-through fp copy of its weight (the "shadow"): the forward pass computes with the quantized
weight, but the gradient of that weight reaches the shadow as well (`w_q + (shadow - shadow.detach())`), so
the shadow drifts to where the loss wants the weight. Every so often the (row, group) pairs whose shadow moved
furthest from the current quantized weight are re-encoded: beam search with codebooks and scales fixed, against
the shadow. With the identity as XTX the groups do not interact, so re-encoding only the chosen pairs can only
bring the quantized weight closer to the shadow. The shadows live outside the module's state dict: exports see
only codes, codebooks and scales.
"""

from __future__ import annotations

import torch
from torch import nn

from codequant.quant.aqlm.beam import beam_search
from codequant.quant.aqlm.linear import AqlmLinear

SHADOW_ATTR = "_straight_through"


def aqlm_layers(model: nn.Module) -> dict[str, AqlmLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AqlmLinear)}


def attach_shadows(model: nn.Module) -> dict[str, nn.Parameter]:
    """Give every AqlmLinear a trainable fp copy of its current weight; returns them by `<layer>.shadow`."""
    shadows = {}
    for name, layer in aqlm_layers(model).items():
        with torch.no_grad():
            w = layer.dequantize().detach().float().clone()
        shadow = nn.Parameter(w, requires_grad=True)
        object.__setattr__(layer, SHADOW_ATTR, shadow)  # not a registered parameter: never saved or exported
        shadows[f"{name}.shadow"] = shadow
    return shadows


def detach_shadows(model: nn.Module) -> None:
    for layer in aqlm_layers(model).values():
        layer.__dict__.pop(SHADOW_ATTR, None)


def code_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The code tensors by `<layer>.codes`, for snapshots (keep-best must restore codes with the codebooks)."""
    return {f"{name}.codes": layer.codes for name, layer in aqlm_layers(model).items()}


@torch.no_grad()
def reencode_layer(layer: AqlmLinear, target: torch.Tensor, fraction: float, beam_size: int = 1) -> int:
    """Re-encode the `fraction` of (row, group) pairs of `layer` farthest from `target`; returns how many codes
    changed. Codebooks and scales stay fixed."""
    out_features, num_groups, _ = layer.codes.shape
    g = layer.group_size
    current = layer.dequantize().float()
    moved = ((target.float() - current) ** 2).reshape(out_features, num_groups, g).sum(-1)
    count = max(1, int(round(fraction * moved.numel())))
    chosen = torch.zeros(moved.numel(), dtype=torch.bool)
    chosen[moved.flatten().topk(count).indices] = True
    chosen = chosen.view(out_features, num_groups)
    groups = chosen.any(0).nonzero().flatten()
    books = layer.codebooks.detach().float().reshape(layer.num_codebooks, -1, g)
    scales = layer.scales.detach().float().reshape(out_features)
    eye = torch.eye(layer.in_features, dtype=torch.float32)
    found = beam_search(target.float(), eye, books, scales, layer.codes, beam_size=beam_size, order=groups)
    new = torch.where(chosen.unsqueeze(-1), found, layer.codes)
    changed = int((new != layer.codes).sum())
    layer.codes.copy_(new)
    return changed


def reencode_model(model: nn.Module, fraction: float, beam_size: int = 1) -> int:
    """Re-encode every AqlmLinear that has a shadow towards it; returns the number of codes changed."""
    changed = 0
    for layer in aqlm_layers(model).values():
        shadow = layer.__dict__.get(SHADOW_ATTR)
        if shadow is not None:
            changed += reencode_layer(layer, shadow.detach(), fraction, beam_size)
    return changed
