"""The one interface every quantization method implements.

The pipeline (`codequant.quant.pipeline`) walks the decoder blocks in order. For each block it feeds the
calibration activations (outputs of the already-quantized blocks before it), accumulates per-linear
`XTX = sum x x^T` (float64) over calibration tokens, asks the quantizer to quantize each linear from its weight
and XTX, then lets the quantizer tune the whole block against the fp block's outputs (AQLM does; RTN/GPTQ do
nothing). The quantized block's outputs on the inputs become the next block's inputs.

A quantized linear is a `QuantizedLinear` module: it can always give back its dequantized weight (so every
method can export an fp checkpoint), it knows its own storage cost, and it serializes to tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class QuantConfig:
    """What the user asked for. Method-specific fields are ignored by methods that do not use them."""

    method: str  # "aqlm" | "gptq" | "rtn"
    bits: int | None = None  # target bits per parameter (presets pick the rest)
    preset: str = "fast"  # aqlm: "paper" | "fast"
    group_size: int | None = None  # rtn/gptq: inputs per scale group; aqlm: in_group_size g
    num_codebooks: int | None = None  # aqlm M
    codebook_bits: int | None = None  # aqlm B
    seed: int = 0
    options: dict[str, Any] = field(
        default_factory=dict
    )  # method-specific knobs (damping, act_order, tol, ...)


@dataclass
class StorageCost:
    """Storage of one quantized linear, in bits. `formula_bits` counts codes + codebooks + scales as the method's
    paper counts them; `stored_bits` counts what the checkpoint really holds (e.g. int16 codes for B=15)."""

    params: int  # number of weights represented
    formula_bits: float
    stored_bits: float


class QuantizedLinear(nn.Module, ABC):
    """A drop-in replacement for `nn.Linear` holding a quantized weight."""

    in_features: int
    out_features: int
    kind: ClassVar[str]  # registry key written into checkpoints, e.g. "rtn", "gptq", "aqlm"

    @abstractmethod
    def dequantize(self) -> torch.Tensor:
        """The weight this module represents, [out_features, in_features], in the compute dtype."""

    @abstractmethod
    def storage(self) -> StorageCost: ...

    @abstractmethod
    def state(self) -> dict[str, torch.Tensor]:
        """All tensors needed to rebuild this module (codes, codebooks, scales, zeros, bias...)."""

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """JSON-able shape/config facts needed to rebuild it (in/out features, bits, group size...)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> QuantizedLinear:
        """Inverse of `state()` + `meta()`; used to resume a run and to reload codequant checkpoints."""

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight, for model code that reads `linear.weight` instead of calling the linear (Mamba's
        `dt_proj.weight @ x`, `hidden.to(linear.weight.dtype)`): such code then computes with the quantized weight,
        exactly as the forward does. Read-only: an in-place edit of it is not stored in the codes."""
        return self.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = getattr(self, "bias", None)
        return nn.functional.linear(x, self.dequantize().to(x.dtype), bias)


class Quantizer(ABC):
    """One quantization method. Stateless apart from its config; the pipeline owns the walk over blocks."""

    method: ClassVar[str]
    # The pipeline's default for how XTX is collected (override per run with `sequential=`): True = GPTQ's
    # "true sequential" (each group of linears sees the earlier groups of its block already quantized), False = all
    # XTX from one pass of the fp block.
    true_sequential: ClassVar[bool] = True
    # What the walk must provide: XTX of each linear's inputs (RTN needs none), and whether `tune_block` does work
    # (then the walk keeps the fp targets of the held-out rows for it).
    needs_xtx: ClassVar[bool] = True
    tunes_blocks: ClassVar[bool] = False
    # What the walk's targets are (the pipeline's module docstring): "block" = the fp block on the block's own,
    # already-perturbed inputs; "model" = the fp model's hidden states after the block (the walk then carries the
    # fp model's activations in the targets buffer instead).
    block_targets: str = "block"

    def __init__(self, config: QuantConfig):
        self.config = config

    def check_linear(self, name: str, linear: nn.Linear) -> None:
        """Raise CodequantError if this method cannot quantize `linear` (checked for every layer before any work).
        Every linear is acceptable unless a method says otherwise."""
        return None

    @abstractmethod
    def quantize_linear(self, name: str, linear: nn.Linear, xtx: torch.Tensor) -> QuantizedLinear:
        """Quantize one linear given XTX (float64, [in, in]) of its calibration inputs."""

    def tune_block(
        self,
        block: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        block_kwargs: dict[str, Any],
        val_inputs: torch.Tensor | None = None,
        val_targets: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Optionally tune the quantized block's continuous parameters so block(inputs) matches targets.

        Returns metrics (e.g. {"mse_before": .., "mse_after": ..}). The default does nothing.
        """
        return {}

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, as written into the checkpoint and reported to the user."""
        return {"method": self.method}
