"""codequant's own batched decoding loop: the fast path for evaluating many prompts on a CPU.

Why not `model.generate` in a loop: one prompt at a time leaves the CPU's matrix units idle on a 135M-parameter
model, and a padded static batch keeps paying for rows that finished long ago. Here:

- prompts are sorted by length (longest first) and left-padded, with position ids counted over real tokens only,
  so a row's logits equal those of the same prompt alone (greedy output matches `model.generate`);
- the KV cache is a transformers `DynamicCache` whose layers append in place into preallocated room
  (`kvcache.PreallocatedLayer`) instead of concatenating every step; a finished row (EOS, stop sequence, extra
  stop rule, or `max_new_tokens`) leaves the batch at once, and waiting prompts are prefilled and merged into the running
  batch (continuous batching) so the batch stays full;
- stop sequences are checked incrementally on the decoded new text of each row;
- sampling (temperature, top-p) draws from one `torch.Generator` per request, seeded from the request's own
  seed, so a sample does not depend on which other requests share its batch, on batch size, or on resuming.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

StopRule = Callable[[str], bool]


@dataclass(frozen=True)
class Request:
    """One completion to produce. `key` is the caller's handle (e.g. (task_id, sample_index))."""

    prompt: str
    key: Any = None
    seed: int = 0
    add_special_tokens: bool = True


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings shared by a call. temperature 0 is greedy."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    stop_rule: StopRule | None = None  # extra predicate on the new text (e.g. "a fenced block is closed")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Completion:
    """The record every backend produces for one request."""

    key: Any
    prompt: str
    raw_output: str
    stop_reason: str  # "stop" | "eos" | "length"
    prompt_tokens: int
    new_tokens: int
    seconds: float  # from the request's admission (prefill) to its last token
    token_ids: list[int] = field(default_factory=list, repr=False)


def eos_token_ids(model, tokenizer) -> set[int]:
    """EOS ids from the model's generation config and the tokenizer (chat models often end on <|im_end|>)."""
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for src in (getattr(gen_cfg, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if src is None:
            continue
        ids.update(src if isinstance(src, list | tuple) else [src])
    return ids


def pad_token_id(model, tokenizer) -> int:
    for cand in (getattr(tokenizer, "pad_token_id", None), getattr(model.generation_config, "pad_token_id", None)):
        if cand is not None:
            return int(cand)
    eos = sorted(eos_token_ids(model, tokenizer))
    return eos[0] if eos else 0


def use_all_cores() -> int:
    """Run torch on every core this process may use (the default may count hyper-threads or fewer)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward's name for the KV cache: transformers 5.x calls it `cache`, earlier versions
    `past_key_values` (still accepted by 5.x, with a deprecation warning on every call)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _sample(logits: torch.Tensor, params: SamplingParams, gens: list[torch.Generator | None]) -> torch.Tensor:
    """Next token per row: argmax when greedy, else temperature + nucleus sampling with each row's generator."""
    if params.greedy:
        return torch.argmax(logits, dim=-1)
    scores = logits.float() / params.temperature
    probs = torch.softmax(scores, dim=-1)
    if params.top_p < 1.0:
        sorted_p, sorted_i = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass strictly above each token
        sorted_p = sorted_p.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_i, sorted_p)
    out = torch.empty(probs.shape[0], dtype=torch.long)
    for r in range(probs.shape[0]):
        out[r] = torch.multinomial(probs[r], 1, generator=gens[r])[0]
    return out


@dataclass
class _Row:
    req_index: int
    prompt_ids: list[int]
    started: float
    gen: torch.Generator | None
    new_ids: list[int] = field(default_factory=list)
    text: str = ""


class _Batch:
    """The running batch: KV cache, 2-D attention mask and next position per row, all row-aligned."""

    def __init__(self, model):
        self.model = model
        self.rows: list[_Row] = []
        self.cache = None
        self.cache_kwarg = cache_kwarg(model)
        self.mask: torch.Tensor | None = None  # [B, T] long
        self.next_pos: torch.Tensor | None = None  # [B] long
        self.logits: torch.Tensor | None = None  # [B, V] for the next token

    def prefill(self, rows: list[_Row], pad_id: int):
        from transformers import DynamicCache

        from codequant.generation.kvcache import preallocate

        # n samples of one problem share a prompt: prefill it once and copy its cache rows.
        unique: dict[tuple[int, ...], int] = {}
        which = [unique.setdefault(tuple(r.prompt_ids), len(unique)) for r in rows]
        prompts = list(unique)
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
        pos = mask.cumsum(-1) - 1
        pos = pos.masked_fill(mask == 0, 1)  # as transformers' generate does for left padding
        cache = DynamicCache(config=self.model.config)
        preallocate(cache)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                         **{self.cache_kwarg: cache})
        logits = out.logits[:, -1, :].float()
        if len(prompts) < len(rows):
            idx = torch.tensor(which, dtype=torch.long)
            cache.batch_select_indices(idx)
            mask, logits = mask[idx], logits[idx]
        next_pos = mask.sum(-1)
        if not self.rows:
            self.rows, self.cache, self.mask, self.next_pos, self.logits = rows, cache, mask, next_pos, logits
            return
        self._merge(cache, mask)
        self.rows = self.rows + rows
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.logits = torch.cat([self.logits, logits])

    def _merge(self, cache, mask: torch.Tensor) -> None:
        """Append another batch's cache below ours, left-padding the shorter one (padding is masked out)."""
        ta, tb = self.mask.shape[1], mask.shape[1]
        t = max(ta, tb)

        def lpad(x: torch.Tensor, n: int) -> torch.Tensor:
            if n == 0:
                return x
            shape = list(x.shape)
            shape[-2] = n
            return torch.cat([x.new_zeros(shape), x], dim=-2)

        for la, lb in zip(self.cache.layers, cache.layers, strict=True):
            la.keys = torch.cat([lpad(la.keys, t - ta), lpad(lb.keys, t - tb)], dim=0)
            la.values = torch.cat([lpad(la.values, t - ta), lpad(lb.values, t - tb)], dim=0)
        self.mask = torch.cat([
            torch.nn.functional.pad(self.mask, (t - ta, 0)), torch.nn.functional.pad(mask, (t - tb, 0))
        ])

    def keep(self, keep: list[int]) -> None:
        """Drop the rows not in `keep`, then trim cache columns that are padding for every remaining row."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = self.mask = self.next_pos = self.logits = None
            return
        idx = torch.tensor(keep, dtype=torch.long)
        self.cache.batch_select_indices(idx)
        self.mask, self.next_pos = self.mask[idx], self.next_pos[idx]
        live = self.mask.any(dim=0).nonzero()
        start = int(live[0]) if len(live) else 0
        if start > 0:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[..., start:, :]
                layer.values = layer.values[..., start:, :]

    def step(self, tokens: torch.Tensor) -> None:
        """Feed one token per row and keep the logits of the next."""
        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=torch.long)], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.next_pos[:, None],
                         use_cache=True, **{self.cache_kwarg: self.cache})  # the cache is updated in place
        self.next_pos = self.next_pos + 1
        self.logits = out.logits[:, -1, :].float()


PREFILL_PAD_RATIO = 0.8  # a prefill group's shortest prompt is at least this fraction of its longest


def length_groups(rows: list[_Row], ratio: float = PREFILL_PAD_RATIO) -> list[list[_Row]]:
    """Split rows (longest prompt first) into prefill groups of similar length.

    Prefill is compute-bound and pays for every left-padding position: 32 HumanEval chat prompts of 94-322 tokens
    padded to the longest cost twice their real tokens. Prefilling groups whose lengths stay within `ratio` of
    each other and merging them (a cache copy, cheap next to the forward) bounds the waste to 1/ratio.
    """
    groups: list[list[_Row]] = []
    for row in rows:
        if groups and len(row.prompt_ids) >= ratio * len(groups[-1][0].prompt_ids):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _mergeable(model) -> bool:
    """Continuous batching edits cache layers directly; only plain full-attention layers allow that."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    return all(type(layer) is DynamicLayer for layer in cache.layers) or not cache.layers


