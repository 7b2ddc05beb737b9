"""The engine on the real embedded model: token-for-token `model.generate`, with every fast path on."""

import pytest

from codequant.benchmarks.registry import load_benchmark
from codequant.generation.engine import Request, SamplingParams, SharedPrefix, generate
from codequant.generation.extract import fenced_block_complete
from codequant.generation.hf import hf_generate
from codequant.generation.prompts import build_prompt


@pytest.mark.slow
@pytest.mark.ci
def test_smollm2_greedy_equals_generate_with_prefix_and_drafts():
    from codequant.models import load

    loaded = load("smollm2-135m")
    model, tok = loaded.model, loaded.tokenizer
    reqs = []
    for p in load_benchmark("humaneval")[:6]:
        pt = build_prompt(p, tok, "chat")
        reqs.append(Request(pt.text, key=p.task_id, add_special_tokens=pt.add_special_tokens))
    encoded = [tok(r.prompt, add_special_tokens=False)["input_ids"] for r in reqs]
    prefix = SharedPrefix.find(model, encoded)
    assert prefix is not None and len(prefix.ids) >= 40  # the system turn and the instruction
    params = SamplingParams(max_new_tokens=64, stop_rule=fenced_block_complete)
    ours = generate(
        model, tok, reqs, params, batch_size=24, progress=False
    )  # 6 rows <= 24 // 4: drafts from the start
    ref = hf_generate(model, tok, reqs, params, progress=False)
    assert [c.token_ids for c in ours] == [c.token_ids for c in ref]
    assert sum(c.drafted_tokens for c in ours) > 0.2 * sum(
        c.new_tokens for c in ours
    )  # the answer repeats the prompt
