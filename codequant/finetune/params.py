"""Which parameters end-to-end fine-tuning trains.

Codes (integer indices) stay frozen; what moves is continuous: a quantized linear's floating-point parameters
(AQLM codebooks and scales; RTN/GPTQ scales and offsets once made trainable), the norms, and optionally the
embeddings and the head (a quantized token table: its scales and offsets). Everything else is frozen so the
optimizer state stays small.
"""

from __future__ import annotations

import torch
from torch import nn

from codequant.quant.base import QuantizedLinear
from codequant.quant.tables import TiedHead


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


def _table_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The model's token tables as modules ("embedding", "head"); a tied quantized head is its embedding's table."""
    tables = {"embedding": model.get_input_embeddings(), "head": model.get_output_embeddings()}
    if isinstance(tables["head"], TiedHead):
        tables["head"] = tables["head"].source
    return {k: v for k, v in tables.items() if v is not None}


def _table_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """What training a token table means: an fp table's weight; a quantized table's scales and offsets (promoted
    to fp32 parameters, codes fixed, as for a quantized linear)."""
    if isinstance(module, QuantizedLinear):
        make_scales_trainable(module)
        return {n: p for n, p in module.named_parameters(recurse=False) if n in ("scale", "offset")}
    return dict(module.named_parameters())


def select_trainable(
    model: nn.Module, *, train_embeddings: bool = False, train_head: bool = False
) -> dict[str, nn.Parameter]:
    """Freeze the model, then unfreeze and return (by name) the parameters fine-tuning may change.

    Token tables stay frozen unless asked, quantized or not (`codequant quantize --embedding-bits`/`--head-bits`
    makes them `QuantizedLinear`s, which are not the decoder's linears); asked for, a quantized table trains its
    scales and offsets. A tied head is the embedding's table, so either flag trains that one table."""
    for p in model.parameters():
        p.requires_grad_(False)
    tables = _table_modules(model)
    chosen: dict[str, nn.Parameter] = {}
    for mname, module in model.named_modules():
        if any(module is t for t in tables.values()):
            continue
        if isinstance(module, QuantizedLinear):
            make_scales_trainable(module)
            for pname, p in module.named_parameters(recurse=False):
                if pname != "bias" and p.is_floating_point():
                    chosen[f"{mname}.{pname}"] = p
        elif _is_norm(module):
            for pname, p in module.named_parameters(recurse=False):
                chosen[f"{mname}.{pname}"] = p
    for kind, prefix, wanted in (("embedding", "embed", train_embeddings), ("head", "head", train_head)):
        if wanted and kind in tables:
            params = _table_parameters(tables[kind])
            known = {id(p) for p in chosen.values()}  # a tied table is one set of tensors
            chosen.update({f"{prefix}.{n}": p for n, p in params.items() if id(p) not in known})
    for p in chosen.values():
        p.requires_grad_(True)
    return chosen


def snapshot(params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in params.items()}


@torch.no_grad()
def restore(params: dict[str, nn.Parameter], state: dict[str, torch.Tensor]) -> None:
    for n, p in params.items():
        p.copy_(state[n])
