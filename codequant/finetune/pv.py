"""PV-tuning's discrete step (the V-step) for AQLM codes, after Malinovskii et al. 2024 ("PV-Tuning: Beyond
Straight-Through Estimation for Extreme LLM Compression").

Fine-tuning alternates two steps. The P-step is the ordinary one (`codequant.finetune.trainer`): Adam on the
continuous parameters (codebooks, scales, norms) with the codes fixed. The V-step moves the codes. For a layer with
dequantized weight W and loss gradient G = dL/dW (taken through a zero-valued "probe" that every `AqlmLinear` adds
to its weight in the forward pass, so the value is unchanged and G lands in `probe.grad`), it minimises the
linearised loss with a proximal term over the representable weights W':

    <U, W' - W> + ||W' - W||^2 / (2 lr)  =  (||W' - T||^2 - ||W - T||^2) / (2 lr),   T = W - lr * U

where U is Adam's preconditioned direction for G (moments kept per layer across steps, as the reference optimiser
keeps them on the dequantized weights). So the V-step re-assigns codes towards the target T. The trust region: only
the fraction `tau` of (row, group) pairs whose new codes lower ||W' - T||^2 the most may change; the rest keep theirs.

Per pair the objective is separable (identity metric), so the re-assignment is exact bookkeeping: candidates are the
pairs where lr * U is largest, each gets a greedy pass over its codebooks (nearest codeword to the residual, the
current code always a candidate so no pair gets worse), and the top `tau` by gain are applied. This costs a few
small matmuls per layer, cheap next to a training step; a beam search over every group would not be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from codequant.quant.aqlm.linear import AqlmLinear

PROBE_ATTR = "_straight_through"  # the attribute AqlmLinear.forward adds (with zero value) to its weight


def aqlm_layers(model: nn.Module) -> dict[str, AqlmLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AqlmLinear)}


def attach_probes(model: nn.Module) -> dict[str, AqlmLinear]:
    """Give every AqlmLinear a zero probe whose `.grad` collects dL/dW; returns the layers by name."""
    layers = aqlm_layers(model)
    for layer in layers.values():
        probe = nn.Parameter(
            torch.zeros(layer.out_features, layer.in_features, device=layer.codes.device), requires_grad=True
        )
        object.__setattr__(layer, PROBE_ATTR, probe)  # not registered: never in a state dict or an export
    return layers


def detach_probes(model: nn.Module) -> None:
    for layer in aqlm_layers(model).values():
        layer.__dict__.pop(PROBE_ATTR, None)


def probe_grad(layer: AqlmLinear) -> torch.Tensor | None:
    probe = layer.__dict__.get(PROBE_ATTR)
    return None if probe is None else probe.grad


@torch.no_grad()
def v_step(layer: AqlmLinear, update: torch.Tensor, tau: float, candidates: float = 4.0) -> int:
    """Re-assign codes of `layer` towards T = W - `update`, changing at most the fraction `tau` of its (row, group)
    pairs: those whose change lowers ||W' - T||^2 most. Returns the number of codes (not pairs) changed.

    `candidates`: how many pairs (as a multiple of the allowed count) are searched, chosen by ||update||^2 per pair;
    a pair that `update` does not move cannot gain."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau (the share of codes a V-step may change) must be in [0, 1], got {tau}")
    out_features, num_groups, m = layer.codes.shape
    g = layer.group_size
    pairs = out_features * num_groups
    allowed = int(tau * pairs)
    if allowed == 0:
        return 0
    step = update.float().reshape(pairs, g)
    pool = min(pairs, max(allowed, int(candidates * allowed)))
    chosen = (step * step).sum(-1).topk(pool).indices  # [P] flat (row, group) indices
    books = layer.codebooks.detach().float().reshape(m, -1, g)  # [M, K, g]
    scales = layer.scales.detach().float().reshape(out_features)
    rows = chosen // num_groups
    s = scales[rows].unsqueeze(-1)  # [P, 1]
    codes = layer.codes.reshape(pairs, m)[chosen].clone()  # [P, M]
    current = books[torch.arange(m, device=codes.device), codes].sum(1)  # [P, g] unscaled current groups
    weight = current * s
    target = weight - step[chosen]
    # ||s * sum_m b_m - T||^2 = s^2 ||sum_m b_m - T / s||^2: search on the unscaled target
    goal = target / s
    new = codes.clone()
    total = current.clone()
    norms = (books * books).sum(-1)  # [M, K]
    for c in range(m):
        residual = goal - (total - books[c][new[:, c]])  # what codebook c should supply
        dist = norms[c].unsqueeze(0) - 2 * residual @ books[c].T  # [P, K], up to ||residual||^2
        best = dist.argmin(-1)
        keep = dist.gather(-1, new[:, c : c + 1]).squeeze(-1) <= dist.gather(-1, best.unsqueeze(-1)).squeeze(
            -1
        )
        best = torch.where(keep, new[:, c], best)  # ties keep the current code
        total = total - books[c][new[:, c]] + books[c][best]
        new[:, c] = best
    gain = ((weight - target) ** 2).sum(-1) - ((total * s - target) ** 2).sum(-1)
    gain = torch.where((new != codes).any(-1), gain, torch.zeros_like(gain))
    k = min(allowed, int((gain > 0).sum()))
    if k == 0:
        return 0
    top = gain.topk(k).indices
    flat = layer.codes.view(pairs, m)
    changed = int((new[top] != codes[top]).sum())
    flat[chosen[top]] = new[top]
    return changed


@dataclass
class PVCodeOptimizer:
    """The V-step over a model's AqlmLinears: Adam moments of dL/dW per layer, then `v_step` towards W - lr * U.

    `layers`: from `attach_probes`; `lr`: the step in weight units (Adam's direction is about +-1 per weight, so
    `lr` is roughly how far a weight may be pulled per step); `tau`: the trust region, the share of each layer's
    (row, group) pairs that may change per step (0 = none)."""

    layers: dict[str, AqlmLinear]
    lr: float = 0.03
    tau: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    candidates: float = 4.0
    steps: int = 0
    moments: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"the V-step's lr must be > 0, got {self.lr}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")

    @torch.no_grad()
    def step(self) -> int:
        """One V-step on every layer whose probe holds a gradient (then cleared); returns codes changed."""
        self.steps += 1
        b1, b2 = self.betas
        changed = 0
        for name, layer in self.layers.items():
            grad = probe_grad(layer)
            if grad is None:
                continue
            grad = grad.float()
            m, v = self.moments.get(name) or (torch.zeros_like(grad), torch.zeros_like(grad))
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            self.moments[name] = (m, v)
            direction = (m / (1 - b1**self.steps)) / ((v / (1 - b2**self.steps)).sqrt() + self.eps)
            changed += v_step(layer, self.lr * direction, self.tau, self.candidates)
            layer.__dict__[PROBE_ATTR].grad = None
        return changed

    def state_dict(self) -> dict:
        return {"steps": self.steps, "moments": self.moments}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.moments = state["steps"], state["moments"]
