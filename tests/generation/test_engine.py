"""The engine against transformers' own `model.generate` on a tiny random Llama (fp32)."""

from collections import Counter

import pytest
import torch

from codequant.generation.engine import EngineOptions, Request, SamplingParams, generate
from codequant.generation.hf import hf_generate

PROMPTS = [
    "def add(a, b):",
    "for i in range(10):\n    print(i)\nThe quick brown fox",
    "import",
    "class Problem {\n    public static long add(long a",
    'def is_even(n: int) -> bool:\n    """Return True',
    "Python lists are",
    "from typing import List\n\n\ndef mean(xs",
]


def _hf_batched(model, tok, prompts, max_new_tokens):
    """Plain left-padded batched `model.generate`, token ids without the prompt (and cut at EOS)."""
    eos = [model.generation_config.eos_token_id, tok.eos_token_id]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        seq = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
        )
    out = []
    for row in seq[:, enc["input_ids"].shape[1] :].tolist():
        ends = [row.index(e) for e in eos if e in row]
        out.append(row[: min(ends)] if ends else row)
    return out


def test_greedy_identical_to_generate_with_rows_leaving_and_joining(tiny_llama, tiny_tokenizer):
    model, tok = tiny_llama, tiny_tokenizer
    reqs = [Request(p, key=i) for i, p in enumerate(PROMPTS)]
    # Make a token the random model emits mid-sequence the EOS, so rows finish at different steps and waiting
    # prompts get merged into the running batch.
    first = generate(model, tok, reqs, SamplingParams(max_new_tokens=24), batch_size=3, progress=False)
    counts = Counter(t for c in first for t in c.token_ids[2:])
    model.generation_config.eos_token_id = counts.most_common(1)[0][0]
    params = SamplingParams(max_new_tokens=24)
    ours = generate(model, tok, reqs, params, batch_size=3, progress=False)
    reasons = Counter(c.stop_reason for c in ours)
    assert reasons["eos"] >= 2 and reasons["length"] >= 1
    assert len({c.new_tokens for c in ours}) >= 3
    ref = hf_generate(model, tok, reqs, params, progress=False)
    assert [c.token_ids for c in ours] == [c.token_ids for c in ref]
    assert [c.stop_reason for c in ours] == [c.stop_reason for c in ref]
    assert [c.key for c in ours] == list(range(len(PROMPTS)))
    assert [c.token_ids for c in ours] == _hf_batched(model, tok, PROMPTS, 24)
    static = generate(
        model, tok, reqs, params, batch_size=3, engine=EngineOptions(continuous=False), progress=False
    )
    assert [c.token_ids for c in static] == [c.token_ids for c in ours]


def test_records_and_stop_sequences(tiny_llama, tiny_tokenizer):
    model, tok = tiny_llama, tiny_tokenizer
    reqs = [Request(p, key=p) for p in PROMPTS[:4]]
    free = generate(model, tok, reqs, SamplingParams(max_new_tokens=16), batch_size=4, progress=False)
    c = free[0]
    assert c.prompt == PROMPTS[0] and c.prompt_tokens == len(tok(PROMPTS[0])["input_ids"])
    assert c.raw_output == tok.decode(c.token_ids, skip_special_tokens=True) and c.seconds > 0
    # A stop sequence taken from the middle of an unconstrained output stops that row there.
    text = free[0].raw_output
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    stopped = generate(
        model, tok, reqs, SamplingParams(max_new_tokens=16, stop=(stop,)), batch_size=2, progress=False
    )[0]
    assert stopped.stop_reason == "stop" and stop in stopped.raw_output
    assert stopped.new_tokens < free[0].new_tokens and text.startswith(stopped.raw_output)
    ruled = generate(
        model, tok, reqs, SamplingParams(max_new_tokens=16, stop_rule=lambda s: len(s) >= 3), progress=False
    )
    assert [r.stop_reason for r in ruled] == [
        "eos" if f.stop_reason == "eos" and f.new_tokens < 3 else "stop" for f in free
    ]
    assert all(len(r.raw_output) >= 3 for r in ruled if r.stop_reason == "stop")


