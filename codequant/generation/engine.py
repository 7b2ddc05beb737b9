"""codequant's own batched decoding loop: the fast path for evaluating many prompts on a CPU.

Why not `model.generate` in a loop: one prompt at a time leaves the CPU's matrix units idle on a 135M-parameter
model, and a padded static batch keeps paying for rows that finished long ago. Here:

- prompts are sorted by length (longest first) and left-padded, with position ids counted over real tokens only,
  so a row's logits equal those of the same prompt alone (greedy output matches `model.generate`);
- the KV cache is a transformers `DynamicCache` whose layers are row slots in one preallocated buffer
  (`kvcache.SlotLayer`): appending a step writes in place; a finished row (EOS, stop sequence, extra stop rule, or
  `max_new_tokens`) leaves at once and the last row moves into its slot; waiting prompts are prefilled, in groups of
  similar length, into the free slots (continuous batching) so the batch stays full;
- one-token steps attend, per contiguous group of rows, only from the group's earliest live column on
  (`attention.py`: rows joining later are left-padded to the longest one, ~45% of the columns on a HumanEval pass);
- the token prefix all prompts share (a chat template's system turn and the instruction) is prefilled once
  (`SharedPrefix`); each prompt then runs only its own tokens;
- when only a few rows are left (the tail of a run, where a step's cost is mostly reading the weights), greedy
  rows also verify prompt-lookup drafts in the same forward: guesses copied from earlier in the row's own
  prompt and output, accepted only where they equal the model's greedy choices, so the tokens do not change;
- stop sequences are checked on each row's new text, which is detokenized incrementally (`detok.py`: a few
  tokens per step instead of the whole output);
- sampling (temperature, top-p) draws from one `torch.Generator` per request, seeded from the request's own
  seed, so a sample does not depend on which other requests share its batch, on batch size, or on resuming.

The loop is a small scheduler (`_Scheduler`): admit waiting prompts into free slots, sample one token per row,
retire the rows that finished, step the rest (with drafts in the tail). The batch mechanics live in `batch.py`,
drafting and prefill grouping in `drafts.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from codequant.errors import CodequantError
from codequant.generation.attention import live_window_attention
from codequant.generation.batch import Batch, Row, SharedPrefix, cache_kwarg, engine_unsupported
from codequant.generation.detok import IncrementalText
from codequant.generation.drafts import MAX_DRAFT, PREFILL_PAD_RATIO, length_groups, prompt_lookup
from codequant.generation.packed import packed_linears
from codequant.progress import bar as progress_bar

__all__ = [
    "MAX_DRAFT",
    "PREFILL_PAD_RATIO",
    "Batch",
    "Completion",
    "Request",
    "SamplingParams",
    "SharedPrefix",
    "cache_kwarg",
    "eos_token_ids",
    "generate",
    "length_groups",
    "pad_token_id",
    "prompt_lookup",
    "use_all_cores",
]

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
    for cand in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(model.generation_config, "pad_token_id", None),
    ):
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


class _Scheduler:
    """One `generate` call: the queue of waiting requests, the running batch, and the finished completions."""

    def __init__(
        self,
        model,
        tokenizer,
        requests: Sequence[Request],
        params: SamplingParams,
        batch_size: int,
        engine: EngineOptions,
        on_complete: Callable[[Completion], None] | None,
        bar,
    ):
        self.tokenizer, self.requests, self.params, self.batch_size = tokenizer, requests, params, batch_size
        self.on_complete, self.bar = on_complete, bar
        self.eos = eos_token_ids(model, tokenizer)
        self.pad = pad_token_id(model, tokenizer)
        self.encoded = [
            tokenizer(r.prompt, add_special_tokens=r.add_special_tokens)["input_ids"] for r in requests
        ]
        queue = sorted(range(len(requests)), key=lambda i: (-len(self.encoded[i]), i))
        self.queue = queue[::-1]  # pop() from the end takes the longest first
        self.results: list[Completion | None] = [None] * len(requests)
        self.refill_at = max(
            1, batch_size // 16
        )  # free slots that justify a prefill of waiting prompts (A/B: 1/16
        # of the batch keeps it fuller than 1/8 for the same tokens, +2% on a HumanEval pass; docs/evaluation.md)
        self.max_stop = max((len(s) for s in params.stop), default=0)
        self.batch = Batch(model, batch_size if engine.continuous else None)
        self.continuous = self.batch.slotted  # False also for models whose cache cannot be edited in slots
        if self.continuous:
            self.batch.prefix = SharedPrefix.find(model, self.encoded)
        self.speculate = engine.speculate and self.continuous and params.greedy

    def run(self) -> list[Completion]:
        while self.queue or self.batch.rows:
            self.admit()
            tokens = _sample(self.batch.logits, self.params, [r.gen for r in self.batch.rows])
            order = self.batch.keep(self.retire(tokens.tolist()))  # one device sync per step
            if self.batch.rows:
                self.step(tokens[torch.tensor(order, dtype=torch.long, device=tokens.device)])
        return [c for c in self.results if c is not None]

    def admit(self) -> None:
        """Prefill waiting prompts into the free slots (an empty batch always; a running one once enough slots
        are free that the prefill is worth it)."""
        free = self.batch_size - len(self.batch.rows)
        if not self.queue or (self.batch.rows and not (self.continuous and free >= self.refill_at)):
            return
        now, rows = time.perf_counter(), []
        for _ in range(min(free, len(self.queue))):
            i = self.queue.pop()
            gen = None if self.params.greedy else torch.Generator().manual_seed(int(self.requests[i].seed))
            rows.append(Row(i, self.encoded[i], now, gen, text=IncrementalText(self.tokenizer)))
        for group in length_groups(rows) if self.continuous else [rows]:
            self.batch.prefill(group, self.pad)

    def _take(self, row: Row, tok: int) -> str | None:
        """Append one new token to a row; the stop reason if the row is done."""
        if tok in self.eos:
            return "eos"
        row.new_ids.append(tok)
        prev = len(row.text.text)
        row.text.append(tok)
        text = row.text.text
        tail = text[max(0, prev - self.max_stop - 4) :]  # margin: bytes may merge
        if any(s in tail for s in self.params.stop) or (
            self.params.stop_rule and self.params.stop_rule(text)
        ):
            return "stop"
        if len(row.new_ids) >= self.params.max_new_tokens:
            return "length"
        return None

    def retire(self, chosen: list[int]) -> list[int]:
        """Give every row its sampled token (after any accepted drafts); finish the rows that are done. Returns
        the indices of the rows that go on."""
        keep = []
        for j, row in enumerate(self.batch.rows):
            reason = None
            for i, tok in enumerate([*row.pending, chosen[j]]):
                reason = self._take(row, tok)
                row.drafted += (
                    i < len(row.pending) and tok not in self.eos
                )  # an accepted draft became a token
                if reason is not None:
                    break
            row.pending = []
            if reason is None:
                keep.append(j)
            else:
                self._finish(row, reason)
        return keep

    def _finish(self, row: Row, reason: str) -> None:
        req = self.requests[row.req_index]
        done = Completion(
            key=req.key,
            prompt=req.prompt,
            raw_output=row.text.full(),
            stop_reason=reason,
            prompt_tokens=len(row.prompt_ids),
            new_tokens=len(row.new_ids),
            seconds=time.perf_counter() - row.started,
            token_ids=list(row.new_ids),
            drafted_tokens=row.drafted,
        )
        self.results[row.req_index] = done
        self.bar.update(1)
        if self.on_complete is not None:
            self.on_complete(done)

    def step(self, tokens: torch.Tensor) -> None:
        """Feed the sampled tokens. In the tail of a run (queue empty, few rows) a step costs about the same for up
        to `batch_size` tokens, so greedy rows also verify prompt-lookup drafts (sampling would need rejection
        sampling to stay exact)."""
        rows, drafts = self.batch.rows, None
        if self.speculate and not self.queue and len(rows) <= self.batch_size // 4:
            limit = min(MAX_DRAFT, self.batch_size // len(rows) - 1)
            drafts = [
                prompt_lookup(
                    r.prompt_ids + r.new_ids, min(limit, self.params.max_new_tokens - len(r.new_ids) - 1)
                )
                for r in rows
            ]
            drafts = drafts if any(drafts) else None
        for row, accepted in zip(rows, self.batch.step(tokens, drafts), strict=True):
            row.pending = accepted


@dataclass(frozen=True)
class EngineOptions:
    """How the engine decodes; none of it changes the tokens (tests/generation check that bit for bit).

    continuous: refill finished rows with waiting requests (continuous batching); False: static batches.
    speculate: when greedy and only a few rows are left, verify prompt-lookup drafts in the same forward.
    packed: run the model's fp32 CPU linears through oneDNN with weights reordered for the batch
        (`codequant.generation.packed`; None = when memory allows, False = torch's default kernels).
    """

    continuous: bool = True
    speculate: bool = True
    packed: bool | None = None


def generate(
    model,
    tokenizer,
    requests: Sequence[Request],
    params: SamplingParams,
    *,
    batch_size: int = 8,
    engine: EngineOptions | None = None,
    progress: bool = True,
    on_complete: Callable[[Completion], None] | None = None,
) -> list[Completion]:
    """Complete every request, `batch_size` rows at a time; returns completions in request order (`on_complete`
    sees them as they finish). `engine`: continuous batching, speculation, packed linears (`EngineOptions`)."""
    use_all_cores()
    if not requests:
        return []
    why = engine_unsupported(model)
    if why:
        raise CodequantError(
            f"codequant's engine cannot decode this model: {why}; use the hf backend "
            "(`--backend hf`, `hf_generate`)"
        )
    engine = engine or EngineOptions()
    bar = progress_bar(len(requests), "generate", unit="completion", enabled=progress, leave=False)
    try:
        with (
            torch.inference_mode(),
            packed_linears(model, batch_size, engine.packed),
            live_window_attention(model) as lw,
        ):
            scheduler = _Scheduler(model, tokenizer, requests, params, batch_size, engine, on_complete, bar)
            scheduler.batch.live_windows = lw and scheduler.continuous
            return scheduler.run()
    finally:
        bar.close()
