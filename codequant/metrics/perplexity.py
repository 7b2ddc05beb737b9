"""Perplexity over non-overlapping windows: the cheap, sample-free signal of what quantization cost.

Each window is scored on its own (no stride overlap), which is what the study and the quant bench compare
between bit widths; the absolute value depends on `seq_len`, so compare only numbers measured with the same one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from codequant.errors import CodequantError
from codequant.progress import track


class PerplexityResult(dict):
    """{'ppl', 'nll', 'tokens', 'windows', 'seq_len'}; float(result) is the perplexity."""

    def __float__(self) -> float:
        return float(self["ppl"])


def _windows(tokens: torch.Tensor, seq_len: int) -> list[torch.Tensor]:
    tokens = torch.as_tensor(tokens).long()
    rows = [tokens] if tokens.ndim == 1 else list(tokens)
    if tokens.ndim not in (1, 2):
        raise CodequantError(
            f"perplexity needs a 1-D token stream or [N, L] rows, not shape {tuple(tokens.shape)}"
        )
    out = []
    for row in rows:
        out.extend(w for w in row.split(seq_len) if w.numel() >= 2)
    return out


@torch.inference_mode()
def perplexity(
    model: Any, tokens: torch.Tensor, *, seq_len: int = 512, batch_size: int = 4, progress: bool = True
) -> PerplexityResult:
    """exp(mean next-token NLL) over windows of `seq_len` tokens (a [N, L] tensor's rows are split likewise)."""
    if seq_len < 2 or batch_size < 1:
        raise CodequantError("perplexity needs seq_len >= 2 and batch_size >= 1")
    windows = _windows(tokens, seq_len)
    if not windows:
        raise CodequantError("perplexity needs at least 2 tokens")
    device = next(model.parameters()).device
    by_len: dict[int, list[torch.Tensor]] = {}
    for w in windows:
        by_len.setdefault(w.numel(), []).append(w)  # equal lengths batch without padding
    batches = [
        torch.stack(ws[i : i + batch_size]) for n, ws in by_len.items() for i in range(0, len(ws), batch_size)
    ]
    batches = track(batches, "perplexity", unit="batch", enabled=progress, leave=False)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch = batch.to(device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            target = batch[:, 1:]
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"
            ).item()
            count += target.numel()
    finally:
        model.train(was_training)
    nll = total / count
    return PerplexityResult(ppl=math.exp(nll), nll=nll, tokens=count, windows=len(windows), seq_len=seq_len)