def test_sampling_is_seeded_per_request(tiny_llama, tiny_tokenizer):
    model, tok = tiny_llama, tiny_tokenizer
    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9)
    reqs = [Request(PROMPTS[i % 3], key=i, seed=100 + i) for i in range(6)]
    a = generate(model, tok, reqs, params, batch_size=4, progress=False)
    b = generate(model, tok, list(reversed(reqs)), params, batch_size=1, progress=False)[::-1]
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert len({tuple(c.token_ids) for c in a}) > 3  # different seeds, different samples
    reseeded = generate(model, tok, [Request(PROMPTS[0], seed=7)], params, progress=False)
    assert reseeded[0].token_ids != a[0].token_ids


@pytest.mark.parametrize("top_p", [1e-6])
def test_tiny_top_p_is_greedy(tiny_llama, tiny_tokenizer, top_p):
    reqs = [Request(p, seed=3) for p in PROMPTS[:3]]
    greedy = generate(tiny_llama, tiny_tokenizer, reqs, SamplingParams(max_new_tokens=10), progress=False)
    nucleus = generate(
        tiny_llama,
        tiny_tokenizer,
        reqs,
        SamplingParams(max_new_tokens=10, temperature=0.7, top_p=top_p),
        progress=False,
    )
    assert [c.token_ids for c in greedy] == [c.token_ids for c in nucleus]


def test_shared_prompt_prefilled_once_gives_same_samples(tiny_llama, tiny_tokenizer):
    params = SamplingParams(max_new_tokens=10, temperature=1.0)
    together = [Request(PROMPTS[0], key=i, seed=i) for i in range(4)]
    joint = generate(tiny_llama, tiny_tokenizer, together, params, batch_size=4, progress=False)
    alone = [generate(tiny_llama, tiny_tokenizer, [r], params, progress=False)[0] for r in together]
    assert [c.token_ids for c in joint] == [c.token_ids for c in alone]
    assert len({tuple(c.token_ids) for c in joint}) > 1


def test_length_groups_bound_the_padding_of_each_prefill():
    from codequant.generation.batch import Row
    from codequant.generation.engine import length_groups

    lengths = [322, 223, 220, 219, 180, 178, 150, 140, 94, 94, 3]
    rows = [Row(i, [1] * n, 0.0, None) for i, n in enumerate(lengths)]
    groups = length_groups(rows, ratio=0.8)
    assert [r.req_index for g in groups for r in g] == list(range(len(lengths)))  # order kept, nothing lost
    assert [[len(r.prompt_ids) for r in g] for g in groups] == [
        [322],
        [223, 220, 219, 180],
        [178, 150],
        [140],
        [94, 94],
        [3],
    ]
    for g in groups:
        assert min(len(r.prompt_ids) for r in g) >= 0.8 * len(g[0].prompt_ids)
    assert length_groups([]) == []


def test_shared_prefix_is_prefilled_once_and_changes_no_token(tiny_llama, tiny_tokenizer):
    from codequant.generation.engine import SharedPrefix

    model, tok = tiny_llama, tiny_tokenizer
    system = "<system> You are a careful assistant who writes Python. </system>\n<user> Complete this: "
    reqs = [Request(system + p, key=i) for i, p in enumerate(PROMPTS)]
    encoded = [tok(r.prompt)["input_ids"] for r in reqs]
    with torch.inference_mode():
        prefix = SharedPrefix.find(model, encoded)
    assert prefix is not None and len(prefix.ids) >= SharedPrefix.MIN_TOKENS
    assert all(ids[: len(prefix.ids)] == prefix.ids and len(ids) > len(prefix.ids) for ids in encoded)
    params = SamplingParams(max_new_tokens=16)
    first = generate(model, tok, reqs, params, batch_size=3, progress=False)
    model.generation_config.eos_token_id = Counter(t for c in first for t in c.token_ids[2:]).most_common(1)[
        0
    ][0]
    ours = generate(model, tok, reqs, params, batch_size=3, progress=False)
    assert len({c.new_tokens for c in ours}) >= 3  # rows left and joined at different steps
    ref = hf_generate(model, tok, reqs, params, progress=False)
    assert [c.token_ids for c in ours] == [c.token_ids for c in ref]
    static = generate(
        model, tok, reqs, params, batch_size=3, engine=EngineOptions(continuous=False), progress=False
    )  # no prefix path
    assert [c.token_ids for c in static] == [c.token_ids for c in ref]


