"""The running batch of the decoding engine: KV cache, attention mask and positions of every row, and the
prompt prefix shared by all prompts.

Rows are admitted by prefilling their prompts (left-padded, positions counted over real tokens only, so a row's
logits equal those of its prompt alone), leave by `keep` (slot caches move only the rows that fill the holes), and
advance by `step` (one token per row, optionally with prompt-lookup drafts verified in the same forward).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from codequant.generation.attention import LiveWindows
from codequant.generation.kvcache import preallocate, slot_cache

if TYPE_CHECKING:
    from codequant.generation.detok import IncrementalText


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward's name for the KV cache: transformers 5.x calls it `cache`, earlier versions
    `past_key_values` (still accepted by 5.x, with a deprecation warning on every call)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


ATTENTION_LAYERS = ("DynamicLayer", "DynamicSlidingWindowLayer")  # cache layers holding attention keys/values


def engine_unsupported(model: torch.nn.Module) -> str | None:
    """Why the engine cannot decode `model`, or None. It drives attention KV caches (rows of keys and values,
    masked by a 2-D attention mask); a model keeping its state elsewhere (RWKV) or a recurrent state in the cache
    (Mamba: its linear-attention layers would read the whole mask as the new tokens' mask) would crash or, worse,
    decode wrong tokens without an error."""
    params = inspect.signature(model.forward).parameters
    if "cache" not in params and "past_key_values" not in params:
        return f"{type(model).__name__} keeps its state outside a KV cache (its forward takes no past_key_values)"
    from transformers import DynamicCache

    try:
        kinds = {type(layer).__name__ for layer in DynamicCache(config=model.config).layers}
    except (TypeError, ValueError, AttributeError):
        return None  # no config-built cache to inspect: transformers grows a plain one
    other = sorted(kinds - set(ATTENTION_LAYERS))
    if other:
        return (
            f"{type(model).__name__}'s cache holds {', '.join(other)} layers, not attention keys and values"
        )
    return None


@dataclass
class Row:
    req_index: int
    prompt_ids: list[int]
    started: float
    gen: torch.Generator | None
    new_ids: list[int] = field(default_factory=list)
    text: IncrementalText | None = None  # the decoded new tokens, grown token by token
    pending: list[int] = field(default_factory=list)  # accepted draft tokens, already in the cache
    drafted: int = 0


class SharedPrefix:
    """The token prefix every prompt of a call starts with (a chat template's system turn and instruction), and its
    KV cache, computed once: each prefill then runs only the prompts' own tokens (on HumanEval chat prompts the
    shared 45 of ~190 tokens, a quarter of all prefill work)."""

    MIN_TOKENS = 8  # shorter prefixes are not worth a separate forward

    def __init__(self, model, ids: list[int]):
        from transformers import DynamicCache

        self.ids = ids
        cache = DynamicCache(config=model.config)
        model(
            input_ids=torch.tensor([ids], device=model.device), use_cache=True, **{cache_kwarg(model): cache}
        )
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]

    @classmethod
    def find(cls, model, prompts: Sequence[list[int]]) -> SharedPrefix | None:
        """The longest common token prefix, leaving every prompt at least one token of its own (its logits)."""
        if len(prompts) < 2:
            return None
        first, n = prompts[0], min(len(p) for p in prompts) - 1
        for p in prompts[1:]:
            i = 0
            while i < n and p[i] == first[i]:
                i += 1
            n = i
        return cls(model, first[:n]) if n >= cls.MIN_TOKENS else None


class Batch:
    """The running batch: KV cache, 2-D attention mask and next position per row, all row-aligned.

    With `slots` (continuous batching) the cache is a `kvcache.slot_cache`, edited in place; otherwise (models with
    sliding-window layers) a plain transformers cache, prefilled once per batch and shrunk by row selection."""

    def __init__(self, model, slots: int | None = None):
        self.model = model
        self.rows: list[Row] = []
        self.cache = slot_cache(model.config, slots) if slots else None
        self.slotted = self.cache is not None
        self.prefix: SharedPrefix | None = None  # set by `generate` for slotted batches only
        self.live_windows = False  # set by `generate` while `attention.engine_attention` serves the model
        self.cache_kwarg = cache_kwarg(model)
        self.device = model.device  # bookkeeping tensors live beside the model (CPU or CUDA)
        self.mask: torch.Tensor | None = None  # [B, T] long
        self.next_pos: torch.Tensor | None = None  # [B] long
        self.logits: torch.Tensor | None = None  # [B, V] for the next token

    def _forward_prompts(self, prompts: list[tuple[int, ...]], pad_id: int):
        """Prefill prompts (left-padded) into a fresh cache; with a shared prefix, only the tokens after it."""
        from transformers import DynamicCache

        skip = len(self.prefix.ids) if self.prefix else 0
        width = max(len(p) for p in prompts) - skip
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        own = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) + skip :] = torch.tensor(p[skip:], dtype=torch.long)
            own[i, width - len(p) + skip :] = 1
        ids, own = ids.to(self.device), own.to(self.device)
        pos = skip + own.cumsum(-1) - 1
        pos = pos.masked_fill(own == 0, 1)  # as transformers' generate does for left padding
        cache = DynamicCache(config=self.model.config)
        preallocate(cache)
        mask = own
        if skip:
            for layer, (k, v) in zip(cache.layers, self.prefix.kv, strict=True):
                layer.update(k.expand(len(prompts), -1, -1, -1), v.expand(len(prompts), -1, -1, -1))
            mask = torch.cat(
                [torch.ones((len(prompts), skip), dtype=torch.long, device=self.device), own], dim=1
            )
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kwarg: cache},
        )
        return cache, mask, out.logits[:, -1, :].float()

    def prefill(self, rows: list[Row], pad_id: int):
        # n samples of one problem share a prompt: prefill it once and copy its cache rows.
        unique: dict[tuple[int, ...], int] = {}
        which = [unique.setdefault(tuple(r.prompt_ids), len(unique)) for r in rows]
        cache, mask, logits = self._forward_prompts(list(unique), pad_id)
        if len(unique) < len(rows):
            idx = torch.tensor(which, dtype=torch.long, device=self.device)
            cache.batch_select_indices(idx)
            mask, logits = mask[idx], logits[idx]
        next_pos = mask.sum(-1)
        if not self.slotted:
            if self.rows:
                raise RuntimeError("a batch without slots is prefilled only when empty")
            self.rows, self.cache, self.mask, self.next_pos, self.logits = rows, cache, mask, next_pos, logits
            return
        for slot, layer in zip(self.cache.layers, cache.layers, strict=True):
            slot.place(layer.keys, layer.values)
        if self.rows:
            ta, tb = self.mask.shape[1], mask.shape[1]
            t = max(ta, tb)
            pad = torch.nn.functional.pad
            mask = torch.cat([pad(self.mask, (t - ta, 0)), pad(mask, (t - tb, 0))])
            next_pos, logits = torch.cat([self.next_pos, next_pos]), torch.cat([self.logits, logits])
        self.rows, self.mask, self.next_pos, self.logits = self.rows + rows, mask, next_pos, logits

    def keep(self, keep: list[int]) -> list[int]:
        """Drop the rows not in `keep` (ascending indices), then trim cache columns that are padding for every
        remaining row. Returns the old index of each remaining row, in its new order (slots reorder rows: the last
        rows move into the freed slots, so only they are copied)."""
        if len(keep) == len(self.rows):
            return keep
        if not keep:
            self.rows = []
            self.mask = self.next_pos = self.logits = None
            if self.slotted:
                for layer in self.cache.layers:
                    layer.move_rows([], 0)
            else:
                self.cache = None
            return keep
        order = keep
        if self.slotted:
            n, kept = len(keep), set(keep)
            holes = [i for i in range(n) if i not in kept]
            movers = [j for j in keep if j >= n]
            order = list(range(n))
            for hole, mover in zip(holes, movers, strict=True):
                order[hole] = mover
            for layer in self.cache.layers:
                layer.move_rows(list(zip(holes, movers, strict=True)), n)
        else:
            self.cache.batch_select_indices(torch.tensor(keep, dtype=torch.long, device=self.device))
        idx = torch.tensor(order, dtype=torch.long, device=self.device)
        self.rows = [self.rows[i] for i in order]
        self.mask, self.next_pos, self.logits = self.mask[idx], self.next_pos[idx], self.logits[idx]
        live = self.mask.any(dim=0).nonzero()
        start = int(live[0]) if len(live) else 0
        if start > 0:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                if self.slotted:
                    layer.trim(start)
                else:
                    layer.keys = layer.keys[..., start:, :]
                    layer.values = layer.values[..., start:, :]
        return order

    def step(self, tokens: torch.Tensor, drafts: list[list[int]] | None = None) -> list[list[int]]:
        """Feed one token per row (and its draft tokens, if any) and keep the logits of the next token.

        With drafts, the forward also scores each row's guessed continuation; the longest prefix of the draft that
        equals the model's own greedy choices is accepted (returned per row, already in the cache) and the cache
        columns of the rejected rest are masked out, so the output is what one-token steps would give."""
        n = 1 + max((len(d) for d in drafts), default=0) if drafts else 1
        rows = len(self.rows)
        ids = tokens[:, None].repeat(1, n)
        for b, d in enumerate(drafts or []):
            ids[b, 1 : 1 + len(d)] = torch.tensor(d, dtype=torch.long)
        self.mask = torch.cat([self.mask, torch.ones((rows, n), dtype=torch.long, device=self.device)], dim=1)
        pos = self.next_pos[:, None] + torch.arange(n, device=self.device)
        extra = {self.cache_kwarg: self.cache}
        if self.live_windows and n == 1:
            extra["live_windows"] = LiveWindows.plan(self.mask)
        out = self.model(
            input_ids=ids, attention_mask=self.mask, position_ids=pos, use_cache=True, **extra
        )  # the cache is updated in place
        if n == 1:
            self.next_pos = self.next_pos + 1
            self.logits = out.logits[:, -1, :].float()
            return [[] for _ in range(rows)]
        logits = out.logits.float()
        best = logits.argmax(-1).tolist()
        accepted = []
        for b, d in enumerate(drafts):
            j = 0
            while j < len(d) and d[j] == best[b][j]:
                j += 1
            accepted.append(d[:j])
            if j < n - 1:
                self.mask[b, self.mask.shape[1] - (n - 1 - j) :] = 0
        taken = torch.tensor([len(a) for a in accepted], dtype=torch.long, device=self.device)
        self.logits = logits[torch.arange(rows, device=self.device), taken]
        self.next_pos = self.next_pos + 1 + taken
        return accepted
