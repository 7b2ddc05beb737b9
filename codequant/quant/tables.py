"""Quantized token tables: the input embedding and the LM head on round-to-nearest grids.

Why: in a small model the vocabulary tables are a large share of the file (SmolLM2-135M: 28.3M of 134.5M
parameters, 21%), so a 2-bit decoder alone still leaves a file dominated by fp tables. llama.cpp quantizes
`token_embd` and `output` for the same reason (Q8_0 / Q6_K / Q4_K). Here each table row (one token) gets a min-max
grid per group of `group_size` values with an fp16 scale and offset (RTN's grid, `grid.minmax_params`), at 8, 6
or 4 bits, whatever method quantized the decoder blocks.

- `QuantizedEmbedding` replaces the input embedding: a lookup dequantizes only the rows it reads.
- `QuantizedHead` replaces an untied LM head (a grouped-int linear of its own).
- `TiedHead` replaces the head of a model whose head is its embedding (`tie_word_embeddings`): it computes with
  the embedding's quantized table, which is stored once, under the embedding. The two cannot have different bits.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.grid import check_divides, dequantize_codes
from codequant.quant.intlinear import GroupedIntLinear
from codequant.quant.options import TableSpec
from codequant.quant.registry import register_linear


@register_linear
class QuantizedHead(GroupedIntLinear):
    """An untied LM head on a per-row grouped grid (forward: the linear of its dequantized weight)."""

    kind: ClassVar[str] = "head"


@register_linear
class QuantizedEmbedding(GroupedIntLinear):
    """The input embedding as integer codes [vocab, hidden] with per-group fp16 scale and offset."""

    kind: ClassVar[str] = "embedding"
    padding_idx: int | None = None

    @property
    def num_embeddings(self) -> int:
        return self.out_features

    @property
    def embedding_dim(self) -> int:
        return self.in_features

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Dequantize only the looked-up rows: the same values as `dequantize()[ids]`, without the vocab-size weight."""
        codes = self.codes[ids]
        shape = (*ids.shape, self.num_groups, self.group_size)
        rows = dequantize_codes(codes.view(shape), self.scale[ids][..., None], self.offset[ids][..., None])
        return rows.reshape(*ids.shape, self.in_features).to(self.dtype)


class TiedHead(nn.Module):
    """The LM head of a tied model after its embedding was quantized: logits from the embedding's table.

    The embedding is held outside the module tree (not a submodule), so the table is saved once, under the
    embedding; checkpoints record the tie (`checkpoint.module_state`) and rebuild it on load."""

    def __init__(self, embedding: QuantizedEmbedding):
        super().__init__()
        self.__dict__["source"] = embedding

    @property
    def in_features(self) -> int:
        return self.source.in_features

    @property
    def out_features(self) -> int:
        return self.source.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.source.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.source.dequantize().to(x.dtype))

    def extra_repr(self) -> str:
        return "tied to the quantized embedding"


def quantize_table(
    weight: torch.Tensor, bits: int, group_size: int, cls: type[GroupedIntLinear]
) -> GroupedIntLinear:
    """`weight` [rows, cols] on min-max grids of `group_size` columns (-1: the whole row), as `cls`."""
    from codequant.quant.rtn import rtn_quantize_weight

    gs = None if group_size == -1 else group_size
    check_divides(gs, weight.shape[1], "the token table")
    codes, scale, offset = rtn_quantize_weight(weight.detach(), bits, gs)
    return cls(codes, scale, offset, bits, dtype=weight.dtype)


def head_is_tied(model: nn.Module) -> bool:
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    return (
        head is not None and emb is not None and getattr(head, "weight", None) is getattr(emb, "weight", None)
    )


