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

from codequant.finetune.pv_state import check_state_dtype
from codequant.quant.aqlm.linear import AqlmLinear

PROBE_ATTR = "_straight_through"  # the attribute AqlmLinear.forward adds (with zero value) to its weight


def aqlm_layers(model: nn.Module) -> dict[str, AqlmLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AqlmLinear)}


def attach_probes(model: nn.Module) -> dict[str, AqlmLinear]:
    """Give every AqlmLinear a zero probe whose `.grad` collects dL/dW; returns the layers by name.

    The probe's value is one fp32 zero broadcast to [out, in] (stride 0): it costs 4 bytes, not 4 per weight; its
    gradient is a full fp32 [out, in] tensor, which `PVCodeOptimizer(stream=True)` folds into the moments and
    frees as soon as the backward pass produces it."""
    layers = aqlm_layers(model)
    for layer in layers.values():
        zero = torch.zeros(1, 1, device=layer.codes.device).expand(layer.out_features, layer.in_features)
        probe = nn.Parameter(zero, requires_grad=True)
        object.__setattr__(layer, PROBE_ATTR, probe)  # not registered: never in a state dict or an export
    return layers


def detach_probes(model: nn.Module) -> None:
    for layer in aqlm_layers(model).values():
        layer.__dict__.pop(PROBE_ATTR, None)


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
    (row, group) pairs that may change per step (0 = none).

    Memory (codequant.finetune.pv_state, whose arithmetic `study plan` uses): `stream=True` folds each layer's
    gradient into its moments by a hook the moment the backward pass has it, then frees it, so one layer's gradient
    exists at a time (use it when every backward is followed by a `step`, i.e. `pv_every` 1); otherwise the
    gradients accumulate in the probes until `step`. `state_dtype`: the moments' dtype (updated in fp32, rounded
    to it); `offload`: keep the moments in host memory, one layer on the device at a time."""

    layers: dict[str, AqlmLinear]
    lr: float = 0.03
    tau: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    candidates: float = 4.0
    state_dtype: str = "float32"
    offload: bool = False
    stream: bool = False
    steps: int = 0
    moments: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)  # layers whose moments took a gradient since the last step

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"the V-step's lr must be > 0, got {self.lr}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        check_state_dtype(self.state_dtype)
        self._hooks = []
        if self.stream:
            for name, layer in self.layers.items():
                probe = layer.__dict__[PROBE_ATTR]
                self._hooks.append(probe.register_post_accumulate_grad_hook(self._hook(name)))

    def _hook(self, name: str):
        def fold(probe: torch.Tensor) -> None:
            self._absorb(name, probe.grad)
            probe.grad = None

        return fold

    def close(self) -> None:
        """Remove the streaming hooks (the probes themselves go with `detach_probes`)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _state_device(self, device: torch.device) -> torch.device:
        return torch.device("cpu") if self.offload else device

    @torch.no_grad()
    def _absorb(self, name: str, grad: torch.Tensor) -> None:
        """Adam's moment updates with one gradient of dL/dW, in fp32, stored back in the state's dtype/place."""
        b1, b2 = self.betas
        g = grad.float()
        stored = self.moments.get(name)
        if stored is None:
            dtype = getattr(torch, self.state_dtype)
            place = self._state_device(g.device)
            pin = place.type == "cpu" and g.device.type == "cuda"
            stored = tuple(torch.zeros(g.shape, dtype=dtype, device=place, pin_memory=pin) for _ in range(2))
            self.moments[name] = stored
        m, v = (t.to(g.device, torch.float32) for t in stored)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        for kept, new in zip(stored, (m, v), strict=True):
            if kept is not new:
                kept.copy_(new, non_blocking=False)
        self.pending.add(name)

    @torch.no_grad()
    def step(self) -> int:
        """One V-step on every layer whose gradient arrived since the last step (the probes' are then cleared);
        returns codes changed."""
        self.steps += 1
        b1, b2 = self.betas
        changed = 0
        for name, layer in self.layers.items():
            probe = layer.__dict__.get(PROBE_ATTR)
            if probe is not None and probe.grad is not None:
                self._absorb(name, probe.grad)
                probe.grad = None
            if name not in self.pending:
                continue
            device = layer.codes.device
            m, v = (t.to(device, torch.float32) for t in self.moments[name])
            direction = (m / (1 - b1**self.steps)).div_((v / (1 - b2**self.steps)).sqrt_().add_(self.eps))
            del m, v
            changed += v_step(layer, direction.mul_(self.lr), self.tau, self.candidates)
        self.pending.clear()
        return changed

    def state_bytes(self) -> int:
        """Bytes the PV state holds now: the moments and any gradient waiting in a probe (the probes' own values
        are stride-0 zeros)."""
        held = sum(t.nbytes for pair in self.moments.values() for t in pair)
        for layer in self.layers.values():
            probe = layer.__dict__.get(PROBE_ATTR)
            if probe is not None:
                held += probe.untyped_storage().nbytes() + (0 if probe.grad is None else probe.grad.nbytes)
        return held

    def state_dict(self) -> dict:
        return {"steps": self.steps, "moments": self.moments}

    def load_state_dict(self, state: dict) -> None:
        dtype = getattr(torch, self.state_dtype)
        self.steps = state["steps"]
        self.moments = {}
        for name, pair in state["moments"].items():
            device = self._state_device(self.layers[name].codes.device)
            self.moments[name] = tuple(t.to(device, dtype) for t in pair)