def generate(model, tokenizer, requests: Sequence[Request], params: SamplingParams, *, batch_size: int = 8,
             continuous: bool = True, progress: bool = True,
             on_complete: Callable[[Completion], None] | None = None) -> list[Completion]:
    """Complete every request; returns completions in request order (`on_complete` sees them as they finish)."""
    from tqdm.auto import tqdm

    use_all_cores()
    if not requests:
        return []
    eos = eos_token_ids(model, tokenizer)
    pad = pad_token_id(model, tokenizer)
    encoded = [tokenizer(r.prompt, add_special_tokens=r.add_special_tokens)["input_ids"] for r in requests]
    queue = sorted(range(len(requests)), key=lambda i: (-len(encoded[i]), i))
    queue.reverse()  # pop() from the end takes the longest first
    results: list[Completion | None] = [None] * len(requests)
    continuous = continuous and _mergeable(model)
    refill_at = max(1, batch_size // 8)  # free slots that justify a prefill of waiting prompts
    max_stop = max((len(s) for s in params.stop), default=0)
    bar = tqdm(total=len(requests), desc="generate", unit="completion", disable=not progress, leave=False)

    def admit(n: int) -> list[_Row]:
        rows = []
        now = time.perf_counter()
        for _ in range(min(n, len(queue))):
            i = queue.pop()
            gen = None
            if not params.greedy:
                gen = torch.Generator().manual_seed(int(requests[i].seed))
            rows.append(_Row(i, encoded[i], now, gen))
        return rows

    batch = _Batch(model)
    with torch.inference_mode():
        while queue or batch.rows:
            free = batch_size - len(batch.rows)
            if queue and (not batch.rows or (continuous and free >= refill_at)):
                groups = length_groups(admit(free)) if continuous else [admit(free)]
                for group in groups:
                    batch.prefill(group, pad)
            tokens = _sample(batch.logits, params, [r.gen for r in batch.rows])
            keep = []
            for j, row in enumerate(batch.rows):
                tok = int(tokens[j])
                reason = None
                if tok in eos:
                    reason = "eos"
                else:
                    row.new_ids.append(tok)
                    prev = len(row.text)
                    row.text = tokenizer.decode(row.new_ids, skip_special_tokens=True)
                    tail = row.text[max(0, prev - max_stop - 4):]  # margin: bytes may merge
                    if any(s in tail for s in params.stop) or (params.stop_rule and params.stop_rule(row.text)):
                        reason = "stop"
                    elif len(row.new_ids) >= params.max_new_tokens:
                        reason = "length"
                if reason is None:
                    keep.append(j)
                    continue
                req = requests[row.req_index]
                done = Completion(key=req.key, prompt=req.prompt, raw_output=row.text, stop_reason=reason,
                                  prompt_tokens=len(row.prompt_ids), new_tokens=len(row.new_ids),
                                  seconds=time.perf_counter() - row.started, token_ids=list(row.new_ids))
                results[row.req_index] = done
                bar.update(1)
                if on_complete is not None:
                    on_complete(done)
            batch.keep(keep)
            if batch.rows:
                batch.step(tokens[torch.tensor(keep, dtype=torch.long)])
    bar.close()
    return [c for c in results if c is not None]