def check_tables(model: nn.Module, spec: TableSpec) -> None:
    """Refuse, before any work, what cannot be done on this model: different bits for one tied table, a head
    with a bias, a group size that does not divide the hidden size."""
    if not spec.active:
        return
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    if spec.embedding_bits is not None and not isinstance(emb, nn.Embedding):
        raise CodequantError(
            f"embedding_bits: the input embedding is a {type(emb).__name__}, not an nn.Embedding"
        )
    if spec.head_bits is not None and not isinstance(head, nn.Linear):
        raise CodequantError(f"head_bits: the LM head is a {type(head).__name__}, not an nn.Linear")
    if spec.head_bits is not None and head.bias is not None:
        raise CodequantError("head_bits: this model's LM head has a bias; only bias-free heads are quantized")
    if head_is_tied(model) and spec.embedding_bits != spec.head_bits:
        raise CodequantError(
            f"this model ties its LM head to the input embedding (one tensor), so embedding_bits and head_bits must "
            f"be equal (got {spec.embedding_bits} and {spec.head_bits}); give both the same value"
        )
    width = (emb.weight if spec.embedding_bits is not None else head.weight).shape[1]
    check_divides(None if spec.group_size == -1 else spec.group_size, width, "the token tables")


@torch.no_grad()
def quantize_tables(model: nn.Module, spec: TableSpec) -> dict[str, Any]:
    """Replace the embedding and/or head of `model` in place as `spec` says; returns what was done."""
    check_tables(model, spec)
    if not spec.active:
        return {}
    names = {m: n for n, m in model.named_modules()}
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head_is_tied(model)
    done: dict[str, Any] = {"tied": tied, "group_size": spec.group_size}
    if spec.embedding_bits is not None:
        q = quantize_table(emb.weight, spec.embedding_bits, spec.group_size, QuantizedEmbedding)
        q.padding_idx = emb.padding_idx
        model.set_submodule(names[emb], q)
        done["embedding"] = {"module": names[emb], "bits": spec.embedding_bits}
        if tied:
            model.set_submodule(names[head], TiedHead(q))
            done["head"] = {"module": names[head], "bits": spec.embedding_bits, "tied_to": names[emb]}
    if spec.head_bits is not None and not tied:
        model.set_submodule(
            names[head], quantize_table(head.weight, spec.head_bits, spec.group_size, QuantizedHead)
        )
        done["head"] = {"module": names[head], "bits": spec.head_bits}
    return done


def is_table(module: nn.Module) -> bool:
    """Whether `module` is a quantized token table (kept apart from the decoder linears' bits/param)."""
    return isinstance(module, (QuantizedEmbedding, QuantizedHead))


def tied_heads(model: nn.Module) -> dict[str, str]:
    """{head module name: embedding module name} for every TiedHead in `model`."""
    names = {id(m): n for n, m in model.named_modules()}
    return {n: names[id(m.source)] for n, m in model.named_modules() if isinstance(m, TiedHead)}


def dequantized_tables(model: nn.Module) -> dict[str, nn.Module]:
    """Plain fp modules for the quantized tables (for the dequantized export): an nn.Embedding per
    QuantizedEmbedding, and for a TiedHead an nn.Linear sharing that embedding's weight Parameter (so the folder
    stays tied and stores the table once). QuantizedHead is a grouped-int linear: the export handles it."""
    out: dict[str, nn.Module] = {}
    by_source: dict[int, nn.Embedding] = {}
    for name, m in model.named_modules():
        if isinstance(m, QuantizedEmbedding):
            weight = m.dequantize().detach()
            plain = nn.Embedding(
                m.out_features,
                m.in_features,
                padding_idx=m.padding_idx,
                device=weight.device,
                dtype=weight.dtype,
            )
            plain.weight.data.copy_(weight)
            out[name] = by_source[id(m)] = plain
    for name, m in model.named_modules():
        if isinstance(m, TiedHead):
            emb = by_source[id(m.source)]
            linear = nn.Linear(
                m.in_features, m.out_features, bias=False, device=emb.weight.device, dtype=emb.weight.dtype
            )
            linear.weight = emb.weight
            out[name] = linear
    return out