def test_prompt_lookup_drafts_keep_greedy_output_identical(tiny_llama, tiny_tokenizer):
    model, tok = tiny_llama, tiny_tokenizer
    prompts = [
        "def f(x):\n    return x + 1\n\ndef f(x):\n    return",
        "a b c a b c a b",
        PROMPTS[1],
        PROMPTS[3],
    ]
    reqs = [Request(p, key=i) for i, p in enumerate(prompts)]
    params = SamplingParams(max_new_tokens=40)
    ours = generate(
        model, tok, reqs, params, batch_size=16, progress=False
    )  # 4 rows <= 16 // 4: drafts verified
    assert sum(c.drafted_tokens for c in ours) > 0 and all(c.drafted_tokens <= c.new_tokens for c in ours)
    plain = generate(
        model, tok, reqs, params, batch_size=16, engine=EngineOptions(speculate=False), progress=False
    )
    assert sum(c.drafted_tokens for c in plain) == 0
    ref = hf_generate(model, tok, reqs, params, progress=False)
    assert [c.token_ids for c in ours] == [c.token_ids for c in plain] == [c.token_ids for c in ref]
    assert [c.stop_reason for c in ours] == [c.stop_reason for c in ref]
    # A frequent output token as EOS: rows now end inside accepted drafts too, exactly where generate ends them.
    model.generation_config.eos_token_id = Counter(t for c in ours for t in c.token_ids[3:]).most_common(1)[
        0
    ][0]
    ours = generate(model, tok, reqs, params, batch_size=16, progress=False)
    ref = hf_generate(model, tok, reqs, params, progress=False)
    assert "eos" in {c.stop_reason for c in ours}
    assert [c.token_ids for c in ours] == [c.token_ids for c in ref]


def test_prompt_lookup_proposes_what_followed_the_last_ngram():
    from codequant.generation.engine import prompt_lookup

    assert prompt_lookup([1, 2, 3, 9, 9, 1, 2, 3], 4) == [9, 9, 1, 2]
    assert prompt_lookup([5, 1, 2, 7, 1, 2], 2) == [7, 1]  # falls back to a 2-gram
    assert prompt_lookup([4, 6, 8, 7], 3) == []  # nothing repeats
    assert prompt_lookup([1, 2, 1, 3, 1, 2, 1, 4, 1, 2, 1], 2) == [4, 1]  # the latest occurrence wins


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_engine_and_generate_run_on_cuda(tiny_llama, tiny_tokenizer):
    reqs = [Request(p, key=i) for i, p in enumerate(PROMPTS)]
    params = SamplingParams(max_new_tokens=12)
    cpu = generate(tiny_llama, tiny_tokenizer, reqs, params, batch_size=4, progress=False)
    model = tiny_llama.to("cuda")
    ours = generate(model, tiny_tokenizer, reqs, params, batch_size=4, progress=False)
    ref = hf_generate(model, tiny_tokenizer, reqs, params, progress=False)
    assert [c.token_ids for c in ours] == [c.token_ids for c in ref]
    assert (
        sum(a.token_ids == b.token_ids for a, b in zip(ours, cpu, strict=True)) >= len(reqs) - 1
    )  # GPU float noise
    sampled = generate(
        model, tiny_tokenizer, reqs[:2], SamplingParams(max_new_tokens=6, temperature=1.0), progress=False
    )
    assert all(c.new_tokens > 0 for c in sampled)


def test_sliding_window_models_fall_back_to_static_batches(tiny_tokenizer):
    """Gemma 3 mixes sliding-window layers into its cache: no slots, no shared prefix, no drafts; same tokens."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from codequant.generation.kvcache import slot_cache

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=256,
        pad_token_id=tiny_tokenizer.pad_token_id,
        eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.bos_token_id,
    )
    model = Gemma3ForCausalLM(config).eval()
    assert slot_cache(model.config, 4) is None
    reqs = [Request(p, key=i) for i, p in enumerate(PROMPTS[:4])]
    params = SamplingParams(max_new_tokens=10)
    ours = generate(model, tiny_tokenizer, reqs, params, batch_size=2, progress=False)
    ref = hf_generate(model, tiny_tokenizer, reqs, params, progress=False)
    assert [c.token_ids for c in ours] == [c.token_ids for c in ref]
    assert all(c.drafted_tokens == 0 for c in ours)
