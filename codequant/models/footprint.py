"""Where a model's bytes go: embeddings, decoder linears, norms, head, other.

The study's question is what each bit costs, so the footprint counts the tensors that are really held --
parameters AND buffers, at their real element sizes -- rather than `num_parameters() * 2`. A quantized linear
(aqlm's `QuantizedLinear` with codes/codebooks/scales, or codequant's with integer buffers) is charged its
codes and codebooks, and `linear_bits_per_weight` relates that to the logical in x out weights it stands for.
A head tied to the input embeddings is one tensor: it is counted once (under embeddings) and reported as tied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

KINDS = ("embeddings", "linear", "norms", "head", "other")


@dataclass
class KindFootprint:
    """Elements and bytes of one kind of tensor."""

    parameters: int = 0  # elements in nn.Parameters
    buffers: int = 0  # elements in buffers (quantization codes, rotary tables, ...)
    bytes: int = 0  # real bytes of both
    tensors: int = 0

    def add(self, tensor: torch.Tensor, is_buffer: bool) -> None:
        n = tensor.numel()
        if is_buffer:
            self.buffers += n
        else:
            self.parameters += n
        self.bytes += n * tensor.element_size()
        self.tensors += 1


@dataclass
class Footprint:
    kinds: dict[str, KindFootprint] = field(default_factory=lambda: {k: KindFootprint() for k in KINDS})
    head_tied: bool = False
    linear_modules: int = 0
    linear_weights: int = 0  # sum of in_features * out_features over the decoder linears

    @property
    def parameters(self) -> int:
        return sum(k.parameters for k in self.kinds.values())

    @property
    def buffers(self) -> int:
        return sum(k.buffers for k in self.kinds.values())

    @property
    def bytes(self) -> int:
        return sum(k.bytes for k in self.kinds.values())

    @property
    def linear_bits_per_weight(self) -> float:
        """Stored bits of the decoder linears per logical weight: 32 for fp32, ~2-3 for 2-bit AQLM."""
        lin = self.kinds["linear"]
        return 8 * lin.bytes / self.linear_weights if self.linear_weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kinds": {k: asdict(v) for k, v in self.kinds.items()},
            "parameters": self.parameters,
            "buffers": self.buffers,
            "bytes": self.bytes,
            "head_tied": self.head_tied,
            "linear_modules": self.linear_modules,
            "linear_weights": self.linear_weights,
            "linear_bits_per_weight": self.linear_bits_per_weight,
        }


def footprint(model: nn.Module) -> Footprint:
    """Count every parameter and buffer of `model` once, by kind (see module doc)."""
    fp = Footprint()
    seen: set[int] = set()
    head = _output_embeddings(model)

    def charge(kind: str, module: nn.Module, recurse: bool) -> None:
        for is_buffer, tensors in (
            (False, module.parameters(recurse=recurse)),
            (True, module.buffers(recurse=recurse)),
        ):
            for t in tensors:
                if id(t) not in seen:
                    seen.add(id(t))
                    fp.kinds[kind].add(t, is_buffer)

    def walk(module: nn.Module) -> None:
        if module is head:
            return  # charged last, so a tied weight is found under embeddings first
        if (
            isinstance(module, nn.Embedding) or getattr(module, "kind", None) == "embedding"
        ):  # fp or quantized table
            charge("embeddings", module, True)
        elif _is_linear(module):
            charge("linear", module, True)
            fp.linear_modules += 1
            fp.linear_weights += _logical_weights(module)
        elif "norm" in type(module).__name__.lower():
            charge("norms", module, True)
        else:
            charge("other", module, False)
            for child in module.children():
                walk(child)

    walk(model)
    if head is not None:
        weight = getattr(head, "weight", None)
        fp.head_tied = weight is not None and id(weight) in seen
        charge("head", head, True)
    return fp


def _output_embeddings(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_output_embeddings", None)
    try:
        return get() if callable(get) else None
    except (AttributeError, NotImplementedError):
        return None


def _is_linear(module: nn.Module) -> bool:
    """nn.Linear, HF Conv1D, and quantized stand-ins (aqlm's and codequant's QuantizedLinear)."""
    if isinstance(module, nn.Linear):
        return True
    name = type(module).__name__
    if name == "Conv1D":
        return True
    return hasattr(module, "in_features") and hasattr(module, "out_features") and "linear" in name.lower()


def _logical_weights(module: nn.Module) -> int:
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features) * int(module.out_features)
    weight = getattr(module, "weight", None)
    return weight.numel() if isinstance(weight, torch.Tensor) else 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def footprint_table(fp: Footprint, title: str = "footprint"):
    """A rich Table: one row per kind plus the total; the caption says whether the head is tied."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("kind", "parameters", "buffers", "tensors", "bytes", "share"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    total = fp.bytes or 1
    for name, k in fp.kinds.items():
        label = "head (tied: counted in embeddings)" if name == "head" and fp.head_tied else name
        table.add_row(
            label,
            f"{k.parameters:,}",
            f"{k.buffers:,}",
            str(k.tensors),
            _human(k.bytes),
            f"{100 * k.bytes / total:.1f}%",
        )
    table.add_row(
        "total",
        f"{fp.parameters:,}",
        f"{fp.buffers:,}",
        str(sum(k.tensors for k in fp.kinds.values())),
        _human(fp.bytes),
        "100.0%",
        style="bold",
    )
    table.caption = (
        f"{fp.linear_modules} decoder linears, {fp.linear_weights:,} weights, "
        f"{fp.linear_bits_per_weight:.2f} stored bits/weight"
    )
    return table
