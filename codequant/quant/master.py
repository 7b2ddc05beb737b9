"""fp32 master weights: how a half-precision model is trained without losing its updates.

Adam's step for a weight near 1 with lr 1e-4 is below fp16's resolution there (2^-10 ~ 1e-3) and far below
bf16's (2^-7): applied to the half-precision tensor directly, most updates round away, and Adam's second moment
(squares of small gradients) underflows in fp16. So the optimizer works on fp32 copies: the forward and backward
run in the model's dtype, each step copies the gradients up to the fp32 masters, steps there, and writes the
result back rounded once. Parameters already in fp32 (AQLM codebooks and scales, promoted RTN/GPTQ scales) are
their own masters. Used by AQLM's block tuning and by end-to-end fine-tuning.
"""

from __future__ import annotations

import torch
from torch import nn


class MasterWeights:
    """fp32 masters of `params` (a name -> Parameter dict); `masters` is what the optimizer gets."""

    def __init__(self, params: dict[str, nn.Parameter]):
        self.params = params
        self.masters: dict[str, nn.Parameter] = {
            n: p if p.dtype == torch.float32 else nn.Parameter(p.detach().float().clone())
            for n, p in params.items()
        }

    @property
    def half(self) -> list[str]:
        """Names of the parameters that have a separate fp32 master."""
        return [n for n, p in self.params.items() if self.masters[n] is not p]

    def parameters(self) -> list[nn.Parameter]:
        return list(self.masters.values())

    def grads_to_masters(self) -> None:
        """After backward: each half-precision gradient, in fp32, on its master (the model's copy is cleared)."""
        for n in self.half:
            p, m = self.params[n], self.masters[n]
            m.grad = None if p.grad is None else p.grad.detach().float()
            p.grad = None

    @torch.no_grad()
    def masters_to_model(self) -> None:
        """After the optimizer step: the masters, rounded once, into the model's half-precision parameters."""
        for n in self.half:
            self.params[n].copy_(self.masters[n])

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Set model and masters from `state` (keep-best and resume snapshots, which hold the fp32 masters)."""
        for n, m in self.masters.items():
            m.copy_(state[n])
        self.masters_to_model()

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The fp32 masters (what keep-best restores: the model's rounded copy would lose the last bits)."""
        return {n: m.detach().clone() for n, m in self.masters.items()}
