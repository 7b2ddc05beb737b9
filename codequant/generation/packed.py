"""oneDNN-packed fp32 linears for decoding on a CPU.

Why: the engine's decode step is a handful of [rows x hidden] @ [hidden x out] products, and torch's default fp32
path (MKL's sgemm) is slow at those shapes on the CPUs this project runs on (AMD EPYC): 150-190 GFLOP/s for
SmolLM2's block linears at 32 rows and 93 GFLOP/s for its 49,152-row lm_head, where oneDNN with the weight
reordered once for that batch reaches 290-460 (lm_head 19.5 ms -> 5.1 ms). `packed_linears` swaps that kernel in
for the length of one `generate` call and restores the model afterwards.

What it costs: a second copy of every packed weight while the call runs; it packs only while the linear weights
take less than half of the memory still available. Results: oneDNN sums in another order than MKL, so logits move
by ~1e-5 relative; greedy tokens flip only where two logits tie that closely (none of the 164 HumanEval rows of
SmolLM2, bench/generation.py). Quantized layers (codequant's own modules) are not `nn.Linear` and are left alone.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

MEMORY_SHARE = 0.5  # pack only while the packed copies take at most this share of the available memory


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux: MemAvailable), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def packable_linears(model: nn.Module) -> list[nn.Linear]:
    """The model's plain fp32 CPU linears, when this torch has the oneDNN linear ops (else none)."""
    ops = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or not hasattr(ops, "_linear_pointwise"):
        return []
    return [
        m
        for m in model.modules()
        if type(m) is nn.Linear and m.weight.device.type == "cpu" and m.weight.dtype == torch.float32
    ]


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32 or torch.is_grad_enabled():
        return nn.Linear.forward(self, x)
    return torch.ops.mkldnn._linear_pointwise(x, self._codequant_packed, self.bias, "none", [], "")


@contextmanager
def packed_linears(model: nn.Module, rows: int, enabled: bool | None = None) -> Iterator[int]:
    """Within the block, the model's plain fp32 CPU linears run through oneDNN with weights reordered for `rows`
    rows. Yields how many linears were packed (0: disabled, no oneDNN, a GPU model, or not enough memory).
    `enabled`: None = auto (pack when it fits), False = never, True = whenever oneDNN is there."""
    linears = packable_linears(model) if enabled is not False else []
    size = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    if linears and enabled is None and size > MEMORY_SHARE * available_memory():
        linears = []
    for m in linears:
        m._codequant_packed = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), max(1, rows))
        m.forward = types.MethodType(_packed_forward, m)
    try:
        yield len(linears)
    finally:
        for m in linears:
            del m.forward, m._codequant_packed
