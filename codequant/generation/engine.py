"""codequant's own batched decoding loop: the fast path for evaluating many prompts on a CPU.

Why not `model.generate` in a loop: one prompt at a time leaves the CPU's matrix units idle on a 135M-parameter
model, and a padded static batch keeps paying for rows that finished long ago. Here:

- prompts are sorted by length (longest first) and left-padded, with position ids counted over real tokens only,
  so a row's logits equal those of the same prompt alone (greedy output matches `model.generate`);
- the KV cache is a transformers `DynamicCache` whose layers are row slots in one preallocated buffer
  (`kvcache.SlotLayer`): appending a step writes in place; a finished row (EOS, stop sequence, extra stop rule, or
  `max_new_tokens`) leaves at once and the last row moves into its slot; waiting prompts are prefilled, in groups of
  similar length, into the free slots (continuous batching) so the batch stays full;
- the token prefix all prompts share (a chat template's system turn and the instruction) is prefilled once
  (`SharedPrefix`); each prompt then runs only its own tokens;
- when only a few rows are left (the tail of a run, where a step's cost is mostly reading the weights), greedy
  rows also verify prompt-lookup drafts in the same forward: guesses copied from earlier in the row's own
  prompt and output, accepted only where they equal the model's greedy choices, so the tokens do not change;
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
    drafted_tokens: int = 0  # new tokens that came from accepted prompt-lookup drafts (greedy only)


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
    probs = probs.cpu()  # the requests' generators live on the CPU
    out = torch.empty(probs.shape[0], dtype=torch.long)
    for r in range(probs.shape[0]):
        out[r] = torch.multinomial(probs[r], 1, generator=gens[r])[0]
    return out.to(logits.device)


@dataclass
class _Row:
    req_index: int
    prompt_ids: list[int]
    started: float
    gen: torch.Generator | None
    new_ids: list[int] = field(default_factory=list)
    text: str = ""
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
        model(input_ids=torch.tensor([ids], device=model.device), use_cache=True, **{cache_kwarg(model): cache})
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


class _Batch:
    """The running batch: KV cache, 2-D attention mask and next position per row, all row-aligned.

    With `slots` (continuous batching) the cache is a `kvcache.slot_cache`, edited in place; otherwise (models with
    sliding-window layers) a plain transformers cache, prefilled once per batch and shrunk by row selection."""

    def __init__(self, model, slots: int | None = None):
        from codequant.generation.kvcache import slot_cache

        self.model = model
        self.rows: list[_Row] = []
        self.cache = slot_cache(model.config, slots) if slots else None
        self.slotted = self.cache is not None
        self.prefix: SharedPrefix | None = None  # set by `generate` for slotted batches only
        self.cache_kwarg = cache_kwarg(model)
        self.device = model.device  # bookkeeping tensors live beside the model (CPU or CUDA)
        self.mask: torch.Tensor | None = None  # [B, T] long
        self.next_pos: torch.Tensor | None = None  # [B] long
        self.logits: torch.Tensor | None = None  # [B, V] for the next token

    def _forward_prompts(self, prompts: list[tuple[int, ...]], pad_id: int):
        """Prefill prompts (left-padded) into a fresh cache; with a shared prefix, only the tokens after it."""
        from transformers import DynamicCache

        from codequant.generation.kvcache import preallocate

        skip = len(self.prefix.ids) if self.prefix else 0
        width = max(len(p) for p in prompts) - skip
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        own = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) + skip:] = torch.tensor(p[skip:], dtype=torch.long)
            own[i, width - len(p) + skip:] = 1
        ids, own = ids.to(self.device), own.to(self.device)
        pos = skip + own.cumsum(-1) - 1
        pos = pos.masked_fill(own == 0, 1)  # as transformers' generate does for left padding
        cache = DynamicCache(config=self.model.config)
        preallocate(cache)
        mask = own
        if skip:
            for layer, (k, v) in zip(cache.layers, self.prefix.kv, strict=True):
                layer.update(k.expand(len(prompts), -1, -1, -1), v.expand(len(prompts), -1, -1, -1))
            mask = torch.cat([torch.ones((len(prompts), skip), dtype=torch.long, device=self.device), own], dim=1)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                         **{self.cache_kwarg: cache})
        return cache, mask, out.logits[:, -1, :].float()

    def prefill(self, rows: list[_Row], pad_id: int):
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
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=pos, use_cache=True,
                         **{self.cache_kwarg: self.cache})  # the cache is updated in place
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
                self.mask[b, self.mask.shape[1] - (n - 1 - j):] = 0
        taken = torch.tensor([len(a) for a in accepted], dtype=torch.long, device=self.device)
        self.logits = logits[torch.arange(rows, device=self.device), taken]
        self.next_pos = self.next_pos + 1 + taken
        return accepted


def prompt_lookup(history: Sequence[int], limit: int, ngram: int = 3) -> list[int]:
    """Prompt-lookup drafting: find the latest earlier occurrence of the last `ngram` tokens (then shorter ones)
    in the row's prompt + output and guess that what followed it then follows now (code repeats names, signatures,
    whole lines; small models repeat themselves). No draft model: the guesses cost only the verification."""
    size = len(history)
    for n in range(ngram, 0, -1):
        if size <= n:
            continue
        key = list(history[size - n:])
        for start in range(size - n - 1, -1, -1):
            if history[start] == key[0] and list(history[start : start + n]) == key:
                return list(history[start + n : start + n + limit])
    return []


MAX_DRAFT = 8  # draft tokens per row at most


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


def generate(model, tokenizer, requests: Sequence[Request], params: SamplingParams, *, batch_size: int = 8,
             continuous: bool = True, speculate: bool = True, progress: bool = True,
             on_complete: Callable[[Completion], None] | None = None) -> list[Completion]:
    """Complete every request; returns completions in request order (`on_complete` sees them as they finish).

    `speculate`: when greedy and only a few rows are left, verify prompt-lookup drafts in the same forward."""
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
    refill_at = max(1, batch_size // 8)  # free slots that justify a prefill of waiting prompts
    max_stop = max((len(s) for s in params.stop), default=0)
    bar = tqdm(total=len(requests), desc="generate", unit="completion", disable=not progress, leave=False)

    def take(row: _Row, tok: int) -> str | None:
        """Append one new token to a row; the stop reason if the row is done."""
        if tok in eos:
            return "eos"
        row.new_ids.append(tok)
        prev = len(row.text)
        row.text = tokenizer.decode(row.new_ids, skip_special_tokens=True)
        tail = row.text[max(0, prev - max_stop - 4):]  # margin: bytes may merge
        if any(s in tail for s in params.stop) or (params.stop_rule and params.stop_rule(row.text)):
            return "stop"
        if len(row.new_ids) >= params.max_new_tokens:
            return "length"
        return None

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

    batch = _Batch(model, batch_size if continuous else None)
    continuous = batch.slotted  # False also for models whose cache cannot be edited in slots
    if continuous:
        with torch.inference_mode():
            batch.prefix = SharedPrefix.find(model, encoded)
    speculate = speculate and continuous and params.greedy
    with torch.inference_mode():
        while queue or batch.rows:
            free = batch_size - len(batch.rows)
            if queue and (not batch.rows or (continuous and free >= refill_at)):
                groups = length_groups(admit(free)) if continuous else [admit(free)]
                for group in groups:
                    batch.prefill(group, pad)
            tokens = _sample(batch.logits, params, [r.gen for r in batch.rows])
            keep = []
            chosen = tokens.tolist()  # one device sync per step
            for j, row in enumerate(batch.rows):
                reason = None
                for i, tok in enumerate([*row.pending, chosen[j]]):
                    reason = take(row, tok)
                    row.drafted += i < len(row.pending) and tok not in eos  # an accepted draft became a token
                    if reason is not None:
                        break
                row.pending = []
                if reason is None:
                    keep.append(j)
                    continue
                req = requests[row.req_index]
                done = Completion(key=req.key, prompt=req.prompt, raw_output=row.text, stop_reason=reason,
                                  prompt_tokens=len(row.prompt_ids), new_tokens=len(row.new_ids),
                                  seconds=time.perf_counter() - row.started, token_ids=list(row.new_ids),
                                  drafted_tokens=row.drafted)
                results[row.req_index] = done
                bar.update(1)
                if on_complete is not None:
                    on_complete(done)
            order = batch.keep(keep)
            if batch.rows:
                drafts = None
                # Few rows left (the tail of a run): a step costs about the same for up to `batch_size` tokens,
                # so the spare room verifies prompt-lookup drafts (greedy only: sampling would need rejection
                # sampling to stay exact).
                if speculate and not queue and len(batch.rows) <= batch_size // 4:
                    limit = min(MAX_DRAFT, batch_size // len(batch.rows) - 1)
                    drafts = [prompt_lookup(r.prompt_ids + r.new_ids,
                                            min(limit, params.max_new_tokens - len(r.new_ids) - 1))
                              for r in batch.rows]
                    drafts = drafts if any(drafts) else None
                accepted = batch.step(tokens[torch.tensor(order, dtype=torch.long, device=tokens.device)], drafts)
                for row, acc in zip(batch.rows, accepted, strict=True):
                    row.pending = acc
    bar.close()
    return [c for c in results if c is not None]
