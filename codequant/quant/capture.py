"""What the block walk observes: inputs of block 0, each block's keyword arguments, and XTX of its linears.

Hooks capture activations and stop the forward (`Stop`) as soon as what is wanted has been seen, so capturing the
inputs of block 0 costs only the embedding, and collecting the XTX of an early linear group only part of a block.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.activations import ActivationStore
from codequant.quant.arch import block_linears
from codequant.quant.blocks import Stop, block_device_dtype, call_block, relative_mse, run_block


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def capture_first_inputs(
    model: nn.Module,
    layer0: nn.Module,
    tokens: torch.Tensor,
    batch_size: int,
    store: ActivationStore | None = None,
) -> torch.Tensor:
    """Hidden states entering block 0 for every row, in the model's dtype, stopping each forward there. They are
    written batch by batch into one buffer of `store` (default: host RAM), never gathered and concatenated."""
    store = store or ActivationStore("host")
    buffer: list[torch.Tensor] = []
    start = [0]

    def hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if not buffer:
            buffer.append(store.empty((tokens.shape[0], *hidden.shape[1:]), hidden.dtype))
        buffer[0][start[0] : start[0] + hidden.shape[0]] = hidden.detach().to(buffer[0].device)
        raise Stop

    handle = layer0.register_forward_pre_hook(hook, with_kwargs=True)
    device = model_device(model)
    try:
        for i in range(0, tokens.shape[0], batch_size):
            start[0] = i
            try:
                model(input_ids=tokens[i : i + batch_size].to(device), use_cache=False)
            except Stop:
                pass
    finally:
        handle.remove()
    if not buffer:
        raise CodequantError("block 0 never ran on the calibration rows: nothing to capture")
    return buffer[0]


def block_call_kwargs(block: nn.Module, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A block call's arguments besides the hidden states, all by name, so that the walk can call the block as
    `block(hidden, **kwargs)`: GPT-2 passes its cache and mask positionally, StarCoder (gpt_bigcode) its encoder
    states. Positional arguments are named by the forward's signature."""
    if len(args) <= 1:
        return {k: v for k, v in kwargs.items() if k != "hidden_states"}
    signature = inspect.signature(block.forward)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise CodequantError(
            f"cannot name the positional arguments of {type(block).__name__}.forward: {exc}"
        ) from exc
    named: dict[str, Any] = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY) and i > 0:
            raise CodequantError(
                f"{type(block).__name__}.forward takes {name!r} positionally only; the block walk "
                "calls blocks with the hidden states positionally and everything else by name"
            )
        elif i > 0:
            named[name] = value
    return named


@torch.no_grad()
def capture_layer_kwargs(model: nn.Module, layers: nn.ModuleList, row: torch.Tensor) -> list[dict[str, Any]]:
    """The keyword arguments each decoder layer receives (rotary embeddings, mask, position ids), captured
    from one full forward of one row. They have batch dimension 1 and broadcast over any batch; per-layer
    capture handles models whose layers differ (sliding-window vs global attention). The same forward checks that
    the walk reproduces it (`check_walk`)."""
    captured: list[dict[str, Any] | None] = [None] * len(layers)
    seen: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(layers)
    handles = []
    for idx, layer in enumerate(layers):

        def pre_hook(module, args, kwargs, idx=idx):
            kw = block_call_kwargs(module, args, kwargs)
            kw["use_cache"] = False
            for name in (
                "past_key_values",
                "past_key_value",
                "cache",
                "layer_past",
            ):  # the cache's name varies
                if name in kw:
                    kw[name] = None
            captured[idx] = kw

        def hook(_module, args, kwargs, output, idx=idx):
            hidden = args[0] if args else kwargs["hidden_states"]
            out = output[0] if isinstance(output, tuple) else output
            seen[idx] = (hidden.detach().clone(), out.detach().clone())

        handles.append(layer.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(layer.register_forward_hook(hook, with_kwargs=True))
    try:
        model(input_ids=row.to(model_device(model)), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    if any(c is None for c in captured):
        raise CodequantError("not every decoder layer ran during the forward pass; unsupported architecture")
    check_walk(layers, captured, seen)  # type: ignore[arg-type]
    return captured  # type: ignore[return-value]


WALK_TOLERANCE = (
    1e-6  # relative MSE: float noise passes, any real transformation (a halving is 0.25) does not
)


def check_walk(
    layers: nn.ModuleList, kwargs: list[dict[str, Any]], seen: list[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """The walk feeds block i+1 what block i returned and calls each block with its captured arguments only; check
    both against the model's own forward (`seen`: each block's (input, output)). A model that transforms the hidden
    states between its blocks, or a block that reads state the arguments do not carry, fails here, by name."""
    for idx, (layer, (hidden, out)) in enumerate(zip(layers, seen, strict=True)):
        replay = call_block(layer, hidden, kwargs[idx])
        if relative_mse(replay.float(), out.float()) > WALK_TOLERANCE:
            raise CodequantError(
                f"block {idx} ({type(layer).__name__}) gives other outputs when called with the "
                "arguments the model passed it: it depends on state outside its arguments, which "
                "the block walk cannot reproduce"
            )
        if idx + 1 < len(layers) and relative_mse(seen[idx + 1][0].float(), out.float()) > WALK_TOLERANCE:
            raise CodequantError(
                f"{type(layer).__name__} {idx + 1} does not receive what block {idx} returned: the "
                "model transforms the hidden states between its blocks, which the block walk "
                "(block i+1 gets block i's output) does not reproduce"
            )


@torch.no_grad()
def linear_groups(block: nn.Module, sample: torch.Tensor, kwargs: dict[str, Any]) -> list[list[str]]:
    """The block's linear names (nn.Linear, Conv1D) grouped by shared input, in the order the forward first calls them.
    Linears the forward never calls come last, each alone."""
    linears = block_linears(block)
    calls: list[tuple[str, torch.Tensor]] = []
    handles = [
        m.register_forward_pre_hook(lambda _m, args, n=n: calls.append((n, args[0])))
        for n, m in linears.items()
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


def collect_xtx(
    block: nn.Module,
    inputs: torch.Tensor,
    kwargs: dict[str, Any],
    batch_size: int,
    groups: list[list[str]],
    stop: bool,
    out: torch.Tensor | None = None,
) -> dict[int, torch.Tensor]:
    """{group index: XTX} over `inputs`; the block's outputs go into `out` when given (the walk's targets buffer),
    else nowhere. With `stop` the forward ends at the first group's input."""
    collector = XtxCollector(block, groups, stop)
    try:
        run_block(block, inputs, kwargs, batch_size, out, keep=out is not None)
    finally:
        collector.remove()
    return collector.xtx
