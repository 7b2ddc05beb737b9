"""The reference backend: plain `model.generate`, producing the same `Completion` records as the engine.

It exists to compare against (speed in bench/generation.py, greedy identity in the tests) and as a fallback for
models whose cache the engine cannot batch. Stop sequences and the extra stop rule become a StoppingCriteria
checked on the decoded new text, exactly as the engine checks them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from codequant.generation.engine import Completion, Request, SamplingParams, eos_token_ids, pad_token_id
from codequant.progress import track


class _TextStop:
    """StoppingCriteria for one row at a time (batch 1): stop sequence or stop rule on the new text."""

    def __init__(self, tokenizer, prompt_len: int, params: SamplingParams):
        self.tokenizer, self.prompt_len, self.params = tokenizer, prompt_len, params
        self.hit = False

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
        hit = any(s in text for s in self.params.stop) or bool(
            self.params.stop_rule and self.params.stop_rule(text)
        )
        self.hit = self.hit or hit
        return torch.full((input_ids.shape[0],), hit, dtype=torch.bool)


def hf_generate(
    model,
    tokenizer,
    requests: Sequence[Request],
    params: SamplingParams,
    *,
    progress: bool = True,
    on_complete: Callable[[Completion], None] | None = None,
) -> list[Completion]:
    """One `model.generate` call per request (batch 1, as a user would loop), same records as the engine."""
    from transformers import StoppingCriteriaList

    eos = sorted(eos_token_ids(model, tokenizer))
    pad = pad_token_id(model, tokenizer)
    out: list[Completion] = []
    for req in track(requests, "generate (hf)", unit="completion", enabled=progress, leave=False):
        enc = tokenizer(req.prompt, add_special_tokens=req.add_special_tokens, return_tensors="pt").to(
            model.device
        )
        n_prompt = enc["input_ids"].shape[1]
        stopper = _TextStop(tokenizer, n_prompt, params)
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            torch.manual_seed(int(req.seed))
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        start = time.perf_counter()
        with torch.inference_mode():
            seq = model.generate(**enc, **kwargs)
        seconds = time.perf_counter() - start
        new = seq[0, n_prompt:].tolist()
        if new and new[-1] in eos:
            reason, new = "eos", new[:-1]
        elif stopper.hit:
            reason = "stop"
        else:
            reason = "length"
        done = Completion(
            key=req.key,
            prompt=req.prompt,
            raw_output=tokenizer.decode(new, skip_special_tokens=True),
            stop_reason=reason,
            prompt_tokens=n_prompt,
            new_tokens=len(new),
            seconds=seconds,
            token_ids=new,
        )
        out.append(done)
        if on_complete is not None:
            on_complete(done)
    return out
