"""What the block walk needs to know of an architecture: where its decoder blocks are, which of their modules are
linears, and what a model does that quantized linears or the walk cannot follow.

Nothing here is keyed on model names: the blocks are found as the module list that holds the config's
`num_hidden_layers` blocks, and the linears as `nn.Linear` or GPT-2's `Conv1D` (a linear stored transposed), so
a new HF causal LM works when it is built from the same parts. What cannot work is refused up front with one
`CodequantError` that says what is missing (`check_architecture`).
"""

from __future__ import annotations

import functools
import sys

import torch
from torch import nn

from codequant.errors import CodequantError


@functools.cache
def conv1d_class() -> type:
    """transformers' Conv1D (GPT-2's linear, weight stored [in, out]); imported on first use, so that importing the
    pipeline does not import transformers."""
    from transformers.pytorch_utils import Conv1D

    return Conv1D


def linear_types() -> tuple[type, ...]:
    """The module classes the walk quantizes."""
    return nn.Linear, conv1d_class()


def find_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, list) of the decoder blocks: the nn.ModuleList of `num_hidden_layers` modules of one class (the text
    config's, for multimodal models), whichever attribute holds it (`model.layers`, `gpt_neox.layers`, `transformer.h`,
    `backbone.layers`, `rwkv.blocks`). Several such lists (a vision tower of the same depth): the one with the most
    parameters, the language model."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    n = getattr(text, "num_hidden_layers", None)
    if not isinstance(n, int):
        raise CodequantError(
            f"cannot find the decoder blocks of {type(model).__name__}: its config has no "
            "num_hidden_layers, so no module list can be recognised as the blocks"
        )
    candidates = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) == n and n > 0 and len({type(b) for b in m}) == 1
    ]
    if not candidates:
        raise CodequantError(
            f"cannot find the decoder blocks of {type(model).__name__}: no nn.ModuleList holds its "
            f"num_hidden_layers={n} blocks of one class"
        )
    return max(candidates, key=lambda c: sum(p.numel() for p in c[1].parameters()))


def block_linears(block: nn.Module) -> dict[str, nn.Module]:
    """The block's linears by name: nn.Linear and transformers' Conv1D, in module order."""
    kinds = linear_types()
    return {name: m for name, m in block.named_modules() if isinstance(m, kinds)}


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """(out_features, in_features) of an nn.Linear or a Conv1D (whose weight is stored [in, out])."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    return module.nf, module.nx


def as_linear(module: nn.Module, *, device: torch.device | str | None = None) -> nn.Linear:
    """`module` as an nn.Linear computing the same function: itself, or a Conv1D's transposed copy. The quantizers
    read `weight` as [out, in]; with `device="meta"` only the shape is made (for checks before any work)."""
    if isinstance(module, nn.Linear) and device is None:
        return module
    out_f, in_f = linear_shape(module)
    linear = nn.Linear(
        in_f,
        out_f,
        bias=module.bias is not None,
        device=device or module.weight.device,
        dtype=module.weight.dtype,
    )
    if linear.weight.is_meta:
        return linear
    with torch.no_grad():
        linear.weight.copy_(module.weight.T if not isinstance(module, nn.Linear) else module.weight)
        if module.bias is not None:
            linear.bias.copy_(module.bias)
    return linear


def conv1d_names(model: nn.Module) -> set[str]:
    """Names of the modules that the architecture builds as Conv1D (now quantized, so no longer Conv1D in `model`):
    an export must write their weights transposed again. Found on a meta-device copy built from the config, and
    only for architectures whose modeling module uses Conv1D at all."""
    conv1d = conv1d_class()
    if getattr(sys.modules.get(type(model).__module__), "Conv1D", None) is not conv1d:
        return set()
    with torch.device("meta"):
        reference = type(model)(model.config)
    return {name for name, m in reference.named_modules() if isinstance(m, conv1d)}


def to_conv1d(linear: nn.Linear) -> nn.Module:
    """The Conv1D holding `linear`'s function, for exports of architectures that store that module transposed."""
    conv = conv1d_class()(linear.out_features, linear.in_features).to(
        linear.weight.device, linear.weight.dtype
    )
    with torch.no_grad():
        conv.weight.copy_(linear.weight.T)
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
        else:
            conv.bias.zero_()
    return conv


def check_architecture(model: nn.Module) -> None:
    """Refuse, naming what is missing, a model that changes its linears or its hidden states outside what the walk
    sees. RWKV with `rescale_every > 0` does both: switching between train and eval divides the weights of
    `attention.output` and `feed_forward.value` in place (a quantized linear has codes, not a weight to divide), and
    its model halves the hidden states every `rescale_every` blocks between the blocks (the walk feeds each block the
    previous block's output)."""
    every = getattr(getattr(model, "config", None), "rescale_every", 0)
    if isinstance(every, int) and every > 0:
        raise CodequantError(
            f"{type(model).__name__} rescales its blocks for inference (config.rescale_every={every}): it divides "
            "the weights of attention.output and feed_forward.value in place when switching between train and eval, "
            f"which quantized linears cannot take, and halves the hidden states between blocks every {every} blocks, "
            'which the block walk does not see; set "rescale_every": 0 in config.json (the same function up to '
            "LayerNorm epsilon; the rescaling only keeps fp16 from overflowing)"
        )
