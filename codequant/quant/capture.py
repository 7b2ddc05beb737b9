"""What the block walk observes: inputs of block 0, each block's keyword arguments, and XTX of its linears.

Hooks capture activations and stop the forward (`Stop`) as soon as what is wanted has been seen, so capturing the
inputs of block 0 costs only the embedding, and collecting the XTX of an early linear group only part of a block.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.blocks import Stop, block_device_dtype, call_block, run_block


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def capture_first_inputs(model: nn.Module, layer0: nn.Module, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Hidden states entering block 0 for every row (fp32, CPU), stopping each forward there."""
    chunks: list[torch.Tensor] = []

    def hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        chunks.append(hidden.detach().float().cpu())
        raise Stop

    handle = layer0.register_forward_pre_hook(hook, with_kwargs=True)
    device = model_device(model)
    try:
        for i in range(0, tokens.shape[0], batch_size):
            try:
                model(input_ids=tokens[i : i + batch_size].to(device), use_cache=False)
            except Stop:
                pass
    finally:
        handle.remove()
    return torch.cat(chunks)


@torch.no_grad()
def capture_layer_kwargs(model: nn.Module, layers: nn.ModuleList, row: torch.Tensor) -> list[dict[str, Any]]:
    """The keyword arguments each decoder layer receives (rotary embeddings, mask, position ids), captured
    from one full forward of one row. They have batch dimension 1 and broadcast over any batch; per-layer
    capture handles models whose layers differ (sliding-window vs global attention)."""
    captured: list[dict[str, Any] | None] = [None] * len(layers)
    handles = []
    for idx, layer in enumerate(layers):

        def hook(_module, args, kwargs, idx=idx):
            if len(args) > 1:
                raise CodequantError(f"{type(_module).__name__} takes positional arguments besides hidden_states")
            kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            kw["use_cache"] = False
            for name in ("past_key_values", "past_key_value", "cache"):  # the cache's name differs by version
                if name in kw:
                    kw[name] = None
            captured[idx] = kw

        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        model(input_ids=row.to(model_device(model)), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    if any(c is None for c in captured):
        raise CodequantError("not every decoder layer ran during the forward pass; unsupported architecture")
    return captured  # type: ignore[return-value]



@torch.no_grad()
def linear_groups(block: nn.Module, sample: torch.Tensor, kwargs: dict[str, Any]) -> list[list[str]]:
    """The block's nn.Linear names grouped by shared input, in the order the forward first calls them.
    Linears the forward never calls come last, each alone."""
    linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    calls: list[tuple[str, torch.Tensor]] = []
    handles = [
        m.register_forward_pre_hook(lambda _m, args, n=n: calls.append((n, args[0]))) for n, m in linears.items()
    ]
    device, dtype = block_device_dtype(block)
    try:
        call_block(block, sample.to(device, dtype), kwargs)
    finally:
        for h in handles:
            h.remove()
    groups: list[list[str]] = []
    group_inputs: list[torch.Tensor] = []
    seen: set[str] = set()
    for name, x in calls:
        if name in seen:
            continue
        seen.add(name)
        for g, gx in enumerate(group_inputs):
            if gx is x:
                groups[g].append(name)
                break
        else:
            groups.append([name])
            group_inputs.append(x)
    groups.extend([n] for n in linears if n not in seen)
    return groups


class XtxCollector:
    """Accumulates XTX (float64) of the input of one linear per group; optionally stops the forward there."""

    def __init__(self, block: nn.Module, groups: list[list[str]], stop: bool):
        self.xtx: dict[int, torch.Tensor] = {}
        self.rows: dict[int, int] = {}
        self.handles = []
        for g, names in enumerate(groups):
            module = block.get_submodule(names[0])
            self.handles.append(module.register_forward_pre_hook(self._hook(g, stop)))

    def _hook(self, g: int, stop: bool):
        def hook(_module, args):
            x = args[0].detach()
            x = x.reshape(-1, x.shape[-1]).float()
            part = (x.T @ x).double().cpu()  # fp32 product per batch, fp64 sum across batches
            self.xtx[g] = part if g not in self.xtx else self.xtx[g] + part
            self.rows[g] = self.rows.get(g, 0) + x.shape[0]
            if stop:
                raise Stop

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def collect_xtx(block: nn.Module, inputs: torch.Tensor, kwargs: dict[str, Any], batch_size: int, groups: list[list[str]],
                stop: bool) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(block outputs, {group index: XTX}) over `inputs`; with `stop` the forward ends at the first group's input."""
    collector = XtxCollector(block, groups, stop)
    try:
        outputs = run_block(block, inputs, kwargs, batch_size)
    finally:
        collector.remove()
    return outputs, collector.xtx
