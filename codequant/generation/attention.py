"""Decode-step attention that skips each row group's padding columns.

Why: the engine's batch is right-aligned: every row ends at the last cache column and a row that joined later (a
shorter context) is left-padded up to the longest row. Attention reads every column of every row, so on a HumanEval
pass at batch 32 a third or more of the keys and values it reads from memory belong to padding, and a decode step
over ~1 GB of fp32 cache is bound by that reading, not by arithmetic.

How: `LiveWindows.plan` cuts the rows (in slot order) into contiguous groups and gives each group the columns from
its earliest live column to the end; `engine_attention` runs transformers' SDPA attention once per group on views of
the cache (no copy) and stacks the outputs. Masked columns contribute exactly zero either way, so only the order of
floating-point sums can move (~1e-7 relative), as with any kernel change. It applies to one-token steps of models
using SDPA; everything else (prefill, draft verification, eager attention) goes through transformers' own function.
The plan reaches the attention layers as a forward keyword (`live_windows`), which transformers passes down to the
attention function; a model that does not pass keywords down simply never sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

NAME = "codequant_engine"
GROUP_COST_COLUMNS = 24  # fixed cost of one more attention call, in row-columns it must save to be worth it


@dataclass(frozen=True)
class LiveWindows:
    """Row groups of one decode step: rows `[start, end)` attend to columns `[first, T)` only."""

    groups: tuple[tuple[int, int, int], ...]

    @classmethod
    def plan(cls, mask: torch.Tensor, group_cost: int = GROUP_COST_COLUMNS) -> LiveWindows | None:
        """Groups minimizing rows x columns read plus `group_cost` per group (dynamic programming over the rows in
        slot order), from the batch's 2-D mask [rows, T]. None when no column can be skipped."""
        first = mask.argmax(-1).tolist()  # first live column per row (rows always hold at least one)
        if not any(first):
            return None
        rows, width = len(first), mask.shape[1]
        best = [0] + [None] * rows  # best[j]: cost of grouping rows [0, j)
        cut = [0] * (rows + 1)
        for j in range(1, rows + 1):
            lo = width
            for i in range(j - 1, -1, -1):  # group [i, j)
                lo = min(lo, first[i])
                cost = best[i] + group_cost + (j - i) * (width - lo)
                if best[j] is None or cost < best[j]:
                    best[j], cut[j] = cost, i
        groups, j = [], rows
        while j > 0:
            i = cut[j]
            groups.append((i, j, min(first[i:j])))
            j = i
        groups.reverse()
        if len(groups) == 1 and groups[0][2] == 0:
            return None
        return cls(tuple(groups))


def engine_attention(
    module, query, key, value, attention_mask, *args, live_windows: LiveWindows | None = None, **kwargs
):
    """transformers' SDPA attention, once per row group of `live_windows` on one-token steps."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if live_windows is None or query.shape[2] != 1 or attention_mask is None or attention_mask.ndim != 4:
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)
    outs = [
        sdpa_attention_forward(
            module,
            query[a:b],
            key[a:b, :, c:],
            value[a:b, :, c:],
            attention_mask[a:b, :, :, c:],
            *args,
            **kwargs,
        )[0]
        for a, b, c in live_windows.groups
    ]
    return torch.cat(outs), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, engine_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # the same masks as SDPA: prefill is unchanged


@contextmanager
def live_window_attention(model: torch.nn.Module) -> Iterator[bool]:
    """Within the block, the model's SDPA attention layers use `engine_attention` (yields whether they do:
    models on eager or other kernels are left alone)."""
    configs = [
        c
        for c in {id(c): c for c in (model.config, getattr(model.config, "text_config", None))}.values()
        if c is not None and getattr(c, "_attn_implementation_internal", None) == "sdpa"
    ]
    if not configs:
        yield False
        return
    _register()
    for c in configs:
        c._attn_implementation_internal = NAME
    try:
        yield True
    finally:
        for c in configs:
            c._attn_implementation_internal = "sdpa"
