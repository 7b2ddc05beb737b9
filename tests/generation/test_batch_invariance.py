"""Greedy completions do not depend on how they were batched: a pass@1 must not move with `--batch-size` or with
the oneDNN-packed linears (docs/evaluation.md). SmolLM2 on a dozen HumanEval prompts."""

from __future__ import annotations

import pytest

from codequant.benchmarks.registry import load_benchmark
from codequant.generation.engine import EngineOptions, Request, SamplingParams, generate
from codequant.generation.extract import fenced_block_complete
from codequant.generation.prompts import build_prompt


@pytest.mark.slow
def test_greedy_tokens_identical_across_batch_sizes_and_packing():
    from codequant.models import load

    loaded = load("smollm2-135m")
    model, tok = loaded.model, loaded.tokenizer
    reqs = []
    for p in load_benchmark("humaneval")[:12]:
        pt = build_prompt(p, tok, "chat")
        reqs.append(Request(pt.text, key=p.task_id, add_special_tokens=pt.add_special_tokens))
    params = SamplingParams(max_new_tokens=96, stop_rule=fenced_block_complete)
    runs = {}
    for batch in (1, 8, 32):
        for packed in (False, True):
            out = generate(
                model,
                tok,
                reqs,
                params,
                batch_size=batch,
                engine=EngineOptions(packed=packed),
                progress=False,
            )
            runs[(batch, packed)] = {c.key: c.token_ids for c in out}
    reference = runs[(1, False)]
    assert len(reference) == 12 and all(len(t) > 0 for t in reference.values())
    for setting, tokens in runs.items():
        differ = sorted(k for k in reference if tokens[k] != reference[k])
        assert not differ, f"batch {setting[0]}, packed {setting[1]}: {differ} differ from batch 1 unpacked"
